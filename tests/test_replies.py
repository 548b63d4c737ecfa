"""Reply texts: one sentence plus a parseable marker, no live @mentions, no HTML from users."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from app import replies
from app.commands import replies as command_replies
from app.claims.rules import Claim
from app.tasks.agents import AgentId
from app.commands.parse import parse_command_line
from app.tasks.refs import TaskRef

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
REPO = "acme/widgets"
TASK = TaskRef.of(REPO, 12)
_md = MarkdownIt("commonmark")
_LIVE_MENTION = re.compile(r"(?<![A-Za-z0-9_`])[@＠][A-Za-z0-9]")


def rendered_problems(body: str) -> list[str]:
    """Live mentions and HTML (other than Fleet's marker) as GitHub's Markdown would see them."""
    problems = []
    for token in _md.parse(body):
        if token.type == "html_block" and not token.content.strip().startswith("<!-- fleet:"):
            problems.append(f"html block {token.content!r}")
        for child in token.children or []:
            if child.type == "text" and _LIVE_MENTION.search(child.content):
                problems.append(f"mention in {child.content!r}")
            if child.type == "html_inline" and not child.content.startswith("<!-- fleet:"):
                problems.append(f"inline html {child.content!r}")
            if child.type in ("link_open", "image"):
                problems.append(f"{child.type}")
    return problems


def sentence_of(body: str) -> str:
    text, _, _ = body.partition("\n\n<!-- fleet:")
    return text


@pytest.mark.parametrize(
    "data",
    [
        {"command": "claim", "result": "refused", "reason": "blocked", "blockers": [12]},
        {"a": "--", "b": "-->", "c": "<!-- x -->", "d": "---!>", "e": -1, "f": [None, True, 1.5]},
        {"note": "ends with dash-", "z": "\u2014 unicode \U0001f600", "quote": '"\\'},
    ],
)
def test_marker_round_trips(data: dict) -> None:
    """A marker is compact, sorted JSON in one HTML comment, and parses back to the same data."""
    text = replies.marker(data)
    assert text.startswith("<!-- fleet:{") and text.endswith("} -->")
    assert "--" not in text[4:-3]
    assert replies.parse_marker(f"Some text\n\n{text}\n") == data


def test_marker_format_matches_the_protocol() -> None:
    """The documented example is produced byte for byte."""
    assert replies.marker({"command": "claim", "result": "refused", "reason": "blocked", "blockers": [12]}) == (
        '<!-- fleet:{"blockers":[12],"command":"claim","reason":"blocked","result":"refused"} -->'
    )


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=10), st.one_of(st.text(), st.integers(), st.none(), st.booleans(), st.lists(st.integers(), max_size=3)), max_size=5))
def test_marker_round_trips_any_data(data: dict) -> None:
    """Any JSON-able data survives, and the comment can never be closed early."""
    text = replies.marker(data)
    assert "--" not in text[4:-3] and ">" not in text[4:-3] and "<" not in text[4:]
    assert replies.parse_marker(text) == data
    assert [t.type for t in _md.parse(text)] == ["html_block"]


@pytest.mark.parametrize(
    "body",
    [None, "", "no marker", "<!-- fleet:not json -->", "<!-- fleet:[1,2] -->", "<!-- other:{} -->"],
)
def test_parse_marker_rejects_non_markers(body: str | None) -> None:
    assert replies.parse_marker(body) is None


def test_a_quoted_unclosed_opener_does_not_hide_the_marker_after_it() -> None:
    """Found by the hostile-input property: a reason quoting ``<!--fleet:A`` swallowed the real
    marker, whose ``-->`` closed the user's opener instead."""
    body = replies.reply("`alice` cannot claim #12 (`<!--fleet:A`).", {"result": "refused", "command": "claim"})
    assert replies.parse_marker(body) == {"command": "claim", "result": "refused"}
    assert replies.parse_marker("<!-- fleet:{ <!-- x --> <!-- fleet:{\"a\":1} -->") == {"a": 1}


def test_parse_marker_takes_the_first_valid_one() -> None:
    body = '<!-- fleet:oops -->\n<!-- fleet:{"a":1} -->\n<!-- fleet:{"a":2} -->'
    assert replies.parse_marker(body) == {"a": 1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello @bob", "hello @\u200dbob"),
        ("<script>alert(1)</script>", "&lt;script&gt;alert\\(1\\)&lt;/script&gt;"),
        ("line\nbreak\t tab", "line break tab"),
        ("[x](javascript:1)", "\\[x\\]\\(javascript:1\\)"),
        ("#12 *bold*", "\\#\u200b12 \\*bold\\*"),  # no cross-reference either
        ("a" * 100, "a" * 79 + "…"),
        (None, ""),
    ],
)
def test_neutralize(text: str | None, expected: str) -> None:
    """User text is flattened, capped, HTML- and Markdown-escaped, and cannot mention anyone."""
    assert replies.neutralize(text) == expected


@pytest.mark.parametrize(("text", "expected"), [("bob", "`bob`"), ("a`b", "`a'b`"), ("", "`?`"), ("x\ny", "`x y`")])
def test_code(text: str, expected: str) -> None:
    """Identifiers go in backticks, which never mention."""
    assert replies.code(text) == expected


def test_claim_refused_example() -> None:
    """The exact reply for a blocked claim: one sentence, then the marker."""
    body = replies.claim_refused("blocked", task=TASK, repo=REPO, agent=AgentId("alice"), blockers=[TaskRef.of(REPO, 10)])
    assert body == (
        "`alice` cannot claim #12: it is blocked by #10; claim it once they are closed, or use `/next`.\n\n"
        '<!-- fleet:{"agent":"alice","blockers":[10],"command":"claim","reason":"blocked","result":"refused","task":12} -->'
    )


