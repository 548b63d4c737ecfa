"""The running sandbox, described by ``fleet up`` for the ``fleet`` commands run beside it.

``fleet up`` in sandbox mode gives its children the simulator's address, a throw-away App key
and the sandbox's own database and queue. Other ``fleet`` commands (``sandbox``, ``plan apply``,
``sync``, ``replay``, ``doctor``) started in another terminal need the same, so ``fleet up``
writes them to a file (mode 0600: it holds the sandbox App's key) and deletes it when it stops.
A file whose process is gone is stale and ignored.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from app.settings import DEFAULT_QUEUE

# The variables ``fleet up`` set for its children, which the commands beside it adopt.
ADOPTED = ("GITHUB_API_URL", "GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET",
           "DATABASE_URL", "FLEET_QUEUE", "FLEET_SANDBOX", "FLEET_WRITES_PER_MINUTE", "FLEET_WRITES_PER_HOUR")


@dataclass(frozen=True)
class RunningSandbox:
    pid: int
    simulator_url: str
    web_url: str
    repo: str
    agent: str
    env: dict[str, str] = field(repr=False)


def sandbox_file(env: dict[str, str] | None = None) -> Path:
    """``FLEET_SANDBOX_FILE``, else ``sandbox-<FLEET_QUEUE>.json`` in ``$XDG_STATE_HOME/fleet``
    (``~/.local/state/fleet``): one per queue name, so sandboxes with different queues coexist."""
    env = os.environ if env is None else env
    explicit = env.get("FLEET_SANDBOX_FILE", "").strip()
    if explicit:
        return Path(explicit)
    state = env.get("XDG_STATE_HOME", "").strip() or str(Path.home() / ".local" / "state")
    queue = env.get("FLEET_QUEUE", "").strip() or DEFAULT_QUEUE
    return Path(state) / "fleet" / f"sandbox-{queue}.json"


def publish(sandbox: RunningSandbox, path: Path) -> None:
    """Write the description atomically, readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(sandbox), out)
    os.replace(partial, path)


def withdraw(path: Path, pid: int) -> None:
    """Delete the description if it is still the one process ``pid`` wrote."""
    found = _read(path)
    if found is not None and found.pid == pid:
        path.unlink(missing_ok=True)


def find_running(env: dict[str, str] | None = None) -> RunningSandbox | None:
    """The sandbox ``fleet up`` is serving now, or None (no file, unreadable, or its process gone)."""
    found = _read(sandbox_file(env))
    return found if found is not None and _alive(found.pid) else None


def _read(path: Path) -> RunningSandbox | None:
    try:
        data = json.loads(path.read_text())
        return RunningSandbox(**data)
    except (OSError, ValueError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process took the number: not our sandbox
        return False
    return True


def adopt_running_sandbox(env: dict[str, str] | None = None) -> RunningSandbox | None:
    """Without App credentials (``GITHUB_APP_ID`` unset), point ``env`` (``os.environ``) at the
    running sandbox, as ``fleet up`` pointed its children; None, and ``env`` untouched, otherwise."""
    env = os.environ if env is None else env
    if env.get("GITHUB_APP_ID", "").strip():
        return None
    sandbox = find_running(env)
    if sandbox is not None:
        env.update({name: sandbox.env[name] for name in ADOPTED if name in sandbox.env})
        env.pop("GITHUB_APP_PRIVATE_KEY_PATH", None)
    return sandbox
