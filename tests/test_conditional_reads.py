"""Conditional GETs: an unchanged pull request is revalidated with a 304 (free against the rate
limit) and still read correctly; a changed one is read afresh."""
from __future__ import annotations

from app import runtime
from app.github.evidence import EvidenceRecorder
from app.github.gateway import RepoGateway


def test_unchanged_reads_are_304s_and_changes_are_seen(world, db_conn):
    sim, repo = world.sim, world.repo
    sim.push(repo, "feature", {"f.txt": "1"})
    number = sim.open_pr(repo, "feature", "Feature")
    gh = RepoGateway(runtime.github_clients().installation(world.installation_id), repo,
                     EvidenceRecorder(world.settings.database_url))
    assert gh.etags is not None
    gh.pull(number)  # GitHub may still be computing mergeability on the first read
    first = gh.pull(number)
    before = len(sim.requests)
    again = gh.pull(number)
    reads = [r for r in sim.requests[before:] if r.path.endswith(f"/pulls/{number}")]
    assert [r.status for r in reads] == [304]
    assert again == first
    new_head = sim.push(repo, "feature", {"f.txt": "2"})
    gh.pull(number)
    latest = gh.pull(number)
    assert latest["head"]["sha"] == new_head != first["head"]["sha"]


def test_without_redis_reads_are_plain(world):
    from app.github.etags import conditional_get

    calls = []

    class Response:
        status_code = 200
        headers = {"etag": '"x"'}

        @staticmethod
        def json():
            return {"ok": True}

    assert conditional_get(None, "k", lambda h: calls.append(h) or Response()) == {"ok": True}
    assert calls == [{}]
