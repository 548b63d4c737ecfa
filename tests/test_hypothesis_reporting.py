"""A failing Hypothesis test prints what it takes to replay it: the seed and the example blob."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FAILING = '''
from hypothesis import given, strategies as st

@given(st.integers())
def test_fails(x):
    assert x < 1000
'''


def test_failure_prints_seed_and_reproduce_blob(tmp_path: Path) -> None:
    tests = Path(__file__).parent
    (tmp_path / "conftest.py").write_text((tests / "conftest.py").read_text())
    (tmp_path / "test_failing.py").write_text(FAILING)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_failing.py")],
        cwd=tests.parent, capture_output=True, text=True, timeout=100,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "hypothesis seed: " in run.stdout and "--hypothesis-seed=" in run.stdout
    assert "@reproduce_failure(" in run.stdout


def test_the_printed_seed_is_the_one_hypothesis_uses(request) -> None:
    """conftest picks the seed before Hypothesis's plugin reads it, so the header tells the truth."""
    from hypothesis import core

    assert request.config.option.hypothesis_seed is not None
    assert core.global_force_seed == request.config.option.hypothesis_seed
