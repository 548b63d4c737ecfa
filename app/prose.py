"""Which lines of a comment or issue body are prose: outside fenced and indented code, blockquotes
and HTML comments. Commands, dependencies and closing references are read from prose only, so
quoting someone's ``/claim`` or ``Depends on #3`` does nothing. The Markdown structure comes from
markdown-it-py, not from hand-written rules."""
from __future__ import annotations

import bisect
import functools
from collections.abc import Iterator

from markdown_it import MarkdownIt

from app.input_limits import MAX_BODY_CHARS, MAX_LINE_CHARS, MAX_LINES

_md = MarkdownIt("commonmark")
_SKIPPED_BLOCKS = {"fence", "code_block", "html_block"}


def _normalise(body: str) -> str:
    text = body[:MAX_BODY_CHARS].replace("\r\n", "\n").replace("\r", "\n")
    # Bound the work: markdown-it (and every pattern after it) only sees the lines, and the part
    # of each line, that we will look at.
    return "\n".join(line[:MAX_LINE_CHARS] for line in text.split("\n", MAX_LINES)[:MAX_LINES])


def html_comments(text: str) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each ``<!-- ... -->`` in ``text``, in order.

    Found with ``str.find``, so linear: a lazy regex (``<!--.*?-->``) rescans to the end of the
    text from every unclosed ``<!--``, quadratic on ``"<!--" * 16000``. Once no ``-->`` follows an
    opener, no later opener can close either.
    """
    start = text.find("<!--")
    while start != -1:
        end = text.find("-->", start + 4)
        if end == -1:
            return
        yield start, end + 3
        start = text.find("<!--", end + 3)


def prose_lines(body: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line_no, line)`` (1-based) for lines outside code, quotes and HTML comments.

    Only the first ``MAX_LINES`` lines of at most ``MAX_BODY_CHARS`` characters are considered,
    and of each line its first ``MAX_LINE_CHARS`` characters.
    """
    yield from _visible_lines(_normalise(body))


# Several parsers read the same body for one event (commands, dependencies, closing refs,
# estimate); markdown-it is linear but slow on hostile Markdown (~0.5 s per 64 KB), so one parse.
@functools.lru_cache(maxsize=16)
def _visible_lines(text: str) -> tuple[tuple[int, str], ...]:
    lines = text.split("\n")
    hidden = [False] * len(lines)

    def hide(start: int, end: int) -> None:
        for i in range(max(start, 0), min(end, len(lines))):
            hidden[i] = True

    for token in _md.parse(text):
        if token.map is None:
            continue
        if token.type in _SKIPPED_BLOCKS or token.type == "blockquote_open":
            hide(token.map[0], token.map[1])
    # An HTML comment opened inside a paragraph can span lines; markdown-it reports it only as an
    # inline token without line numbers, so hide every line it touches after the opening one.
    line_starts = [0]
    for line in lines[:-1]:
        line_starts.append(line_starts[-1] + len(line) + 1)
    for start, end in html_comments(text):
        first = bisect.bisect_right(line_starts, start) - 1
        if not hidden[first]:  # a "<!--" inside a code block opens nothing
            hide(first + 1, first + text.count("\n", start, end) + 1)
    return tuple((i + 1, line) for i, line in enumerate(lines) if not hidden[i])
