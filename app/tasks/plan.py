"""Plan import: a YAML plan of epics and tasks becomes milestones and issues (the decision only).

``parse_plan`` validates the YAML (errors name the path and line, e.g. ``tasks[3].depends_on[0]``);
``diff_plan`` compares the plan with what the repository already has and returns the changes to
make. Applying them is the caller's job (``fleet plan apply``), as is printing them (``--dry-run``,
via ``PlanChange.describe()``).

How it stays idempotent:
- Each issue body ends with a hidden ``<!-- fleet:plan-key=KEY -->`` marker, each milestone
  description with ``<!-- fleet:plan-epic=KEY -->``; existing items are matched by key, so titles
  can change. A milestone without a marker but with the same title is adopted.
- Bodies are rebuilt from the plan exactly (``Estimate: N h``, then one ``Depends on #N`` line per
  dependency, then the marker), so a second run over the result compares equal and yields nothing.
- Dependencies need issue numbers. Pass 1 creates issues with the dependency lines it can already
  write (``CreateIssue.unresolved`` lists the others); pass 2, ``diff_plan`` over the repository
  as it now is, yields the ``UpdateIssue`` bodies with the lines; pass 3 yields nothing.
- Labels: plan labels and ``priority:pN`` are added when missing; the only labels removed are
  other ``priority:`` labels, so labels added by people or by Fleet itself survive.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from app.input_limits import MAX_PLAN_BYTES
from app.yaml_input import RefusedYaml, load_untrusted_yaml, size_problem

Key = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
ISSUE_KEY_MARKER = "<!-- fleet:plan-key={key} -->"
EPIC_KEY_MARKER = "<!-- fleet:plan-epic={key} -->"
_ISSUE_KEY = re.compile(r"<!-- fleet:plan-key=([a-z0-9][a-z0-9._-]*) -->")
_EPIC_KEY = re.compile(r"<!-- fleet:plan-epic=([a-z0-9][a-z0-9._-]*) -->")
PRIORITY_LABEL_PREFIX = "priority:"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class PlanEpic(_Model):
    key: Key
    title: str = Field(min_length=1, max_length=255)
    description: str = ""
    due: date | None = None


class PlanTask(_Model):
    key: Key
    title: str = Field(min_length=1, max_length=256)
    body: str = ""
    estimate: float = Field(gt=0, le=1000, description="Estimated hours.")
    priority: int = Field(2, ge=0, le=3, description="0 is the most urgent; label `priority:pN`.")
    labels: tuple[str, ...] = ()
    epic: Key | None = None
    depends_on: tuple[Key, ...] = ()


class Plan(_Model):
    epics: tuple[PlanEpic, ...] = ()
    tasks: tuple[PlanTask, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> Plan:
        """Keys unique, references known, dependencies a DAG; errors name the path."""
        epic_keys: dict[str, int] = {}
        for i, epic in enumerate(self.epics):
            if epic.key in epic_keys:
                raise PlanError(f"duplicate epic key {epic.key!r} (also epics[{epic_keys[epic.key]}])",
                                path=f"epics[{i}].key")
            epic_keys[epic.key] = i
        task_keys: dict[str, int] = {}
        for i, task in enumerate(self.tasks):
            if task.key in task_keys:
                raise PlanError(f"duplicate task key {task.key!r} (also tasks[{task_keys[task.key]}])",
                                path=f"tasks[{i}].key")
            task_keys[task.key] = i
        for i, task in enumerate(self.tasks):
            if task.epic is not None and task.epic not in epic_keys:
                raise PlanError(f"unknown epic {task.epic!r}", path=f"tasks[{i}].epic")
            for j, dep in enumerate(task.depends_on):
                if dep not in task_keys:
                    raise PlanError(f"unknown task {dep!r}", path=f"tasks[{i}].depends_on[{j}]")
                if dep == task.key:
                    raise PlanError("a task cannot depend on itself", path=f"tasks[{i}].depends_on[{j}]")
        cycle = _find_cycle({t.key: t.depends_on for t in self.tasks})
        if cycle:
            raise PlanError("dependency cycle: " + " -> ".join(cycle),
                            path=f"tasks[{task_keys[cycle[0]]}].depends_on")
        return self

    @property
    def total_hours(self) -> float:
        return sum(t.estimate for t in self.tasks)


class PlanError(ValueError):
    """A plan that cannot be used; ``path`` (``tasks[3].estimate``) and ``line`` say where."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.message, self.path, self.line = message, path, line
        where = path or ""
        if line is not None:
            where = f"{where} (line {line})" if where else f"line {line}"
        super().__init__(f"{where}: {message}" if where else message)


def _find_cycle(graph: dict[str, Sequence[str]]) -> list[str] | None:
    """One dependency cycle as a list of keys (first repeated at the end), or None."""
    return _walk(graph)[1]


