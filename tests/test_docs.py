"""Every Python code block in README.md and docs/ runs as written; the docs build strictly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_code_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a page's blocks in order in one namespace (a tutorial builds on its earlier blocks)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    ns: dict[str, object] = {"__name__": "__docs__"}
    import semitorch as st

    registries = [(r, dict(r)) for r in (st.OPS, st.semirings.SEMIRINGS)]  # a page may register an op
    try:
        for i, code in enumerate(_blocks(page)):
            try:
                exec(compile(code, f"{page.name}[block {i}]", "exec"), ns)
            except Exception as e:  # pragma: no cover - the failure message is the point
                raise AssertionError(f"{page.relative_to(ROOT)} block {i} failed: {e!r}\n{code}") from e
    finally:  # leave the registries as they were for the tests that run after this one
        for reg, saved in registries:
            reg.clear()
            reg.update(saved)


def test_every_tutorial_is_in_nav() -> None:
    """Each tutorial page is reachable from mkdocs.yml."""
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for p in sorted((ROOT / "docs" / "tutorials").glob("*.md")):
        assert f"tutorials/{p.name}" in nav, p.name


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """`mkdocs build --strict` passes (warnings are errors)."""
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
