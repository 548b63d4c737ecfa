"""``/setup``: create Fleet's GitHub App from ``app.yml`` with GitHub's manifest flow.

1. ``GET /setup`` shows a form that POSTs the manifest (``app.yml`` with this host's URLs filled
   in) and a random ``state`` to GitHub (``/settings/apps/new``, or an organization's). The state
   also goes into a signed, HttpOnly cookie.
2. GitHub creates the App and sends the browser to ``/setup/callback?code=…&state=…``. The state
   must match the cookie's; the code is exchanged (``POST /app-manifests/{code}/conversions``, no
   auth, valid for one hour) for the App id, private key and webhook secret.
3. The credentials are written to files (mode 0600) under ``FLEET_SETUP_DIR``; the page shows the
   App id, the webhook secret and where the key is, never the key itself.

GitHub later sends people installing the App to ``setup_url`` (``/setup?installation_id=…``).
Access is the API's (bearer token or cookie, or loopback when no token is set): the page hands
out credentials.
"""
from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

import httpx
import yaml
from flask import Blueprint, Response, current_app, render_template, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.api.headers import SECURITY_HEADERS
from app.api.auth import guard
from app.github.client import github_web_url

bp = Blueprint("setup", __name__, url_prefix="/setup")
guard(bp, as_json=False)

MANIFEST_PATH = Path(__file__).resolve().parents[2] / "app.yml"
STATE_COOKIE = "fleet_setup_state"
# GitHub's manifest codes expire after an hour; so does the state.
STATE_MAX_AGE = 3600
DEFAULT_SETUP_DIR = "fleet-credentials"
_ORG = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")


class SetupError(Exception):
    """Something the person running setup can fix; the message says what."""


def setup_dir() -> Path:
    return Path(current_app.config.get("FLEET_SETUP_DIR") or os.environ.get("FLEET_SETUP_DIR") or DEFAULT_SETUP_DIR)


def public_url() -> str:
    """Where GitHub reaches this Fleet: FLEET_PUBLIC_URL, else the URL this page was requested at."""
    configured = current_app.config.get("FLEET_PUBLIC_URL") or os.environ.get("FLEET_PUBLIC_URL")
    return (configured or request.url_root).rstrip("/")


def load_manifest(path: Path | None = None) -> dict[str, Any]:
    """``app.yml`` (or FLEET_APP_MANIFEST) as a dict."""
    path = path or Path(os.environ.get("FLEET_APP_MANIFEST") or MANIFEST_PATH)
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SetupError(f"cannot read the App manifest {path} ({exc.strerror}); set FLEET_APP_MANIFEST") from None


def build_manifest(base_url: str, manifest: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The manifest with every Fleet URL pointing at ``base_url`` (and an optional App name)."""
    out = {k: v for k, v in manifest.items() if k != "setup_on_update"}
    out["url"] = base_url
    out["hook_attributes"] = {**manifest.get("hook_attributes", {}), "url": f"{base_url}/webhooks/github"}
    out["redirect_url"] = f"{base_url}/setup/callback"
    out["callback_urls"] = [f"{base_url}/setup/callback"]
    out["setup_url"] = f"{base_url}/setup"
    out["setup_on_update"] = bool(manifest.get("setup_on_update", True))
    if name:
        out["name"] = name
    return out


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_signing_key(), salt="fleet-setup-state")


def _signing_key() -> bytes:
    """SECRET_KEY when configured, else a random key kept (0600) in the setup directory, so every
    worker process on this host signs and checks the state cookie alike."""
    configured = current_app.config.get("SECRET_KEY")
    if configured:
        return configured.encode() if isinstance(configured, str) else configured
    path = setup_dir() / ".state-key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()  # another worker wrote it first
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


def _writable_dir() -> str | None:
    """None when credentials can be written to the setup directory, else what to fix."""
    directory = setup_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = directory / f".probe-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
        return None
    except OSError as exc:
        return f"{directory} is not writable ({exc.strerror}); set FLEET_SETUP_DIR to a writable directory"


def _page(template: str, status: int = 200, form_target: str | None = None, **context: Any) -> Response:
    response = Response(render_template(template, **context), status=status, mimetype="text/html")
    if form_target:
        # The form posts to GitHub: allow exactly that origin besides our own.
        csp = SECURITY_HEADERS["Content-Security-Policy"]
        response.headers["Content-Security-Policy"] = csp.replace("form-action 'self'", f"form-action 'self' {form_target}")
    return response


@bp.get("")
def setup_page() -> Response:
    """The form that sends the manifest to GitHub (or, after an installation, a confirmation)."""
    settings = current_app.config["FLEET_SETTINGS"]
    if "installation_id" in request.args:
        installation = request.args.get("installation_id", "")
        return _page("setup.html", mode="installed",
                     installation_id=installation if installation.isdigit() else None,
                     action=request.args.get("setup_action", "install"))
    org = request.args.get("org", "").strip()
    if org and not _ORG.match(org):
        return _page("setup.html", status=400, mode="error", error="That is not a GitHub organization name.")
    try:
        manifest = build_manifest(public_url(), load_manifest(), name=request.args.get("name") or None)
    except SetupError as exc:
        return _page("setup.html", status=500, mode="error", error=str(exc))
    web = github_web_url(settings.github_api_url)
    target = f"{web}/organizations/{org}/settings/apps/new" if org else f"{web}/settings/apps/new"
    state = secrets.token_urlsafe(24)
    response = _page(
        "setup.html", form_target=web, mode="form", target=target, org=org, state=state,
        manifest=json.dumps(manifest, indent=2), base_url=public_url(), dir_problem=_writable_dir(),
        configured=settings.has_app_credentials, app_id=settings.app_id,
    )
    response.set_cookie(STATE_COOKIE, _serializer().dumps(state), max_age=STATE_MAX_AGE, path="/setup",
                        httponly=True, samesite="Lax", secure=request.is_secure)
    return response


def exchange_code(api_url: str, code: str) -> dict[str, Any]:
    """``POST /app-manifests/{code}/conversions``: the new App's id, slug, pem and webhook secret."""
    try:
        response = httpx.post(
            f"{api_url.rstrip('/')}/app-manifests/{code}/conversions",
            headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                     "User-Agent": "fleet-github-app"},
            timeout=15,
        )
    except httpx.HTTPError as exc:
        raise SetupError(f"GitHub could not be reached ({type(exc).__name__}); reload to try again") from None
    if response.status_code == 404:
        raise SetupError("GitHub does not know this code (codes expire after an hour and work once); start again")
    if response.status_code != 201:
        raise SetupError(f"GitHub answered {response.status_code} to the code exchange; start again")
    try:
        data = response.json()
        for key in ("id", "pem", "webhook_secret"):
            if not data.get(key):
                raise KeyError(key)
    except (ValueError, KeyError):
        raise SetupError("GitHub's answer lacked the App id, key or webhook secret") from None
    return data


