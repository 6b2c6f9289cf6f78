"""The code base is ruff-clean (the configuration is in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check() -> None:
    """`ruff check` finds nothing in the package, tests, examples, benchmarks and docs scripts."""
    r = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "semitorch", "tests", "examples", "benchmarks", "docs"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
