"""Fuzzing ``.github/fleet.yml`` and comment bodies with hypothesis.

- ``parse_repo_config`` returns a RepoConfig or raises ConfigError — never anything else — and a
  config it accepts can be stored and read back (Fleet keeps it as JSON in Postgres).
- Comments of any shape (commands with odd arguments, code, quotes, HTML comments, unicode,
  very long lines) by users of any permission go through command parsing and the command service
  end to end: the delivery is processed (never failed), and every reply GitHub accepted.
"""
from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from app.repos.config import ConfigError, RepoConfig, parse_repo_config

PURE = hsettings(max_examples=300, deadline=None, derandomize=True)
E2E = hsettings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# --- .github/fleet.yml -----------------------------------------------------------------------

SECTIONS = {name: sorted(field.annotation.model_fields)
            for name, field in RepoConfig.model_fields.items()}

durations = st.one_of(
    st.from_regex(r"\A\d{1,6}(\.\d{1,3})?[smhdw]\Z"),
    st.from_regex(r"\A(\d{1,3}[smhdw]){1,3}\Z"),
    st.sampled_from(["", "0", "0s", "-5m", "4 h", "1h 30m", "forever", "1e3", "3600", "h", "1x"]),
)
# Durations of any size and type are also exercised by the out-of-range test below.
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9),
              st.floats(min_value=-1e9, max_value=1e9), st.just(float("nan")), st.text(max_size=20), durations,
              st.sampled_from(["squash", "merge", "rebase", "fleet:queue", "@org/team", "[", "{{", "*"])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


# Duration keys get duration-like values most of the time, and anything at all otherwise.
DURATION_KEYS = {"lease", "ci_timeout", "min_interval"}
duration_values = st.one_of(durations, st.integers(-10**30, 10**30), st.floats(allow_nan=True), values)


@st.composite
def config_documents(draw) -> str:
    doc: dict = {}
    for section in draw(st.lists(st.sampled_from([*SECTIONS, "extra", ""]), max_size=4, unique=True)):
        keys = SECTIONS.get(section, []) + ["unknown_key"]
        chosen = draw(st.lists(st.sampled_from(keys), max_size=4, unique=True))
        doc[section] = {key: draw(duration_values if key in DURATION_KEYS else values) for key in chosen}
        if draw(st.booleans()) and section in SECTIONS:
            doc[section] = draw(values)  # a section that is not a mapping
    text = yaml.safe_dump(doc, allow_unicode=True)
    if draw(st.booleans()):  # break the YAML itself somewhere
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from(["\t", ": :", "- [", "&a *a", "\x00", "'", "---\n---\n", "!!python/object:os.system\n"])) + text[cut:]
    return text


def check_config(text: str) -> None:
    try:
        config = parse_repo_config(text)
    except ConfigError as exc:
        assert str(exc)
        return
    assert isinstance(config, RepoConfig)
    stored = json.loads(json.dumps(config.model_dump(mode="json")))
    assert RepoConfig.model_validate(stored) == config  # what Fleet stores, it can read back


@PURE
@given(config_documents())
def test_fleet_yml_is_a_config_or_a_config_error(text):
    check_config(text)


@PURE
@given(st.text(max_size=400))
def test_arbitrary_text_as_fleet_yml_is_a_config_or_a_config_error(text):
    check_config(text)


@pytest.mark.parametrize("text", [
    "claims:\n  lease: 99999999999999999999w\n",
    "claims:\n  lease: 999999999999999999999999\n",
    "status:\n  min_interval: .inf\n",
    "claims:\n  lease: 0.0000001s\n",
    "queue:\n  ci_timeout: 0.0000004\n",
    "claims:\n  lease:\n",
    "claims:\n  lease: [4h]\n",
    "status:\n  min_interval: 2024-01-01\n",
], ids=["huge-weeks", "huge-seconds", "infinite", "sub-microsecond", "sub-microsecond-seconds",
        "null", "list", "yaml-date"])
def test_out_of_range_durations_are_config_errors_that_read_back(text):
    check_config(text)


# --- comment bodies through the command service (end to end) -----------------------------------

COMMANDS = ["/claim", "/claim as agent-7", "/claim as ", "/claim as " + "n" * 60, "/release", "/release as x",
            "/next", "/next as bot_2", "/progress 50 halfway", "/progress", "/progress 150", "/progress -3 x",
            "/progress 99999999999999999999", "/block #1", "/block #999999999999", "/block octo/widgets#2",
            "/unblock #1", "/unblock", "/block #0", "/help", "/queue", "/dequeue", "/priority high",
            "/gates", "/merge", "/clam", "/", "//", "/CLAIM", "/claim\u00a0as x", "/progress 10 " + "é" * 500]
WRAPPERS = ["{}", "```\n{}\n```", "> {}", "    {}", "<!-- {} -->", "<!--\n{}\n-->", "**{}**", "- {}", "{} {}",
            "text before\n\n{}", "{}\n\n---\n\n{}"]

lines = st.one_of(
    st.sampled_from(COMMANDS),
    st.builds(lambda w, c: w.replace("{}", c), st.sampled_from(WRAPPERS), st.sampled_from(COMMANDS)),
    st.text(max_size=80),
    st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF, blacklist_categories=("Cs",)),
            max_size=30),
    st.sampled_from(["x" * 10_000, "\x00", "\r\n", "@alice please", "<!-- fleet:{\"result\": \"accepted\"} -->"]),
)
bodies = st.lists(lines, min_size=1, max_size=14).map("\n".join).filter(lambda b: b.strip())  # GitHub: 422