def _walk(graph: dict[str, Sequence[str]]) -> tuple[list[str], list[str] | None]:
    """Depth-first over ``graph`` (key → dependency keys), roots and dependencies in their given
    order, without recursion (a plan may be a chain thousands long): (every key reached, each
    after its dependencies; the first cycle met, or None)."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    for root in graph:
        if state.get(root):
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        state[root] = 1
        while stack:
            node, i = stack[-1]
            deps = graph.get(node, ())
            if i < len(deps):
                stack[-1] = (node, i + 1)
                nxt = deps[i]
                if state.get(nxt) == 1:
                    return order, path[path.index(nxt):] + [nxt]
                if not state.get(nxt):
                    state[nxt] = 1
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                state[node] = 2
                order.append(node)
                stack.pop()
                path.pop()
    return order, None


def _loc_path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_of(text: str, loc: Sequence[Any]) -> int | None:
    """Best-effort 1-based line of a path like ("tasks", 3, "estimate") in the YAML source."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    line, node = key_node.start_mark.line + 1, value_node
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


_PATH_PART = re.compile(r"([A-Za-z_]+)|\[(\d+)\]")


def _parse_path(path: str) -> list[str | int]:
    return [int(i) if i else name for name, i in _PATH_PART.findall(path)]


def parse_plan(text: str) -> Plan:
    """Parse and validate a YAML plan. Raises PlanError naming the path and line of the problem.

    Anchors and aliases are refused (see ``app.yaml_input``), as is a plan over MAX_PLAN_BYTES.
    """
    too_large = size_problem(text, MAX_PLAN_BYTES)
    if too_large:
        raise PlanError(f"the plan is too large: {too_large}")
    try:
        data = load_untrusted_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        what = "" if isinstance(exc, RefusedYaml) else "not valid YAML: "
        raise PlanError(f"{what}{getattr(exc, 'problem', exc)}",
                        line=mark.line + 1 if mark is not None else None) from None
    if not isinstance(data, dict):
        raise PlanError("a plan is a mapping with `epics` and `tasks`", line=1)
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, PlanError):  # raised inside the model validator
            raise PlanError(ctx_error.message, path=ctx_error.path,
                            line=_line_of(text, _parse_path(ctx_error.path or ""))) from None
        loc = tuple(err["loc"])
        raise PlanError(err["msg"], path=_loc_path(loc) or None, line=_line_of(text, loc)) from exc


# --- what the repository has ------------------------------------------------------------------


@dataclass(frozen=True)
class ExistingMilestone:
    number: int
    title: str
    description: str = ""
    due_on: date | None = None  # compare dates only: GitHub shifts due_on times by time zone
    state: str = "open"


@dataclass(frozen=True)
class ExistingIssue:
    number: int
    title: str
    body: str = ""
    labels: frozenset[str] = frozenset()
    milestone: int | None = None  # milestone number
    state: str = "open"


# --- changes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateMilestone:
    key: str
    title: str
    description: str
    due_on: date | None

    def describe(self) -> str:
        return f"create milestone {self.title!r} (epic {self.key})"


@dataclass(frozen=True)
class UpdateMilestone:
    key: str
    number: int
    changes: dict[str, Any]  # field -> new value: title, description, due_on

    def describe(self) -> str:
        return f"update milestone #{self.number} (epic {self.key}): {', '.join(sorted(self.changes))}"


@dataclass(frozen=True)
class CreateIssue:
    key: str
    title: str
    body: str
    labels: tuple[str, ...]
    milestone_key: str | None  # resolve to a number after the milestones are created
    milestone: int | None  # the number when the milestone already exists
    unresolved: tuple[str, ...] = ()  # dependency keys without an issue yet: created before this one
    task: PlanTask | None = None  # to write the body once ``unresolved`` have numbers (``body_with``)
    known: tuple[tuple[str, int], ...] = ()  # the issue numbers of plan keys that existed

    def describe(self) -> str:
        extra = f"; after its dependencies {', '.join(self.unresolved)}" if self.unresolved else ""
        return f"create issue {self.title!r} (task {self.key}){extra}"

    def body_with(self, created: dict[str, int]) -> str:
        """The body, with ``Depends on`` lines for the dependencies created earlier in this run."""
        if not self.unresolved or self.task is None:
            return self.body
        return issue_body(self.task, {**dict(self.known), **created})


@dataclass(frozen=True)
class UpdateIssue:
    key: str
    number: int
    changes: dict[str, Any] = field(default_factory=dict)  # title, body, milestone_key / milestone
    add_labels: tuple[str, ...] = ()
    remove_labels: tuple[str, ...] = ()
    unresolved: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = sorted(k for k in self.changes if k != "milestone")
        if self.add_labels:
            parts.append("+labels " + ", ".join(self.add_labels))
        if self.remove_labels:
            parts.append("-labels " + ", ".join(self.remove_labels))
        return f"update issue #{self.number} (task {self.key}): {'; '.join(parts)}"


