"""/setup: GitHub's App manifest flow, with a recording fake of the code-exchange endpoint."""
from __future__ import annotations

import json
import re
import stat
from dataclasses import replace
from html import unescape

import pytest
from flask import Flask, jsonify

from app.api.setup import STATE_COOKIE, build_manifest, load_manifest
from app.wsgi import create_app
from tests.conftest import ServedApp

CREATED = {"id": 4242, "slug": "fleet-acme", "client_id": "Iv1.abc", "client_secret": "cs",
           "webhook_secret": "whsec-123", "html_url": "https://github.com/apps/fleet-acme",
           "pem": "-----BEGIN RSA PRIVATE KEY-----\nMIIfake\n-----END RSA PRIVATE KEY-----\n"}


@pytest.fixture
def github():
    """A fake GitHub API that converts code ``good-code`` once and records what it was asked."""
    fake = Flask("fake-github")
    fake.calls = []  # type: ignore[attr-defined]
    used: set[str] = set()

    @fake.post("/app-manifests/<code>/conversions")
    def convert(code):
        fake.calls.append(code)  # type: ignore[attr-defined]
        if code != "good-code" or code in used:
            return jsonify({"message": "Not Found"}), 404
        used.add(code)
        return jsonify(CREATED), 201

    served = ServedApp(fake)
    served.calls = fake.calls  # type: ignore[attr-defined]
    yield served
    served.stop()


@pytest.fixture
def setup_client(settings, github, tmp_path):
    app = create_app(replace(settings, github_api_url=github.url))
    app.config.update(FLEET_SETUP_DIR=str(tmp_path / "creds"), FLEET_PUBLIC_URL="https://fleet.example.org")
    yield app.test_client()
    app.config["FLEET_POOL"].close()


def form_fields(html: str) -> dict[str, str]:
    return {m[1]: unescape(m[2]) for m in re.finditer(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html)}


def test_manifest_points_every_url_at_this_host():
    manifest = build_manifest("https://fleet.example.org", load_manifest())
    assert manifest["hook_attributes"]["url"] == "https://fleet.example.org/webhooks/github"
    assert manifest["redirect_url"] == "https://fleet.example.org/setup/callback"
    assert manifest["setup_url"] == "https://fleet.example.org/setup"
    assert manifest["default_permissions"]["issues"] == "write" and "issues" in manifest["default_events"]


def test_setup_page_posts_the_manifest_to_github(setup_client):
    response = setup_client.get("/setup")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    # The github.com that GitHub's web UI lives on: the fake API URL is not api.github.com, so its host.
    assert 'method="post" action="http://127.0.0.1:' in html and "/settings/apps/new" in html
    fields = form_fields(html)
    assert json.loads(fields["manifest"])["url"] == "https://fleet.example.org"
    assert len(fields["state"]) >= 32
    assert "form-action 'self' http://127.0.0.1:" in response.headers["Content-Security-Policy"]
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{STATE_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    org = setup_client.get("/setup?org=acme-inc").get_data(as_text=True)
    assert "/organizations/acme-inc/settings/apps/new" in org
    assert setup_client.get("/setup?org=bad%20name").status_code == 400


def test_callback_exchanges_the_code_and_stores_credentials_0600(setup_client, github, tmp_path):
    state = form_fields(setup_client.get("/setup").get_data(as_text=True))["state"]
    response = setup_client.get(f"/setup/callback?code=good-code&state={state}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html
    assert github.calls == ["good-code"]
    assert '<code id="app-id">4242</code>' in html and "whsec-123" in html
    assert "MIIfake" not in html  # the key is stored, never shown
    key = tmp_path / "creds" / "github-app-4242.private-key.pem"
    env = tmp_path / "creds" / "github-app-4242.env"
    assert key.read_text() == CREATED["pem"]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(env.stat().st_mode) == 0o600
    assert f"GITHUB_APP_PRIVATE_KEY_PATH={key}" in env.read_text()
    assert "GITHUB_WEBHOOK_SECRET=whsec-123" in env.read_text()


@pytest.mark.parametrize("state", ["", "forged-state"])
def test_a_state_that_does_not_match_the_cookie_is_refused_before_any_exchange(setup_client, github, state):
    setup_client.get("/setup")
    response = setup_client.get(f"/setup/callback?code=good-code&state={state}")
    assert response.status_code == 400 and "does not match" in response.get_data(as_text=True)
    assert github.calls == []


def test_callback_without_the_cookie_is_refused(settings, github, tmp_path):
    app = create_app(replace(settings, github_api_url=github.url))
    app.config["FLEET_SETUP_DIR"] = str(tmp_path)
    try:
        response = app.test_client().get("/setup/callback?code=good-code&state=x")
        assert response.status_code == 400 and github.calls == []
    finally:
        app.config["FLEET_POOL"].close()


def test_an_expired_code_says_to_start_again(setup_client, github):
    state = form_fields(setup_client.get("/setup").get_data(as_text=True))["state"]
    response = setup_client.get(f"/setup/callback?code=old-code&state={state}")
    assert response.status_code == 502 and "start again" in response.get_data(as_text=True)


def test_an_unwritable_directory_is_reported_before_the_code_is_spent(settings, github, tmp_path):
    """GitHub returns the private key once: Fleet checks it can store it before asking."""
    app = create_app(replace(settings, github_api_url=github.url))
    app.config.update(SECRET_KEY="k", FLEET_SETUP_DIR=str(tmp_path / "a-file" / "creds"))
    (tmp_path / "a-file").write_text("not a directory")  # unwritable even for root
    try:
        client = app.test_client()
        page = client.get("/setup").get_data(as_text=True)
        assert "Credentials cannot be stored" in page
        response = client.get(f"/setup/callback?code=good-code&state={form_fields(page)['state']}")
        assert response.status_code == 500 and "FLEET_SETUP_DIR" in response.get_data(as_text=True)
        assert github.calls == []
    finally:
        app.config["FLEET_POOL"].close()


def test_setup_url_after_installation(setup_client):
    html = setup_client.get("/setup?installation_id=77&setup_action=install").get_data(as_text=True)
    assert "installation <code>77</code>" in html


def test_setup_follows_the_api_access_rules(setup_client):
    assert setup_client.get("/setup", environ_base={"REMOTE_ADDR": "198.51.100.1"}).status_code == 403
