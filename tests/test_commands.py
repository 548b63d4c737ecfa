"""Slash-command parsing: where commands count, their grammars, unknown names, bounds, /help."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.commands.parse import (
    COMMANDS,
    Command,
    command_allowed,
    parse_command_line,
    parse_commands,
    render_help,
    suggest,
)
from app.github.permissions import has_permission
from app.input_limits import MAX_LINES


def names(body: str) -> list[str]:
    return [c.name for c in parse_commands(body)]


@pytest.mark.parametrize(
    ("line", "name", "args"),
    [
        ("/claim", "claim", ()),
        ("/claim as agent-d", "claim", ("agent-d",)),
        ("/CLAIM AS Agent.D_2", "claim", ("Agent.D_2",)),
        ("  /release as bot-1", "release", ("bot-1",)),
        ("/next", "next", ()),
        ("/next as x", "next", ("x",)),
        ("/progress 40", "progress", ("40",)),
        ("/progress 40% tests   pass", "progress", ("40", "tests pass")),
        ("/progress 0", "progress", ("0",)),
        ("/progress 100 done", "progress", ("100", "done")),
        ("/progress 007", "progress", ("7",)),
        ("/block #12", "block", ("#12",)),
        ("/block #12, #14 and owner/repo#7", "block", ("#12", "#14", "owner/repo#7")),
        ("/block #12 #12", "block", ("#12",)),
        ("/unblock #3", "unblock", ("#3",)),
        ("/help", "help", ()),
        ("/help me please", "help", ()),
        ("/queue", "queue", ()),
        ("/merge", "queue", ()),
        ("/dequeue", "dequeue", ()),
        ("/priority HIGH", "priority", ("high",)),
        ("/gates", "gates", ()),
        ("\t/claim", "claim", ()),
    ],
)
def test_known_commands_and_their_arguments(line: str, name: str, args: tuple[str, ...]) -> None:
    """Each command's grammar normalises its arguments; aliases map to the canonical name."""
    command = parse_command_line(line, 3)
    assert command is not None
    assert (command.name, command.args, command.error, command.unknown) == (name, args, None, False)
    assert command.line_no == 3
    assert command.raw_line == line.strip()


@pytest.mark.parametrize(
    ("line", "error_part"),
    [
        ("/progress", "/progress needs a number 0-100"),
        ("/progress 101", "/progress needs a number 0-100"),
        ("/progress -1", "/progress needs a number 0-100"),
        ("/progress forty", "/progress needs a number 0-100"),
        ("/progress ４０", "/progress needs a number 0-100"),
        ("/claim me", "as NAME"),
        ("/claim as", "as NAME"),
        ("/claim as -bad", "as NAME"),
        ("/claim as " + "a" * 40, "as NAME"),
        ("/claim as a b", "as NAME"),
        ("/block", "issue references"),
        ("/block 12", "issue references"),
        ("/block #0", "issue references"),
        ("/unblock #x", "issue references"),
        ("/priority", "high"),
        ("/priority urgent", "high"),
    ],
)
def test_bad_arguments_give_an_error(line: str, error_part: str) -> None:
    """A known command with arguments outside its grammar carries an error message, not a guess."""
    command = parse_command_line(line)
    assert command is not None and not command.unknown
    assert command.error is not None and error_part in command.error
    assert not command.ok


def test_agent_name_of_39_characters_is_accepted() -> None:
    """Agent names follow GitHub's login length: 1 + 38 more characters."""
    command = parse_command_line("/claim as " + "a" * 39)
    assert command is not None and command.agent_name == "a" * 39


def test_accessors() -> None:
    """Command exposes the values the handlers need."""
    progress = parse_command_line("/progress 55 half way")
    assert progress is not None and (progress.percent, progress.note) == (55, "half way")
    bare = parse_command_line("/progress 5")
    assert bare is not None and (bare.percent, bare.note, bare.agent_name) == (5, "", None)
    claim = parse_command_line("/claim as a1")
    assert claim is not None and claim.agent_name == "a1" and claim.percent is None