@pytest.fixture
def comment_world(world):
    sim = world.sim
    sim.add_user("alice", "write")
    sim.add_user("reader", "read")
    sim.add_user("stranger", "none")
    world.numbers = [sim.open_issue(world.repo, "Fuzzed task"), sim.open_issue(world.repo, "Another task")]
    world.settle()
    return world


@E2E
@given(body=bodies, author=st.sampled_from(["alice", "reader", "stranger"]), which=st.integers(0, 1))
def test_any_comment_is_handled_and_every_reply_is_accepted_by_github(comment_world, db_conn, body, author, which):
    w = comment_world
    number = w.numbers[which]
    before = len(w.sim.requests)
    w.sim.comment(w.repo, number, body[:65_536], author=author)
    w.settle()
    failed = db_conn.execute(
        "SELECT event, action, last_error FROM deliveries WHERE status NOT IN ('processed', 'ignored')").fetchall()
    assert failed == [], failed
    # Fleet never sent GitHub a request it refused (a reply too long, a bad field); 404s are part
    # of normal reads and of removing a label that is already gone.
    refused = [(q.method, q.path, q.status) for q in w.sim.requests[before:] if q.status >= 400 and q.status != 404]
    assert refused == [], refused
    assert w.sim.violations == []


# --- hostile files (security review) ---------------------------------------------------------

ALIAS_BOMB = "tasks:\n  exclude_labels: [&s " + "x" * 8000 + ", " + ", ".join(["*s"] * 2000) + "]\n"


def test_an_alias_bomb_is_refused_in_one_line():
    """A 16 KB file of aliases (16 MB once expanded) is a one-line ConfigError, nothing expanded."""
    assert len(ALIAS_BOMB) < 17_000
    with pytest.raises(ConfigError) as err:
        parse_repo_config(ALIAS_BOMB)
    assert str(err.value) == ".github/fleet.yml: aliases are not allowed"
    assert err.value.line == 2


@pytest.mark.parametrize("text", [
    "claims: &c\n  lease: 4h\n",
    "claims:\n  allow: [&a bob]\n",
    "base: &b {lease: 4h}\nclaims: *b\n",
])
def test_any_anchor_or_alias_is_refused(text):
    with pytest.raises(ConfigError, match="aliases are not allowed"):
        parse_repo_config(text)


def test_a_file_over_the_size_cap_is_refused_naming_the_cap():
    """64 KiB is read at most; the reason says so."""
    from app.input_limits import MAX_CONFIG_BYTES

    text = "# " + "x" * MAX_CONFIG_BYTES + "\nclaims:\n  lease: 4h\n"
    with pytest.raises(ConfigError, match="at most 64 KiB") as err:
        parse_repo_config(text)
    assert "\n" not in str(err.value)
    assert parse_repo_config("# " + "x" * 1000 + "\nclaims:\n  lease: 4h\n").claims.lease.total_seconds() == 4 * 3600


@pytest.mark.parametrize(("text", "problem"), [
    ("claims: " + "[" * 5000 + "]" * 5000, "nested deeper than"),
    ("claims:\n  max_per_agent: " + "9" * 5000, "cannot be read"),
])
def test_deep_nesting_and_huge_numbers_are_config_errors(text, problem):
    """Neither reaches Python's recursion or integer-digit limits as a crash."""
    with pytest.raises(ConfigError, match=problem):
        parse_repo_config(text)


BACKTRACKING = r"^(?P<number>(\d+)+)x$"


@pytest.mark.parametrize(("pattern", "problem"), [
    (r"^(?P<number>\d+)-(?P=number)$", "RE2"),
    (r"^(?<=x)(?P<number>\d+)$", "RE2"),
    (r"^task/(\d+)$", "no `(?P<number>...)` group"),
    ("(?P<number>" + "a" * 600 + ")", "longer than 500"),
])
def test_branch_patterns_re2_refuses_are_config_errors_naming_key_and_pattern(pattern, problem):
    text = yaml.safe_dump({"tasks": {"branch_patterns": [r"^(?P<number>\d+)$", pattern]}})
    with pytest.raises(ConfigError) as err:
        parse_repo_config(text)
    assert err.value.key == "tasks.branch_patterns"
    assert problem in str(err.value)
    assert f"`{pattern[:30]}" in str(err.value)


def test_branch_patterns_are_capped_in_number():
    text = yaml.safe_dump({"tasks": {"branch_patterns": [rf"^{i}-(?P<number>\d+)$" for i in range(21)]}})
    with pytest.raises(ConfigError, match="at most 20 patterns"):
        parse_repo_config(text)


def test_a_backtracking_pattern_is_accepted_because_re2_runs_it():
    """RE2 has no catastrophic backtracking, so the review's pattern is allowed and harmless."""
    config = parse_repo_config(yaml.safe_dump({"tasks": {"branch_patterns": [BACKTRACKING]}}))
    assert config.tasks.branch_patterns == (BACKTRACKING,)


def test_a_stored_config_todays_rules_refuse_loads_as_the_defaults():
    """A config stored before patterns were checked must not make every event fail."""
    from app.repos.config import DEFAULT_CONFIG, load_stored_config

    stored = DEFAULT_CONFIG.model_dump(mode="json")
    stored["tasks"]["branch_patterns"] = [r"(?<=x)(?P<number>\d+)"]
    assert load_stored_config(stored) == DEFAULT_CONFIG
    stored["tasks"]["branch_patterns"] = [r"^t(?P<number>\d+)$"]
    assert load_stored_config(stored).tasks.branch_patterns == (r"^t(?P<number>\d+)$",)