PlanChange = CreateMilestone | UpdateMilestone | CreateIssue | UpdateIssue


def _fmt_hours(hours: float) -> str:
    return f"{hours:g}"


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").strip()


def milestone_description(epic: PlanEpic) -> str:
    marker = EPIC_KEY_MARKER.format(key=epic.key)
    return f"{epic.description.strip()}\n\n{marker}" if epic.description.strip() else marker


def dependencies_first(tasks: Sequence[PlanTask]) -> list[PlanTask]:
    """The tasks in plan order, except that each comes after the tasks it depends on (a plan
    has no cycles): issues created in this order name all their dependencies when created,
    with no second write to add them."""
    by_key = {task.key: task for task in tasks}
    order, _ = _walk({task.key: task.depends_on for task in tasks})
    return [by_key[key] for key in order if key in by_key]


def issue_body(task: PlanTask, numbers: dict[str, int]) -> str:
    """The issue body for ``task``: its text, estimate, known dependencies, then the key marker."""
    parts = [task.body.strip()] if task.body.strip() else []
    meta = [f"Estimate: {_fmt_hours(task.estimate)} h"]
    meta += [f"Depends on #{numbers[d]}" for d in task.depends_on if d in numbers]
    parts.append("\n".join(meta))
    parts.append(ISSUE_KEY_MARKER.format(key=task.key))
    return "\n\n".join(parts)


def issue_labels(task: PlanTask) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*task.labels, f"{PRIORITY_LABEL_PREFIX}p{task.priority}"]))


def plan_key(body: str | None) -> str | None:
    """The plan key marked in an issue body, if any."""
    match = _ISSUE_KEY.search(body or "")
    return match.group(1) if match else None


def diff_plan(
    plan: Plan, existing_milestones: Sequence[ExistingMilestone], existing_issues: Sequence[ExistingIssue]
) -> list[PlanChange]:
    """The changes that make the repository match ``plan``, milestones first, in plan order.

    Running it again over the repository after applying the changes yields only the pending
    dependency updates (if any issue was created), and after those, nothing.
    """
    changes: list[PlanChange] = []
    milestone_by_key: dict[str, ExistingMilestone] = {}
    for m in sorted(existing_milestones, key=lambda m: m.number):
        match = _EPIC_KEY.search(m.description or "")
        if match:
            milestone_by_key.setdefault(match.group(1), m)
    by_title = {m.title: m for m in sorted(existing_milestones, key=lambda m: -m.number)}
    for epic in plan.epics:
        found = milestone_by_key.get(epic.key) or by_title.get(epic.title)
        description = milestone_description(epic)
        if found is None:
            changes.append(CreateMilestone(epic.key, epic.title, description, epic.due))
            continue
        milestone_by_key[epic.key] = found
        diff: dict[str, Any] = {}
        if found.title != epic.title:
            diff["title"] = epic.title
        if _normalise(found.description or "") != _normalise(description):
            diff["description"] = description
        if found.due_on != epic.due:
            diff["due_on"] = epic.due
        if diff:
            changes.append(UpdateMilestone(epic.key, found.number, diff))

    issue_by_key: dict[str, ExistingIssue] = {}
    for issue in sorted(existing_issues, key=lambda i: i.number):  # duplicates: the oldest wins
        key = plan_key(issue.body)
        if key:
            issue_by_key.setdefault(key, issue)
    numbers = {key: issue.number for key, issue in issue_by_key.items()}

    known = tuple(sorted(numbers.items()))
    for task in dependencies_first(plan.tasks):
        body = issue_body(task, numbers)
        unresolved = tuple(d for d in task.depends_on if d not in numbers)
        labels = issue_labels(task)
        milestone = milestone_by_key.get(task.epic) if task.epic else None
        found = issue_by_key.get(task.key)
        if found is None:
            changes.append(CreateIssue(task.key, task.title, body, labels, task.epic,
                                       milestone.number if milestone else None, unresolved,
                                       task if unresolved else None, known if unresolved else ()))
            continue
        diff = {}
        if found.title != task.title:
            diff["title"] = task.title
        if _normalise(found.body) != _normalise(body):
            diff["body"] = body
        # A task without an epic leaves whatever milestone people gave the issue alone.
        if task.epic is not None and (milestone is None or found.milestone != milestone.number):
            diff["milestone"] = milestone.number if milestone else None  # None: created in this run
            diff["milestone_key"] = task.epic
        add = tuple(label for label in labels if label not in found.labels)
        remove = tuple(sorted(label for label in found.labels
                              if label.startswith(PRIORITY_LABEL_PREFIX) and label not in labels))
        if diff or add or remove:
            changes.append(UpdateIssue(task.key, found.number, diff, add, remove, unresolved))
    return changes
