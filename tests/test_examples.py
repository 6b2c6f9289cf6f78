"""Every script in examples/ runs end to end with small settings (SEMITORCH_EXAMPLES_QUICK=1 / --quick)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "examples").glob("*.py"))
EXPECT = {
    "first_token_repeated.py": ["validation accuracy", "repeated token", "first token", "| paper"],
    "entropy_width.py": ["input H", "≈2.2"],
    "train_sva_bert.py": ["held-out agreement accuracy", "saved to"],
}


def test_every_example_is_covered() -> None:
    """A new example must say what its smoke run prints."""
    assert {p.name for p in SCRIPTS} == set(EXPECT)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_example_runs(script: Path, tmp_path: Path) -> None:
    """Run the script with --quick in a scratch directory; it exits 0 and prints its table."""
    env = {**os.environ, "SEMITORCH_EXAMPLES_QUICK": "1", "MPLBACKEND": "Agg"}
    cmd = [sys.executable, str(script), "--quick"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    for s in EXPECT[script.name]:
        assert s in r.stdout, (s, r.stdout[-2000:])
