"""Parsing task facts out of issue and PR text: dependencies, closing refs, estimates, priority,
branch links, and which issues are tasks."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.repos.config import TasksConfig
from app.tasks.refs import (
    BranchLink,
    TaskRef,
    branch_task,
    is_task,
    parse_closing_refs,
    parse_dependencies,
    parse_estimate,
    parse_priority,
    parse_ref,
)

REPO = "acme/widgets"


def here(*numbers: int) -> list[TaskRef]:
    return [TaskRef("acme", "widgets", n) for n in numbers]


def test_task_ref_names() -> None:
    """A ref prints as owner/repo#N and shortens to #N inside its own repository."""
    ref = TaskRef.of("acme/widgets", 7)
    assert (str(ref), ref.full_name, ref.repo_full_name) == ("acme/widgets#7", "acme/widgets#7", "acme/widgets")
    assert ref.short("ACME/widgets") == "#7" and ref.short("other/x") == "acme/widgets#7"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Depends on #12", here(12)),
        ("depends on #12", here(12)),
        ("DEPENDS ON #12.", here(12)),
        ("Blocked by #12, #14", here(12, 14)),
        ("blocked by: #3 and #4", here(3, 4)),
        ("Blocked by #3 & #4 #5", here(3, 4, 5)),
        ("This depends on other/repo#7 first", [TaskRef("other", "repo", 7)]),
        ("depends on acme/WIDGETS#9", here(9)),
        ("Depends on https://github.com/other/repo/issues/8", [TaskRef("other", "repo", 8)]),
        ("Depends on #1\nBlocked by #2\nDepends on #1", here(1, 2)),
        ("Some text. Depends on #5 and more text", here(5)),
        ("- [ ] Depends on #6", here(6)),
        ("Depends\non #6", []),
        ("Depends on #12abc", []),
        ("Depends on #0", []),
        ("Depends on 12", []),
        ("Related to #12", []),
        ("```\nDepends on #12\n```", []),
        ("> Depends on #12", []),
        ("<!-- Depends on #12 -->", []),
        ("Example: `Depends on #12`", []),
        ("    Depends on #12", []),
        (None, []),
    ],
)
def test_parse_dependencies(body: str | None, expected: list[TaskRef]) -> None:
    """Dependencies in prose count, in order, once; code, quotes and comments do not."""
    assert parse_dependencies(body, REPO) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Closes #1", here(1)),
        ("closes: #1", here(1)),
        ("Fixes other/repo#3", [TaskRef("other", "repo", 3)]),
        ("fix #1 and resolve #2; resolved: #3", here(1, 2, 3)),
        ("Close #1 closed #2 fixed #3 resolves #4", here(1, 2, 3, 4)),
        ("Closes #1, #2", here(1)),  # each reference needs its own keyword, as on GitHub
        ("Closes #1, closes #2", here(1, 2)),
        ("prefixes #6", []),
        ("closes#7", []),
        ("Refs #7", []),
        ("Hotfix #7", []),
        ("```\nCloses #1\n```", []),
        ("> Closes #1", []),
    ],
)
def test_parse_closing_refs(body: str, expected: list[TaskRef]) -> None:
    """GitHub's closing keywords link a PR to the tasks it closes."""
    assert parse_closing_refs(body, REPO) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#3", TaskRef("acme", "widgets", 3)),
        (" other/repo#4 ", TaskRef("other", "repo", 4)),
        ("https://github.com/acme/widgets/pull/5", TaskRef("acme", "widgets", 5)),
        ("3", None),
        ("#", None),
        ("#3 #4", None),
    ],
)
def test_parse_ref(text: str, expected: TaskRef | None) -> None:
    """One reference, e.g. a /block argument."""
    assert parse_ref(text, REPO) == expected


@pytest.mark.parametrize(
    ("labels", "body", "hours"),
    [
        (["estimate:8h"], None, 8.0),
        (["estimate:2d"], None, 16.0),  # a day is 8 hours of work
        (["Estimate: 90m"], None, 1.5),
        (["estimate:3"], None, 3.0),
        ([], "Estimate: 6 h", 6.0),
        ([], "Estimate: 1.5h", 1.5),
        ([], "estimate: 2 days", 16.0),
        ([], "**Estimate:** 4 hours", 4.0),
        ([], "- Estimate: 5h", 5.0),
        (["estimate:2h"], "Estimate: 6 h", 2.0),  # the label wins
        (["estimate:soon"], "Estimate: 6 h", 6.0),
        ([], "Estimate: 3 weeks", None),
        ([], "Estimate: 0h", None),
        ([], "The estimate: 6h is wrong", None),
        ([], "```\nEstimate: 6h\n```", None),
        ([], None, None),
    ],
)
def test_parse_estimate(labels: list[str], body: str | None, hours: float | None) -> None:
    """Estimates in hours from a label or an `Estimate:` line."""
    assert parse_estimate(labels, body) == hours