@pytest.mark.parametrize(
    ("typed", "suggestion"),
    [("clam", "claim"), ("relase", "release"), ("progres", "progress"), ("merg", "queue"), ("xyzzy", None)],
)
def test_unknown_commands_suggest_the_nearest(typed: str, suggestion: str | None) -> None:
    """An unknown /word is reported with the nearest known command (aliases map to their command)."""
    (command,) = parse_commands(f"/{typed} now")
    assert command.unknown and command.name == typed and command.suggestion == suggestion
    assert suggest(typed) == suggestion


@pytest.mark.parametrize(
    "line",
    ["/usr/bin/env python", "//comment", "/", "/ claim", "a /claim", "- /claim", "# /claim", "/123", "/claim/x", "`/claim`"],
)
def test_lines_that_are_not_commands(line: str) -> None:
    """Only `/word` at the start of a line, followed by a space or the end, is a command."""
    assert parse_commands(line) == []


@pytest.mark.parametrize(
    "body",
    [
        "```\n/claim\n```",
        "~~~md\n/claim\n~~~",
        "```\nunclosed fence\n/claim",
        "    /claim",
        "text\n\n    /claim",
        "> /claim",
        "> quoted\n/claim",  # lazy continuation: still inside the quote
        "> > /claim",
        "<!-- /claim -->",
        "<!--\n/claim\n-->",
        "text <!-- note\n/claim\n--> more",
        "- item\n\n  > /claim",
    ],
)
def test_commands_in_code_quotes_and_html_comments_are_ignored(body: str) -> None:
    """Quoting or showing a command never runs it."""
    assert parse_commands(body) == []


def test_commands_around_ignored_regions_are_found_with_line_numbers() -> None:
    """Commands before and after code blocks and quotes still count, with 1-based line numbers."""
    body = "Thanks!\n/claim as a1\n```\n/release\n```\n> /next\n\n/progress 10 started\r\n<!-- /help -->\n/gates"
    found = parse_commands(body)
    assert [(c.name, c.line_no) for c in found] == [("claim", 2), ("progress", 8), ("gates", 10)]


def test_html_comment_opener_inside_code_does_not_hide_later_commands() -> None:
    """A `<!--` shown in a code block is not a comment; the command after the block counts."""
    assert names("```html\n<!-- example\n```\n/claim\n-->") == ["claim"]


def test_command_in_a_list_item_continuation_counts() -> None:
    """An indented line that is not a code block (a list continuation) is still a command line."""
    assert names("- done\n  /progress 40") == ["progress"]


def test_several_commands_are_bounded() -> None:
    """At most max_commands are returned, in order."""
    body = "\n".join(f"/progress {i}" for i in range(50))
    assert [c.args[0] for c in parse_commands(body)] == [str(i) for i in range(10)]
    assert len(parse_commands(body, max_commands=3)) == 3
    assert parse_commands(body, max_commands=0) == []


def test_lines_beyond_the_limit_are_ignored() -> None:
    """A command after MAX_LINES lines is not looked at."""
    assert parse_commands("x\n" * (MAX_LINES - 1) + "/claim") != []
    assert parse_commands("x\n" * MAX_LINES + "/claim") == []


def test_huge_body_is_bounded() -> None:
    """A body far over GitHub's limit is cut, not parsed whole."""
    body = "/claim\n" + ("a" * 200 + "\n") * 5000
    assert names(body) == ["claim"]


@pytest.mark.parametrize("body", [None, "", "no commands here", "\x00/claim\x00"])
def test_empty_and_odd_bodies(body: str | None) -> None:
    """Nothing or junk gives no commands (a NUL before the slash means the line does not start with /)."""
    assert parse_commands(body) == []


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_arbitrary_text_never_crashes(body: str) -> None:
    """Any text parses without raising, and every result is well formed."""
    for command in parse_commands(body):
        assert isinstance(command, Command)
        assert command.raw_line.startswith("/")
        assert command.line_no >= 1
        assert command.unknown or command.name in COMMANDS


_markdownish = st.lists(
    st.sampled_from(["/claim", "/progress 5 x", "```", "~~~", "> ", "<!--", "-->", "    ", "- ", "\n", "\n\n", "text", "/clam", "`", "#", "*"]),
    max_size=30,
).map("".join)


