"""The dependency rule, enforced by import-linter contracts in pyproject.toml: ``webhooks/`` and
``jobs/`` depend on ``app/``, never the reverse (only the composition roots may import them), and
inside ``app/`` the capability packages depend downward only."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=100)


def test_app_never_imports_webhooks_or_jobs():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 kept, 0 broken" in result.stdout


def copy_of_the_tree(tmp_path: Path) -> Path:
    for package in ("app", "webhooks", "jobs"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_a_new_upward_import_breaks_the_contract(tmp_path):
    tree = copy_of_the_tree(tmp_path)
    (tree / "app" / "upward.py").write_text("from jobs import leases\n")

    result = lint_imports(tree)
    assert result.returncode != 0
    assert "app.upward -> jobs.leases" in result.stdout, result.stdout[-3000:]


def test_a_lower_package_importing_a_higher_one_breaks_the_layers(tmp_path):
    tree = copy_of_the_tree(tmp_path)
    (tree / "app" / "github" / "upward.py").write_text("from app.claims import rules\n")

    result = lint_imports(tree)
    assert result.returncode != 0
    assert "app.github is not allowed to import app.claims" in result.stdout, result.stdout[-3000:]
    assert "app.github.upward -> app.claims.rules" in result.stdout


def test_one_table_routes_every_handler_and_nothing_is_both_routed_and_ignored():
    import inspect

    from webhooks import handlers, routes

    routed = {(fn.__module__, fn.__name__) for fn in routes.ROUTES.values()}
    for module in (getattr(handlers, name) for name in ("checks", "comments", "git", "installation", "issues",
                                                         "labels", "pulls", "repository")):
        public = {(module.__name__, name) for name, fn in inspect.getmembers(module, inspect.isfunction)
                  if fn.__module__ == module.__name__ and not name.startswith("_")}
        assert public <= routed, f"handlers nobody routes to: {sorted(public - routed)}"
    assert not set(routes.ROUTES) & set(routes.IGNORED)
    assert routes.route("issues", "assigned") is routes.ROUTES["issues.assigned"]
    assert routes.route("issues", "pinned") is None and routes.route("push", None) is routes.ROUTES["push"]
