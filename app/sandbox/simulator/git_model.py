"""A tiny in-memory git model: commits with full trees, branches as pointers.

Enough to answer the questions GitHub answers about pull requests: which commits
a branch has that another lacks, whether two branches conflict, and what a merge,
squash or rebase produces. Trees are plain ``{path: content}`` dicts (no blobs,
no modes); a commit's sha is the sha1 of its content plus a counter so that two
otherwise identical commits still get distinct ids, as real ones do by timestamp.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Person:
    """A git identity as a commit records it (``author`` / ``committer`` lines)."""

    name: str
    email: str
    date: str


@dataclass(frozen=True)
class Commit:
    """One immutable commit.

    ``author`` is the login the commit is attributed to; ``git_author`` and ``git_committer``
    are set only when a client named the identities itself (the git commits API), otherwise
    both are derived from ``author`` and ``timestamp``. ``signature`` is the ``gpgsig`` header,
    ``verified`` whether GitHub considers it valid.
    """

    sha: str
    tree: dict
    parents: tuple
    message: str
    author: str
    timestamp: str
    git_author: Person | None = None
    git_committer: Person | None = None
    signature: str | None = None
    verified: bool = False

    @property
    def tree_sha(self) -> str:
        """A stable id for the tree alone (git's tree sha stand-in)."""
        return hashlib.sha1(json.dumps(self.tree, sort_keys=True).encode()).hexdigest()


def blob_sha(content: str) -> str:
    """Git's real blob sha for ``content`` (what the contents API reports)."""
    data = content.encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class MergeConflict(Exception):
    """Raised when a three-way merge touches the same path differently on both sides."""

    def __init__(self, paths):
        super().__init__("merge conflict in " + ", ".join(sorted(paths)))
        self.paths = sorted(paths)


@dataclass
class GitStore:
    """Commits and branches of one repository."""

    commits: dict = field(default_factory=dict)
    branches: dict = field(default_factory=dict)
    trees: dict = field(default_factory=dict)  # tree sha -> tree, for every commit's tree
    _counter: itertools.count = field(default_factory=itertools.count)

    def commit(self, tree, parents, message, author, timestamp, **identity) -> Commit:
        """Record a new commit and return it (branches are not moved).

        ``identity`` takes Commit's optional ``git_author``, ``git_committer``, ``signature``
        and ``verified``."""
        n = next(self._counter)
        raw = json.dumps([tree, list(parents), message, author, timestamp, n], sort_keys=True)
        sha = hashlib.sha1(raw.encode()).hexdigest()
        c = Commit(sha, dict(tree), tuple(parents), message, author, timestamp, **identity)
        self.commits[sha] = c
        self.trees.setdefault(c.tree_sha, c.tree)
        return c

    def tree_by_sha(self, tree_sha: str) -> dict | None:
        """The tree (a copy) whose ``Commit.tree_sha`` is ``tree_sha``, or None."""
        tree = self.trees.get(tree_sha)
        return None if tree is None else dict(tree)

    def resolve(self, ref: str) -> str | None:
        """Turn a branch name, ``refs/heads/x``, ``heads/x`` or (prefix of a) sha into a sha."""
        for prefix in ("refs/heads/", "heads/"):
            if ref.startswith(prefix):
                ref = ref[len(prefix):]
                break
        if ref in self.branches:
            return self.branches[ref]
        if ref in self.commits:
            return ref
        if len(ref) >= 7:
            hits = [s for s in self.commits if s.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
        return None

    def ancestors(self, *shas: str) -> set:
        """All commits reachable from any of ``shas``, themselves included (one walk for all)."""
        seen, stack = set(), list(shas)
        while stack:
            s = stack.pop()
            if s in seen or s not in self.commits:
                continue
            seen.add(s)
            stack.extend(self.commits[s].parents)
        return seen

    def is_ancestor(self, maybe_ancestor: str, sha: str) -> bool:
        """True when ``maybe_ancestor`` is reachable from ``sha``."""
        return maybe_ancestor in self.ancestors(sha)

    def merge_base(self, a: str, b: str) -> str | None:
        """Nearest common ancestor of ``a`` and ``b`` (breadth-first from ``b``)."""
        mine = self.ancestors(a)
        queue, seen = [b], set()
        while queue:
            s = queue.pop(0)
            if s in seen:
                continue
            seen.add(s)
            if s in mine:
                return s
            queue.extend(self.commits[s].parents)
        return None

    def only_in(self, head: str, *bases: str) -> list:
        """Commits reachable from ``head`` but from none of ``bases``, oldest first."""
        exclude = self.ancestors(*bases)
        out = [s for s in self.ancestors(head) if s not in exclude]
        # Order by creation: commits dict preserves insertion order.
        order = {s: i for i, s in enumerate(self.commits)}
        return [self.commits[s] for s in sorted(out, key=order.__getitem__)]

    def tree(self, sha: str | None) -> dict:
        """The tree of ``sha`` (empty for None)."""
        return dict(self.commits[sha].tree) if sha else {}

    def three_way(self, base: str | None, ours: str, theirs: str) -> dict:
        """Merge the trees of ``ours`` and ``theirs`` over ``base``; raise MergeConflict."""
        b, o, t = self.tree(base), self.tree(ours), self.tree(theirs)
        result, conflicts = dict(o), []
        for path in set(b) | set(o) | set(t):
            bv, ov, tv = b.get(path), o.get(path), t.get(path)
            if ov == tv or tv == bv:
                continue
            if ov == bv:
                _put(result, path, tv)
            else:
                conflicts.append(path)
        if conflicts:
            raise MergeConflict(conflicts)
        return result

    def conflicts(self, base_sha: str, head_sha: str) -> list:
        """Paths that would conflict merging ``head_sha`` into ``base_sha``."""
        try:
            self.three_way(self.merge_base(base_sha, head_sha), base_sha, head_sha)
        except MergeConflict as exc:
            return exc.paths
        return []


def _put(tree: dict, path: str, value):
    """Set or delete (value None) one path of a tree."""
    if value is None:
        tree.pop(path, None)
    else:
        tree[path] = value


def diff(old: dict, new: dict) -> list:
    """Changed paths between two trees as (path, status, old, new), sorted by path."""
    out = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        status = "added" if a is None else "removed" if b is None else "modified"
        out.append((path, status, a, b))
    return out


def apply_changes(tree: dict, files: dict) -> dict:
    """A copy of ``tree`` with ``files`` written (None deletes)."""
    out = dict(tree)
    for path, content in files.items():
        _put(out, path, content)
    return out
