"""Put untrusted text (issue titles, logins, agent names, branch names) into GitHub Markdown safely.

Everything Fleet writes into the status issue comes from people and agents. A title such as
``a | b\\n<img src=x> @everyone`` must stay one table cell, render as plain text and ping nobody.

- ``cell(text)`` gives single-line inline Markdown that is also safe inside a table cell.
- ``login(text)`` / ``code(text)`` render a login, agent identity or branch as a code span, so
  it is never a mention.
- ``link(text, url)`` links to http(s) URLs only.

Why each rule exists (GitHub Flavored Markdown, cmark-gfm):
- A table row is split on every ``|`` that is not backslash-escaped, *before* inline parsing,
  even inside code spans; the row scanner treats ``\\`` plus any character as one escaped pair,
  so backslashes are escaped too (otherwise ``\\|`` would become ``\\\\|`` and split the cell).
- A line break ends the row; Unicode line/paragraph separators are treated as spaces too.
- ``<`` ``>`` ``&`` become entities, so no HTML tag or entity (``&#64;``) survives.
- A mention is ``@`` (or the fullwidth ``＠``) directly followed by a login character; a
  zero-width joiner after it breaks the mention while the text still reads the same.
- ``#123`` and ``GH-123`` become cross-references, which put a "mentioned this" event on the
  other issue; a zero-width space after ``#`` / ``GH-`` keeps them plain text.
- ``( ) # !`` are escaped too: they open links, images and headings in other contexts.
- Control and format characters (bidi overrides, zero-width characters) are removed first, so
  the joiner Fleet inserts is the only one left.
"""
from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit

ELLIPSIS = "…"
ZWJ = "\u200d"  # zero-width joiner: keeps "@name" readable but not a mention

# Markdown punctuation that could start emphasis, links, images, headings, strikethrough or code.
_BACKSLASH_ESCAPED = frozenset("\\`*_[]~|()#!")
# Inside a link's label nothing is autolinked and ( ) # ! start nothing: only these are escaped.
_LABEL_ESCAPED = frozenset("\\`*_[]~|")
ZWSP = "\u200b"  # zero-width space: keeps "#123" readable but not a cross-reference
_MENTION_SIGILS = frozenset("@\uff20")
_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}
# Categories removed outright: controls, format characters (bidi, zero-width), surrogates.
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
# Categories that end a line in some renderers: become spaces.
_SPACE_CATEGORIES = frozenset({"Zl", "Zp"})
_URL_UNSAFE = {c: f"%{ord(c):02X}" for c in ' "<>\\^`{|}()[]'}
MAX_URL_LEN = 500


def plain(text: object) -> str:
    """Text with control/format characters removed and all whitespace runs collapsed to one space."""
    s = "" if text is None else str(text)
    if s.isascii() and s.isprintable():
        return " ".join(s.split())  # fast path: nothing to strip but whitespace runs
    out = []
    for ch in s:
        if ch.isprintable():
            out.append(ch)
            continue
        if ch in "\t\n\r\x0b\x0c\x85":
            out.append(" ")
            continue
        cat = unicodedata.category(ch)
        if cat in _DROP_CATEGORIES:
            continue
        out.append(" " if cat in _SPACE_CATEGORIES else ch)
    return " ".join("".join(out).split())


def truncate(text: str, max_len: int) -> str:
    """Shorten plain text to at most ``max_len`` characters, ending with an ellipsis if cut."""
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    if len(text) <= max_len:
        return text
    return text[: max_len - 1].rstrip() + ELLIPSIS


def _short_plain(text: object, max_len: int) -> str:
    """``truncate(plain(text), max_len)`` in time bounded by ``max_len``, not by the input length."""
    raw = "" if text is None else str(text)
    cap = max_len * 2 + 16  # only a prefix can reach the output: don't scan a 100k-character title
    if len(raw) <= cap:
        return truncate(plain(raw), max_len)
    clean = plain(raw[:cap])
    if len(clean) < max_len:  # the rest was dropped, not shown: still say so
        return clean + ELLIPSIS
    return truncate(clean + ELLIPSIS, max_len)


def _escape(text: str, escaped: frozenset[str] = _BACKSLASH_ESCAPED, *, references: bool = True) -> str:
    out = []
    for i, ch in enumerate(text):
        if ch in escaped:
            out.append("\\" + ch)
        elif ch in _ENTITIES:
            out.append(_ENTITIES[ch])
        elif ch in _MENTION_SIGILS:
            out.append(ch + ZWJ)
        else:
            out.append(ch)
        if references and _cross_reference_at(text, i):
            out.append(ZWSP)
    return "".join(out)


def _cross_reference_at(text: str, i: int) -> bool:
    """Whether ``text[i]`` is the ``#`` of ``#123`` or the ``-`` of ``GH-123`` (any case)."""
    nxt = text[i + 1] if i + 1 < len(text) else ""
    if text[i] == "#":
        return nxt.isalnum() or nxt == "_"
    return text[i] == "-" and nxt.isdigit() and text[max(i - 2, 0):i].lower() == "gh"


def cell(text: object, max_len: int = 80) -> str:
    """Safe single-line inline Markdown for ``text``, at most ``max_len`` visible characters.

    Usable inside a table cell and anywhere else inline: it cannot add a column, start a new
    line, open HTML, code spans, emphasis or links, or mention anyone. Truncation happens before
    escaping, so an escape sequence is never cut in half.
    """
    return _escape(_short_plain(text, max_len))


def code(text: object, max_len: int = 60) -> str:
    """``text`` as a one-line code span (branch names, identities): literal, never a mention or tag.

    Inside a code span neither mentions nor HTML are interpreted; backticks (which would end the
    span) and ``|`` (which splits a table row even inside a code span) are replaced.
    """
    # A backslash is literal inside a code span on GitHub, but lenient renderers read `\`` as an
    # escaped backtick and let the span run on; nothing Fleet shows this way needs one.
    s = _short_plain(text, max_len).replace("`", "'").replace("|", "¦").replace("\\", "⧵")
    if not s:
        return "—"
    return f"`{s}`"


def login(text: object, max_len: int = 60) -> str:
    """A GitHub login or agent identity (``login`` / ``login:name``), shown without pinging anyone."""
    return code(text, max_len)


def safe_url(url: object) -> str | None:
    """``url`` made safe for a Markdown link destination, or None if it is not a plain http(s) URL."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LEN:
        return None
    if plain(url) != url:
        return None  # whitespace or control characters: not a URL we produced
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return "".join(_URL_UNSAFE.get(c, c) for c in url)


def link(text: object, url: object, max_len: int = 80) -> str:
    """``[text](url)`` with ``text`` made safe; plain safe text when ``url`` is not http(s)."""
    label = _escape(_short_plain(text, max_len), _LABEL_ESCAPED, references=False) or "link"
    target = safe_url(url)
    if target is None:
        return label
    return f"[{label}]({target})"
