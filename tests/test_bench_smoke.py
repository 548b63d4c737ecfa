"""Benchmarks are never run by the tests; this only checks the documented command starts."""
from __future__ import annotations

import subprocess
import sys


def test_python_m_bench_help():
    result = subprocess.run([sys.executable, "-m", "bench", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "usage: python -m bench" in result.stdout
    for name in ("ingest", "processing", "queue", "api", "status"):
        assert name in result.stdout