def write_credentials(directory: Path, app: dict[str, Any]) -> dict[str, Path]:
    """Write the private key and an env file (both 0600), never overwriting an existing file."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    app_id = int(app["id"])
    key_path = directory / f"github-app-{app_id}.private-key.pem"
    env_path = directory / f"github-app-{app_id}.env"
    env_lines = [
        f"GITHUB_APP_ID={app_id}",
        f"GITHUB_APP_PRIVATE_KEY_PATH={key_path.resolve()}",
        f"GITHUB_WEBHOOK_SECRET={app['webhook_secret']}",
    ]
    if app.get("client_id"):
        env_lines.append(f"# client id: {app['client_id']}")
    if app.get("client_secret"):
        env_lines.append(f"GITHUB_CLIENT_SECRET={app['client_secret']}")
    for path, text in ((key_path, app["pem"]), (env_path, "\n".join(env_lines) + "\n")):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
    return {"key": key_path, "env": env_path}


@bp.get("/callback")
def callback() -> Response:
    """GitHub's redirect after creating the App: check the state, exchange the code, store the keys."""
    settings = current_app.config["FLEET_SETTINGS"]
    code = request.args.get("code", "")
    state = request.args.get("state", "")
    if not _CODE.match(code):
        return _page("setup.html", status=400, mode="error", error="The callback carries no valid code.")
    try:
        expected = _serializer().loads(request.cookies.get(STATE_COOKIE, ""), max_age=STATE_MAX_AGE)
    except BadSignature:
        expected = None
    if not expected or not secrets.compare_digest(str(expected), state):
        return _page("setup.html", status=400, mode="error",
                     error="The setup state does not match this browser's. Start again from /setup.")
    # Check before spending the code: it works once, and the key GitHub returns exists nowhere else.
    problem = _writable_dir()
    if problem:
        return _page("setup.html", status=500, mode="error", error=problem)
    try:
        app = exchange_code(settings.github_api_url, code)
        paths = write_credentials(setup_dir(), app)
    except SetupError as exc:
        return _page("setup.html", status=502, mode="error", error=str(exc))
    except FileExistsError as exc:
        return _page("setup.html", status=409, mode="error", error=f"{exc.filename} already exists; not overwritten")
    response = _page(
        "setup.html", mode="created", app_id=app["id"], slug=app.get("slug"), html_url=app.get("html_url"),
        webhook_secret=app["webhook_secret"], key_path=paths["key"].resolve(), env_path=paths["env"].resolve(),
        install_url=f"{app['html_url']}/installations/new" if app.get("html_url") else None,
    )
    response.delete_cookie(STATE_COOKIE, path="/setup")
    return response