@pytest.mark.parametrize(
    ("labels", "priority"),
    [
        ([], 2),
        (["bug"], 2),
        (["priority:critical"], 0),
        (["priority:p0"], 0),
        (["priority:high"], 1),
        (["Priority: P1"], 1),
        (["priority:medium"], 2),
        (["priority:normal"], 2),
        (["priority:p2"], 2),
        (["priority:low"], 3),
        (["priority:p3"], 3),
        (["priority:low", "priority:high"], 1),
        (["priority:whenever"], 2),
    ],
)
def test_parse_priority(labels: list[str], priority: int) -> None:
    """Priority labels map to a sortable int, lower is more urgent, normal by default."""
    assert parse_priority(labels) == priority


DEFAULT_PATTERNS = TasksConfig().branch_patterns


@pytest.mark.parametrize(
    ("branch", "link"),
    [
        ("agent-d/123-short-title", BranchLink("agent-d/123-short-title", 123, "agent-d")),
        ("refs/heads/agent-d/123", BranchLink("agent-d/123", 123, "agent-d")),
        ("123-title", BranchLink("123-title", 123, None)),
        ("123", BranchLink("123", 123, None)),
        ("issue-123", BranchLink("issue-123", 123, None)),
        ("issue-123_fix", BranchLink("issue-123_fix", 123, None)),
        ("main", None),
        ("feature/login", None),
        ("agent-d/abc-123", None),
        ("0-zero", None),
        ("v1.2.3", None),
    ],
)
def test_branch_task_default_patterns(branch: str, link: BranchLink | None) -> None:
    """Default branch patterns: NAME/123-title, 123-title, issue-123."""
    assert branch_task(branch, DEFAULT_PATTERNS) == link


def test_branch_task_custom_and_broken_patterns() -> None:
    """Patterns are tried in order; broken ones and invalid agent names are skipped."""
    patterns = ["(", r"^task/(?P<number>\d+)$", r"^(?P<agent>-bad)/(?P<number>\d+)$"]
    assert branch_task("task/5", patterns) == BranchLink("task/5", 5, None)
    assert branch_task("-bad/6", patterns) == BranchLink("-bad/6", 6, None)
    assert branch_task("x/7", [r"^x/(?P<nope>\d+)$"]) is None


@pytest.mark.parametrize(
    ("labels", "config", "expected"),
    [
        ([], TasksConfig(), True),
        (["bug"], TasksConfig(), True),
        (["question"], TasksConfig(), False),
        (["Fleet:Status"], TasksConfig(), False),
        (["bug"], TasksConfig(include_labels=("agent-task",)), False),
        (["Agent-Task"], TasksConfig(include_labels=("agent-task",)), True),
        (["agent-task", "discussion"], TasksConfig(include_labels=("agent-task",)), False),
    ],
)
def test_is_task(labels: list[str], config: TasksConfig, expected: bool) -> None:
    """Exclude labels win; include labels, when set, are required."""
    assert is_task(labels, config) is expected


@settings(max_examples=150, deadline=None)
@given(st.text(), st.lists(st.text(max_size=30), max_size=5))
def test_parsers_never_crash(body: str, labels: list[str]) -> None:
    """No user text makes any parser raise."""
    for ref in parse_dependencies(body, REPO) + parse_closing_refs(body, REPO):
        assert ref.number > 0
    estimate = parse_estimate(labels, body)
    assert estimate is None or estimate > 0
    assert 0 <= parse_priority(labels) <= 3
    branch_task(body[:200], DEFAULT_PATTERNS)


@given(st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=8))
def test_dependency_lists_round_trip(numbers: list[int]) -> None:
    """However many refs a 'Blocked by' list has, each is found once, in order."""
    body = "Blocked by " + ", ".join(f"#{n}" for n in numbers)
    assert parse_dependencies(body, REPO) == here(*dict.fromkeys(numbers))


