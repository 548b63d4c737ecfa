"""The fleet/gates check run: exact rendering, and safety against hostile names."""
from __future__ import annotations

import re

import pytest

from app.gates.rules import CheckResult, GateResult, GateVerdict, PullSnapshot, evaluate_gates
from app.gates.check_run import (
    OUTPUT_LIMIT,
    fit_lines,
    md_code,
    md_link,
    md_text,
    render_check_run,
    render_summary,
    render_title,
    safe_url,
)
from app.repos.config import GatesConfig
from tests import builders

HEAD = "0123456789abcdef" * 2 + "01234567"
ZWSP = "\u200b"  # after # and GH-: not a cross-reference
ZWJ = "\u200d"  # after @: not a mention


def check(name="ci", conclusion="success", status="completed", url=None) -> CheckResult:
    return builders.check(name, conclusion, sha=HEAD, status=status, url=url)


def make_pr(**overrides) -> PullSnapshot:
    return builders.make_pr(head_sha=HEAD, **{"head_ref": "agent/12-x", "title": "", "body": None,
                                              "mergeable_state": "unknown", **overrides})


def verdict_for(**overrides) -> GateVerdict:
    return evaluate_gates(make_pr(**overrides), GatesConfig())


def table_rows(summary: str) -> list[str]:
    return [line for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| | Gate")]


def outside_code(markdown: str) -> str:
    """The Markdown with inline code spans removed (their content is rendered literally)."""
    return re.sub(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)", "", markdown)


def unescaped_pipes(row: str) -> int:
    return len(re.findall(r"(?<!\\)\|", row))


def test_no_required_checks_puts_a_loud_warning_under_the_headline():
    """With `gates.required_checks` empty any green check lets a PR merge: the summary says so."""
    summary = render_check_run(verdict_for()).summary
    assert summary.splitlines()[:5] == [
        "**All 8 gates passed** on `0123456789ab`",
        "",
        "> [!WARNING]",
        "> No required checks are configured: any green check lets a PR merge. "
        "Set `gates.required_checks` in .github/fleet.yml.",
        "",
    ]
    configured = evaluate_gates(make_pr(), GatesConfig(required_checks=("ci",)))
    assert "WARNING" not in render_check_run(configured).summary


def test_green_verdict_renders_exact_summary():
    """The summary is a headline plus one row per gate, icon first."""
    fields = render_check_run(evaluate_gates(make_pr(), GatesConfig(required_checks=("ci",))))
    assert (fields.status, fields.conclusion) == ("completed", "success")
    assert fields.title == "All 8 gates passed"
    assert fields.summary == "\n".join([
        "**All 8 gates passed** on `0123456789ab`",
        "",
        "| | Gate | Result | Details |",
        "|---|---|---|---|",
        "| ✅ | checks | 1 required check passed |  |",
        "| ✅ | reviews | no approval required |  |",
        "| ✅ | changes\\_requested | no outstanding change requests |  |",
        "| ✅ | labels | no blocking label |  |",
        "| ✅ | draft | ready for review |  |",
        f"| ✅ | linked\\_task | linked to \\#{ZWSP}12 |  |",
        "| ✅ | conflict | no conflict |  |",
        "| ✅ | size | no size limit |  |",
    ])


def test_waiting_verdict_is_in_progress_without_conclusion():
    """A waiting gate keeps the check run in progress; no conclusion is sent."""
    fields = render_check_run(verdict_for(checks=(check(status="queued", conclusion=None),)))
    assert (fields.status, fields.conclusion) == ("in_progress", None)
    assert fields.title == "Waiting: checks"
    assert "conclusion" not in fields.update_payload()
    assert "⏳" in fields.summary


def test_failing_verdict_is_completed_failure_with_link():
    fields = render_check_run(verdict_for(checks=(check("ci", "failure", url="https://ci.example/run/1"),), labels=("wip",)))
    assert (fields.status, fields.conclusion) == ("completed", "failure")
    assert fields.title == "2 gates failing: checks, labels"
    assert "| ❌ | checks | 1 check failed: `ci` | [details](https://ci.example/run/1) |" in fields.summary
    assert "| ❌ | labels | blocking label: `wip` |  |" in fields.summary


def test_payloads_for_create_and_update():
    """create carries name and head_sha; update patches the same run in place."""
    fields = render_check_run(verdict_for(), details_url="https://fleet.example/pr/7")
    create = fields.create_payload()
    assert create["name"] == "fleet/gates" and create["head_sha"] == HEAD
    assert create["conclusion"] == "success" and create["status"] == "completed"
    assert create["details_url"] == "https://fleet.example/pr/7"
    assert set(create["output"]) == {"title", "summary", "text"}
    assert "name" not in fields.update_payload()


def test_digest_changes_only_with_content():
    """Identical renders share a digest, so the executor can skip an unchanged PATCH."""
    a, b = render_check_run(verdict_for()), render_check_run(verdict_for())
    c = render_check_run(verdict_for(labels=("wip",)))
    assert a.digest == b.digest != c.digest


def test_queue_position_line():
    summary = render_summary(verdict_for(), queue_position=2, queue_length=5)
    assert "Merge queue position: 2 of 5" in summary


def test_text_lists_checks_worst_first():
    text = render_check_run(verdict_for(checks=(check("a"), check("b", "failure")))).text
    rows = [line for line in text.splitlines() if line.startswith("| ❌") or line.startswith("| ✅")]
    assert rows[0].startswith("| ❌ | `b`")
    assert rows[1].startswith("| ✅ | `a`")


def test_text_without_checks():
    assert render_check_run(verdict_for(checks=())).text == "No checks reported on `0123456789ab` yet."


HOSTILE = [
    "ci | evil | cell",
    "line1\nline2\r\n| injected | row |",
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "`code` ``double`` ```",
    "@octocat please look",
    "fix #1 and GH-2",
    "[click](javascript:alert(1))",
    "**bold** _it_ ~~s~~",
    "<!-- hidden -->",
    "\\|",
    "`",
    "   ",
    "x" * 5000,
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_check_names_and_labels_stay_inside_their_cell(name):
    """Pipes, newlines, HTML, backticks and @mentions in check names and labels cannot break out."""
    verdict = verdict_for(checks=(check(name, "failure", url="https://ci/1"),), labels=(name,))
    summary = render_check_run(verdict).summary
    text = render_check_run(verdict).text
    for rendered in (summary, text):
        for row in table_rows(rendered):
            assert unescaped_pipes(row) == unescaped_pipes(table_rows(rendered)[0]), row
        bare = outside_code(rendered)
        assert "<" not in bare and "@octocat" not in bare and "#1 " not in bare, bare
    assert len(table_rows(summary)) == 8


def test_hostile_reason_text_is_escaped():
    """Gate reasons pass through md_text as well (defence in depth)."""
    verdict = GateVerdict(HEAD, (GateResult("labels", "failing", "evil | <b>@team</b>\nrow"),))
    row = table_rows(render_summary(verdict))[0]
    assert row == f"| ❌ | labels | evil \\| &lt;b&gt;@{ZWJ}team&lt;/b&gt; row |  |"


@pytest.mark.parametrize("text,expected", [
    ("plain words", "plain words"),
    ("a|b", "a\\|b"),
    ("<b>&", "&lt;b&gt;&amp;"),
    ("@user", f"@{ZWJ}user"),
    ("#12", f"\\#{ZWSP}12"),
    ("GH-12", f"GH-{ZWSP}12"),
    ("a\nb\r\nc\td", "a b c d"),
    ("*x* _y_ [z](w) `q`", "\\*x\\* \\_y\\_ \\[z\\]\\(w\\) \\`q\\`"),
    ("a@b", f"a@{ZWJ}b"),
])
def test_md_text(text, expected):
    assert md_text(text) == expected


@pytest.mark.parametrize("text,in_table,expected", [
    ("ci", True, "`ci`"),
    ("a|b", True, "`a\\|b`"),
    ("a|b", False, "`a|b`"),
    ("has `tick`", True, "`` has `tick` ``"),
    ("`edge", True, "`` `edge ``"),
    ("two``runs", True, "```two``runs```"),
    ("a\nb", True, "`a b`"),
    ("", True, "(empty)"),
])
def test_md_code(text, in_table, expected):
    assert md_code(text, in_table=in_table) == expected


def test_md_code_truncates():
    assert md_code("x" * 500) == "`" + "x" * 99 + "…`"


@pytest.mark.parametrize("url,expected", [
    ("https://ci.example/run/1", "https://ci.example/run/1"),
    ("http://ci.example/a?b=c&d=e#f", "http://ci.example/a?b=c&d=e#f"),
    ("https://ci.example/a(b)", "https://ci.example/a%28b%29"),
    ("https://ci.example/a b", "https://ci.example/a%20b"),
    ("https://ci.example/<x>", "https://ci.example/%3Cx%3E"),
    ("javascript:alert(1)", None),
    ("data:text/html,hi", None),
    ("//no-scheme", None),
    ("https://ci.example/\nnext", None),
    ("https://" + "a" * 3000, None),
    ("", None),
    (None, None),
])
def test_safe_url(url, expected):
    assert safe_url(url) == expected


def test_md_link_without_safe_url_is_empty():
    assert md_link("details", "javascript:alert(1)") == ""
    assert md_link("a]b", "https://x.example") == "[a\\]b](https://x.example)"


def test_many_long_hostile_checks_fit_the_limit():
    """Thousands of long-named checks still fit GitHub's 65,535-character output limit."""
    checks = tuple(check(f"{i}-" + "é|<>`@" * 60, "failure", url=f"https://ci/{i}") for i in range(3000))
    fields = render_check_run(verdict_for(checks=checks, labels=tuple(f"l{i}" * 50 for i in range(200))))
    assert len(fields.summary.encode("utf-8")) <= OUTPUT_LIMIT
    assert len(fields.text.encode("utf-8")) <= OUTPUT_LIMIT
    assert "and 2990 more" in fields.summary
    assert fields.text.endswith("(3000 in total)")


def test_fit_lines_drops_whole_lines():
    lines = ["a" * 10] * 10
    assert fit_lines(lines, limit=1000) == "\n".join(lines)
    cut = fit_lines(lines, limit=40, note="…")
    assert len(cut) <= 40 and cut.endswith("\n\n…")
    assert all(line in ("a" * 10, "", "…") for line in cut.splitlines())


def test_title_counts_failing_gates():
    verdict = GateVerdict(HEAD, (GateResult("labels", "failing", "x"), GateResult("draft", "failing", "y"),
                                 GateResult("checks", "waiting", "z")))
    assert render_title(verdict) == "2 gates failing: labels, draft"
