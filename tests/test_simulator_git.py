"""Unit tests for the simulator's git model and small pure helpers (no HTTP)."""
import pytest

from app.sandbox.simulator.git_model import GitStore, MergeConflict, apply_changes, blob_sha, diff
from app.sandbox.simulator.ops_issues import closing_refs
from app.sandbox.simulator.webhooks import signature_256


def _repo():
    g = GitStore()
    root = g.commit({"a": "1", "b": "1"}, (), "root", "o", "t")
    g.branches["main"] = root.sha
    return g, root


def test_blob_sha_matches_git():
    # `printf 'hello\n' | git hash-object --stdin`
    assert blob_sha("hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_identical_commits_get_distinct_shas():
    g, root = _repo()
    a = g.commit(root.tree, (root.sha,), "same", "o", "t")
    b = g.commit(root.tree, (root.sha,), "same", "o", "t")
    assert a.sha != b.sha


def test_merge_base_and_only_in():
    g, root = _repo()
    x = g.commit({"a": "2", "b": "1"}, (root.sha,), "x", "o", "t")
    y = g.commit({"a": "1", "b": "2"}, (root.sha,), "y", "o", "t")
    assert g.merge_base(x.sha, y.sha) == root.sha
    assert [c.sha for c in g.only_in(x.sha, y.sha)] == [x.sha]
    assert g.is_ancestor(root.sha, x.sha) and not g.is_ancestor(x.sha, y.sha)


def test_three_way_merges_disjoint_changes():
    g, root = _repo()
    x = g.commit({"a": "2", "b": "1"}, (root.sha,), "x", "o", "t")
    y = g.commit({"a": "1", "b": "2", "c": "new"}, (root.sha,), "y", "o", "t")
    assert g.three_way(root.sha, x.sha, y.sha) == {"a": "2", "b": "2", "c": "new"}
    assert g.conflicts(x.sha, y.sha) == []


def test_three_way_conflict_on_same_path():
    g, root = _repo()
    x = g.commit({"a": "2", "b": "1"}, (root.sha,), "x", "o", "t")
    y = g.commit({"a": "3", "b": "1"}, (root.sha,), "y", "o", "t")
    with pytest.raises(MergeConflict) as exc:
        g.three_way(root.sha, x.sha, y.sha)
    assert exc.value.paths == ["a"]
    assert g.conflicts(x.sha, y.sha) == ["a"]


def test_same_change_on_both_sides_is_not_a_conflict():
    g, root = _repo()
    x = g.commit({"a": "2", "b": "1"}, (root.sha,), "x", "o", "t")
    y = g.commit({"a": "2", "b": "1"}, (root.sha,), "y", "o", "t")
    assert g.conflicts(x.sha, y.sha) == []


def test_resolve_refs():
    g, root = _repo()
    assert g.resolve("main") == g.resolve("refs/heads/main") == g.resolve("heads/main") == root.sha
    assert g.resolve(root.sha[:10]) == root.sha
    assert g.resolve("nope") is None


def test_diff_and_apply():
    tree = apply_changes({"a": "1", "b": "1"}, {"a": None, "b": "2", "c": "3"})
    assert tree == {"b": "2", "c": "3"}
    assert [(p, s) for p, s, _, _ in diff({"a": "1", "b": "1"}, tree)] == [
        ("a", "removed"), ("b", "modified"), ("c", "added")]


@pytest.mark.parametrize("text,expected", [
    ("Closes #1", [1]), ("fixes #2 and resolves #3", [2, 3]), ("Fixed: #4", [4]),
    ("see #5", []), ("closes#6", []), ("RESOLVED #7", [7]), (None, []),
])
def test_closing_refs(text, expected):
    assert closing_refs(text) == expected


def test_signature_test_vector():
    # Test vector from GitHub's documentation (see shared/github-facts.md).
    assert signature_256("It's a Secret to Everybody", b"Hello, World!") == \
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