def claim(**overrides: object) -> Claim:
    fields: dict[str, object] = {"task": TASK, "agent": AgentId("bob"), "claimed_at": NOW, "renewed_at": NOW, "expires_at": NOW + timedelta(hours=4)}
    fields.update(overrides)
    return Claim(**fields)  # type: ignore[arg-type]


def every_reply(text: str, login: str) -> list[str]:
    """Every builder, fed hostile text wherever user text can reach it."""
    agent = AgentId(login, text[:39] or None)
    other = AgentId(login + "x")
    flat = text.replace("\n", " ")  # a command line never holds a newline
    line = parse_command_line("/" + "".join(ch for ch in flat if ch.isalpha())[:10] + " " + flat) or parse_command_line("/zz " + flat)
    assert line is not None
    error = parse_command_line("/progress " + flat) or line
    held = claim(agent=agent, branch=text, head_sha=text, pr_number=3, progress=50, progress_note=text)
    refusals = [
        replies.claim_refused(reason, task=TASK, repo=REPO, agent=agent, holder=other, blockers=[TaskRef.of(REPO, 1)],
                              open_claims=[TaskRef("x", "y", 2)], limit=1, assigner=text, detail=text)
        for reason in ("blocked", "taken", "wip_limit", "maintainer_required", "not_allowed", "closed", "not_a_task", text)
    ]
    return [
        *refusals,
        replies.claim_displaced(task=TASK, repo=REPO, agent=agent, winner=other),
        replies.claim_accepted(task=TASK, repo=REPO, agent=agent, expires_at=NOW, now=NOW, title=text),
        replies.next_none(agent=agent, repo=REPO),
        replies.release_refused("not_holder", task=TASK, repo=REPO, agent=agent, holder=other),
        replies.release_refused("not_held", task=TASK, repo=REPO, agent=agent),
        replies.progress_refused(task=TASK, repo=REPO, agent=agent, holder=other),
        replies.progress_refused(task=TASK, repo=REPO, agent=agent, holder=None),
        replies.lease_warning(claim=held, repo=REPO, now=NOW - timedelta(minutes=5)),
        replies.lease_expired(claim=held, repo=REPO),
        replies.lease_expired(claim=claim(), repo=REPO),
        command_replies.unknown_command(line),
        command_replies.command_error(error),
        command_replies.command_not_allowed(line, "write", login),
        command_replies.command_not_here(line, "pr"),
        command_replies.help_reply("issue"),
        replies.cycle_found(cycle=[TASK, TaskRef("o", "r", 3)], repo=REPO),
        replies.pr_task_held(pr_number=4, task=TASK, repo=REPO, holder=other, author=agent),
        replies.config_invalid(message=text, key=text, line=3),
    ]


_hostile = st.one_of(
    st.text(max_size=120),
    st.lists(st.sampled_from(["@bob", "@org/team", "<b>", "</details>", "<!--", "-->", "`", "``", "\n\n", "[x](y)", "![i](u)", "<img src=x>", "&lt;", "\\", "＠bob", "a@b", "*", "#1"]), max_size=8).map("".join),
)


@settings(max_examples=150, deadline=None)
@given(_hostile, st.sampled_from(["alice", "bob-1", "Carol"]))
def test_no_reply_mentions_or_injects_from_hostile_input(text: str, login: str) -> None:
    """Whatever users typed, no reply has a live @mention, HTML, a link, or a broken marker."""
    for body in every_reply(text, login):
        assert rendered_problems(body) == [], body
        data = replies.parse_marker(body)
        assert data is not None and "result" in data and "command" in data
        assert body.count("<!-- fleet:") == 1


@pytest.mark.parametrize("text", ["hello", "@bob <b>x</b> `code` [l](u)"])
def test_replies_are_one_short_sentence(text: str) -> None:
    """Every reply except /help is a single line before the marker, and stays short."""
    for body in every_reply(text, "alice"):
        if body.startswith("Fleet commands"):
            continue
        sentence = sentence_of(body)
        assert "\n" not in sentence and len(sentence) < 400, sentence


def test_logins_are_in_backticks() -> None:
    """Logins appear as code, never as @login."""
    body = replies.claim_refused("taken", task=TASK, repo=REPO, agent=AgentId("alice"), holder=AgentId("bob", "agent-d"))
    assert "`bob:agent-d`" in body and "@" not in sentence_of(body)


def test_cross_repo_refs_in_markers() -> None:
    """Same-repo tasks are numbers in markers, other repos' are owner/repo#N."""
    body = replies.cycle_found(cycle=[TASK, TaskRef("o", "r", 3)], repo=REPO)
    assert replies.parse_marker(body) == {"command": "dependencies", "cycle": [12, "o/r#3"], "result": "cycle"}
    assert "#12 → o/r#3 → #12" in body


def test_parse_marker_is_linear_on_unclosed_openers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unclosed ``<!-- fleet:`` openers and long whitespace never make the marker parser rescan."""
    monkeypatch.setattr(replies, "MAX_BODY_CHARS", 10**7)
    assert replies.parse_marker("<!-- fleet:" * 60000) is None
    assert replies.parse_marker("<!-- fleet:{}" + " " * 100000 + "x") is None
    good = replies.marker({"task": 5})
    assert replies.parse_marker("<!-- fleet:{bad} --> <!-- other --> " + good) == {"task": 5}
    assert replies.parse_marker("<!-- x " + good) == {"task": 5}