# --- hostile text (security review: one PR body stalled every tenant) ------------------------

HOSTILE_CLOSES = "Closes" + " " * 60000 + "x"


@pytest.fixture
def uncapped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lift the input caps, so a test shows the patterns themselves are linear."""
    from app import prose

    monkeypatch.setattr(prose, "MAX_BODY_CHARS", 10**7)
    monkeypatch.setattr(prose, "MAX_LINE_CHARS", 10**7)


def test_closing_keyword_then_60000_spaces_finds_nothing() -> None:
    """The review's input (84.5 s before) finds nothing; the ordinary spellings still work."""
    assert parse_closing_refs(HOSTILE_CLOSES, REPO) == []
    assert parse_closing_refs("Closes #5", REPO) == here(5)
    assert parse_closing_refs("Closes :  #6 and fixes:#7", REPO) == here(6, 7)
    assert parse_closing_refs(HOSTILE_CLOSES + "\nCloses #5", REPO) == here(5)


def test_whitespace_runs_are_linear_without_the_caps(uncapped: None) -> None:
    """Even a 60,000-character line is scanned in linear time (each call took 84 s before)."""
    for keyword in ("Closes", "Fixes", "Resolved", "Depends on", "blocked by"):
        body = keyword + " " * 60000 + "x"
        assert parse_closing_refs(body, REPO) == []
        assert parse_dependencies(body, REPO) == []
    assert parse_dependencies("Depends on" + " " * 60000 + "#3", REPO) == here(3)
    assert parse_dependencies("Blocked by #1" + " and" * 15000 + " #2", REPO) == here(1)


def test_a_run_of_backticks_is_linear_without_the_caps(uncapped: None) -> None:
    """An unclosed run of backticks opens no code span (the old ``(`+).*?\\1`` was cubic)."""
    assert parse_closing_refs("Closes #5 a" + "`" * 60000, REPO) == here(5)
    assert parse_closing_refs("a " + "`` `" * 15000 + " Closes #9", REPO) == here(9)


@pytest.mark.parametrize(
    ("body", "refs"),
    [
        ("`Closes #1` Closes #2", [2]),
        ("``Closes `#1` `` Closes #2", [2]),
        ("``Closes #1` Closes #2", [1, 2]),  # no closing run of two: literal backticks
        ("`a` Closes #3 `b`", [3]),
    ],
)
def test_code_spans_follow_commonmark(body: str, refs: list[int]) -> None:
    """A run of N backticks is closed only by the next run of exactly N."""
    assert parse_closing_refs(body, REPO) == here(*refs)


def test_only_the_first_characters_of_a_line_are_scanned() -> None:
    """A reference past MAX_LINE_CHARS on one line is not read; on its own line it is."""
    from app.input_limits import MAX_LINE_CHARS

    assert parse_closing_refs("x" * MAX_LINE_CHARS + " Closes #4", REPO) == []
    assert parse_closing_refs("x" * MAX_LINE_CHARS + "\nCloses #4", REPO) == here(4)


def test_the_reviews_backtracking_branch_pattern_returns_at_once() -> None:
    """``^(?P<number>(\\d+)+)x$`` took Python's re 2.3 s on 26 characters (×4 per 2 more); on RE2
    a 200-character branch is instant (with re it would outlast the universe)."""
    pattern = r"^(?P<number>(\d+)+)x$"
    assert branch_task("1" * 26, [pattern]) is None
    assert branch_task("1" * 200, [pattern]) is None
    assert branch_task("12x", [pattern]) == BranchLink("12x", 12, None)


def test_branch_names_over_the_cap_are_not_matched() -> None:
    from app.input_limits import MAX_BRANCH_CHARS

    assert branch_task("7-" + "a" * (MAX_BRANCH_CHARS - 2), DEFAULT_PATTERNS) == BranchLink(
        "7-" + "a" * (MAX_BRANCH_CHARS - 2), 7, None)
    assert branch_task("7-" + "a" * (MAX_BRANCH_CHARS - 1), DEFAULT_PATTERNS) is None


def test_branch_patterns_are_compiled_once() -> None:
    """One cache for every caller (push and pull-request handlers): the same program each time."""
    from app.repos.branch_patterns import compile_branch_pattern

    assert compile_branch_pattern(DEFAULT_PATTERNS[0]) is compile_branch_pattern(DEFAULT_PATTERNS[0])
