"""Untrusted text in the status issue: it cannot break a table, inject markup or ping anyone."""
from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from app.markdown import ELLIPSIS, ZWJ, cell, code, link, login, plain, safe_url

HOSTILE = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(list("|\\`@<>&\n\r\t*_[]()~#!:/ a-\u2028\u2029\u200b\u202e\x00\x85")),
            max_size=200),
    st.builds(lambda a, b: f"{a}@{b}", st.text(max_size=20), st.from_regex(r"[A-Za-z0-9-]{1,20}(/[a-z]+)?", fullmatch=True)),
)
# A live mention: "@" directly followed by a login character, not preceded by a word character.
LIVE_MENTION = re.compile(r"(?<![\w`])@[A-Za-z0-9_-]")


def unescaped_pipes(text: str) -> int:
    """Pipes a GFM table row scanner would split on (backslash escapes a following character)."""
    count, i = 0, 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        count += text[i] == "|"
        i += 1
    return count


def without_code_spans(text: str) -> str:
    return re.sub(r"`[^`]*`", "", text)


def assert_inline_safe(out: str) -> None:
    assert unescaped_pipes(out) == 0, out
    assert not any(ch in out for ch in "\n\r\u2028\u2029\x85"), out
    assert "<" not in out and ">" not in out, out
    assert not LIVE_MENTION.search(without_code_spans(out)), out
    assert re.search(r"&(?!amp;|lt;|gt;)", out) is None, out  # no entity the input smuggled in


@settings(max_examples=300)
@given(HOSTILE, st.integers(min_value=1, max_value=120))
def test_cell_never_breaks_a_row_or_pings(text: str, max_len: int) -> None:
    """Whatever the input, a cell adds no column, no line, no HTML tag and no live mention."""
    out = cell(text, max_len)
    assert_inline_safe(out)
    assert "`" not in out.replace("\\`", "")  # every backtick escaped: no code span opens
    assert len(plain(text)) <= max_len or out.endswith(ELLIPSIS)


@settings(max_examples=300)
@given(HOSTILE)
def test_login_is_one_code_span(text: str) -> None:
    """A login is shown in one code span: mentions and HTML are inert there, and `|` cannot split a row."""
    out = login(text)
    assert out == "—" or (out.startswith("`") and out.endswith("`") and out.count("`") == 2)
    assert "|" not in out
    assert not any(ch in out for ch in "\n\r\u2028\u2029")


@settings(max_examples=200)
@given(HOSTILE, st.one_of(st.text(), st.sampled_from([
    "https://github.com/o/r/issues/1", "javascript:alert(1)", "https://x.y/a b", "https://x.y/(a)|b",
    "http://x.y/<script>", "data:text/html,hi", "//evil.example", "https://x.y/`@bob`",
])))
def test_link_is_safe(text: str, url: str) -> None:
    """Links keep the label safe and only ever point at http(s) URLs."""
    out = link(text, url)
    assert unescaped_pipes(out) == 0 and "<" not in out and "\n" not in out
    # The target follows the first unescaped "](" (a label "](" is written "\\](").
    target = re.search(r"(?<!\\)\]\(([^)]*)\)$", out)
    if target:
        # Schemes are case-insensitive (RFC 3986 3.1): HTTP://x is as good a link as http://x.
        assert target.group(1).lower().startswith(("http://", "https://"))
        assert not re.search(r"[\s()<>|`\\]", target.group(1))


def test_examples() -> None:
    """The escapes are the ones GitHub renders as the original text."""
    assert cell("a | b") == "a \\| b"
    assert cell("x\\|y") == "x\\\\\\|y"  # the backslash is escaped too, so the pipe stays escaped
    assert cell("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert\\(1\\)&gt;"
    assert cell("see #12, GH-3 and ＠bob ![i](u)") == "see \\#\u200b12, GH-\u200b3 and ＠\u200dbob \\!\\[i\\]\\(u\\)"
    assert cell("right\u202eleft") == "rightleft"  # bidi overrides go, in every sanitised text
    assert cell("ping @octocat and @org/team") == f"ping @{ZWJ}octocat and @{ZWJ}org/team"
    assert cell("&#64;octocat") == "&amp;\\#\u200b64;octocat"
    assert cell("line1\nline2\r\n\tline3") == "line1 line2 line3"
    assert cell("`code` **bold** [x](y)") == "\\`code\\` \\*\\*bold\\*\\* \\[x\\]\\(y\\)"
    assert cell("\u202eevil\u200b\x00") == "evil"
    assert cell("x" * 10, 5) == "xxxx…"
    assert login("octocat") == "`octocat`"
    assert login("bot:agent-d") == "`bot:agent-d`"
    assert login("a`b|c") == "`a'b¦c`"
    assert login("") == "—"
    assert code("release/2.0") == "`release/2.0`"
    assert link("#12", "https://github.com/o/r/issues/12") == "[#12](https://github.com/o/r/issues/12)"
    assert link("x", "javascript:alert(1)") == "x"
    assert safe_url("https://x.y/a(b)") == "https://x.y/a%28b%29"


def test_huge_input_is_cut_cheaply() -> None:
    """A 100k-character title is truncated, and says so, even when its start is all junk."""
    assert cell("x" * 100_000) == "x" * 79 + ELLIPSIS
    assert cell("\x00" * 100_000 + "visible") == ELLIPSIS
    assert login("a" * 100_000).endswith(f"{ELLIPSIS}`")