@settings(max_examples=150, deadline=None)
@given(_markdownish)
def test_markdown_like_text_never_crashes(body: str) -> None:
    """Markdown-heavy text (fences, quotes, comments) parses without raising."""
    for command in parse_commands(body):
        assert body.split("\n")[command.line_no - 1].strip() == command.raw_line


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_fenced_content_is_never_a_command(inner: str) -> None:
    """Whatever sits inside a closed fence, no command comes out of it."""
    inner = inner.replace("`", "").replace("~", "")
    assert parse_commands(f"````\n{inner}\n````") == []


def test_registry_is_complete_and_consistent() -> None:
    """Every spec has help, a syntax starting with its name, a place and a known 'who'."""
    assert set(COMMANDS) == {"claim", "release", "next", "progress", "block", "unblock", "help", "queue", "dequeue", "priority", "gates"}
    for name, spec in COMMANDS.items():
        assert spec.name == name and spec.help and spec.where
        assert spec.syntax.startswith(f"/{name}")
        assert spec.who in {"anyone", "holder", "author", "write", "maintain"}
    assert COMMANDS["queue"].aliases == ("merge",)


def test_help_lists_only_commands_usable_in_the_context() -> None:
    """/help on an issue lists issue commands with who may use them; on a PR the PR commands."""
    issue = render_help("issue")
    assert "`/claim [as NAME]`" in issue and "`/block #N...`" in issue and "write access" in issue
    assert "/queue" not in issue
    pr = render_help("pr")
    assert "`/queue (also /merge)`" in pr and "`/priority high\\|normal\\|low`" in pr and "/claim" not in pr
    status = render_help("status")
    assert "/next" in status and "/claim" not in status


@pytest.mark.parametrize(
    ("who", "permission", "holder", "author", "allowed"),
    [
        ("anyone", None, False, False, True),
        ("holder", "read", True, False, True),
        ("holder", "read", False, False, False),
        ("holder", "write", False, False, True),
        ("author", "triage", False, True, True),
        ("author", "triage", False, False, False),
        ("write", "triage", True, True, False),
        ("write", "write", False, False, True),
        ("write", "admin", False, False, True),
        ("maintain", "write", False, False, False),
        ("maintain", "maintain", False, False, True),
    ],
)
def test_command_permissions(who: str, permission: str | None, holder: bool, author: bool, allowed: bool) -> None:
    """Who may run a command: holder/author commands are open to writers too."""
    spec = next(s for s in COMMANDS.values() if s.who == who) if who != "maintain" else None
    if spec is None:
        from dataclasses import replace

        spec = replace(COMMANDS["block"], who="maintain")
    assert command_allowed(spec, permission, is_holder=holder, is_author=author) is allowed


def test_permission_order() -> None:
    """Permissions compare by GitHub's ladder; unknown strings count as none."""
    assert has_permission("admin", "write") and has_permission("WRITE", "write")
    assert not has_permission("triage", "write") and not has_permission("bogus", "read")
    assert has_permission(None, "none")


HOSTILE_COMMENTS = "/help\n" + "<!--" * 16000


def test_unclosed_html_comments_are_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    """The review's input (2.8 s before) still finds /help; eight times as many openers, with the
    caps lifted, would take minutes with the old lazy ``<!--.*?-->``."""
    from app import prose

    assert [c.name for c in parse_commands(HOSTILE_COMMENTS)] == ["help"]
    monkeypatch.setattr(prose, "MAX_BODY_CHARS", 10**7)
    monkeypatch.setattr(prose, "MAX_LINE_CHARS", 10**7)
    assert [c.name for c in parse_commands("/help\n" + "<!--" * 128000)] == ["help"]
    assert [c.name for c in parse_commands("/help\n" + "<!---->\n" * 20000 + "/gates")] == ["help"]


def test_html_comments_hide_the_lines_they_span() -> None:
    """Found with str.find, a comment still hides every line after the one it opens on."""
    body = "<!--\n/claim\n-->\n/help\ntext <!-- a\n/next -->\n/gates"
    assert [c.name for c in parse_commands(body)] == ["help", "gates"]
