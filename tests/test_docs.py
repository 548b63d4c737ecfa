"""The README stays true to the code: every environment variable Fleet reads is documented, and
every `fleet` subcommand is listed."""
from __future__ import annotations

import re
from pathlib import Path

from app.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
ENV_READ = re.compile(r"""(?:environ(?:\.get)?|env(?:\.get)?|getenv)\s*[\(\[]\s*["']([A-Z][A-Z0-9_]+)["']""")
HELPER_READ = re.compile(r"""_(?:int|url)\(\s*env\s*,\s*["']([A-Z][A-Z0-9_]+)["']""")
# Variables set by Fleet for its own children or read only by tests.
INTERNAL = {"FLEET_SANDBOX", "CI", "FLEET_UPDATE_GOLDEN", "FLEET_TEST_PG", "FLEET_TEST_REDIS"}


def variables_read() -> set[str]:
    found = set()
    for path in [*ROOT.glob("app/**/*.py"), *ROOT.glob("jobs/*.py"), *ROOT.glob("webhooks/**/*.py")]:
        if "simulator" in path.parts:
            continue
        text = path.read_text()
        found |= set(ENV_READ.findall(text)) | set(HELPER_READ.findall(text))
    return found - INTERNAL


def test_every_environment_variable_is_documented():
    names = variables_read()
    assert "DATABASE_URL" in names and "GITHUB_WEBHOOK_SECRET" in names  # the scan works
    missing = sorted(n for n in names if f"`{n}`" not in README)
    assert missing == []


def test_every_subcommand_is_in_the_readme():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    missing = [name for name in sub.choices if f"`fleet {name}" not in README]
    assert missing == []
