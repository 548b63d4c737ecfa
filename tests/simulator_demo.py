"""The simulator with one installed repository, octo/demo, as the simulator's own tests use it."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from app.sandbox.simulator import Simulator

DEMO_REPO = "octo/demo"


@contextmanager
def demo_simulator(*, readers: tuple[str, ...] = ()) -> Iterator[Simulator]:
    """A running simulator with octo/demo installed, `agent-1` a writer (plus ``readers``), and
    ``s.c`` an httpx client acting as the installation. Every response must be valid by GitHub's
    description when the block ends."""
    with Simulator(validate_responses=True) as s:
        s.create_repo(DEMO_REPO)
        s.inst = s.install([DEMO_REPO])
        s.add_user("agent-1", "write")
        for login in readers:
            s.add_user(login, "read")
        s.c = httpx.Client(base_url=s.url, headers={"Authorization": f"token {s.installation_token(s.inst)}"})
        yield s
        assert s.response_violations == [], s.response_violations


@contextmanager
def checked_simulator(*, readers: tuple[str, ...] = ()) -> Iterator[Simulator]:
    """``demo_simulator`` whose every request, response and webhook must be valid by GitHub's
    description (the vendored official schemas) when the block ends."""
    from app.sandbox.simulator.openapi import WebhookValidator

    with demo_simulator(readers=readers) as s:
        yield s
        assert s.violations == []
        validator = WebhookValidator.load()
        for ev in s.events:
            assert validator.validate(ev.event, ev.payload) == [], WebhookValidator.key_for(ev.event, ev.payload)
