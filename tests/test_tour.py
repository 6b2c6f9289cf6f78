"""``semitorch tour``: runs with numpy alone, prints every section, and prints the library's own answers."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import semitorch as st
from semitorch import kernels
from semitorch.cli import main
from semitorch.commands.tour import build
from semitorch.semirings import Count, Entropy, MaxProduct

BLOCKED = ("numba", "scipy", "torch", "transformers", "safetensors", "tokenizers", "matplotlib", "hypothesis", "cupy")


def _vector(text: str, label: str) -> np.ndarray:
    line = next(ln for ln in text.splitlines() if ln.startswith(label))
    return np.array([float(v) for v in line[line.index("[") + 1 : line.index("]")].split()])


def test_tour_needs_only_numpy() -> None:
    """The README's first command: the tour runs with every optional dependency made unimportable."""
    code = (
        "import sys\n"
        f"for m in {BLOCKED!r}: sys.modules[m] = None\n"
        "from semitorch.cli import main\n"
        "rc = main(['tour'])\n"
        f"assert not any(sys.modules.get(m) for m in {BLOCKED!r})\n"
        "sys.exit(rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for section in ("gradient dy/dx", "best path", "top-3 paths", "path entropy", "number of paths"):
        assert section in out.stdout, section


@pytest.mark.parametrize("seed", [0, 5])
def test_tour_prints_the_library_answers(seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    """Gradient, best path, top-3, entropy and counts printed are those of st.grad / st.top_paths on build()."""
    backend = kernels.BACKEND
    assert main(["tour", "--seed", str(seed)]) == 0
    assert kernels.BACKEND == backend  # the tour's numpy-kernel switch is undone
    text = capsys.readouterr().out
    y, x, _ = build(seed)
    np.testing.assert_allclose(_vector(text, "gradient dy/dx"), st.grad(y, x), atol=5e-5)
    np.testing.assert_allclose(_vector(text, "path entropy"), st.grad(y, x, semiring=Entropy()), atol=5e-5)
    counts = _vector(text, "number of paths")
    np.testing.assert_array_equal(counts, st.grad(y, x, semiring=Count()))
    np.testing.assert_array_equal(counts, np.full(4, 6 * 6 * 3))  # 6 × 6 hidden units × 3 logits into log_softmax
    best = float(st.grad(y, x, semiring=MaxProduct()).max())
    head = re.search(r"path from x\[(\d)\] \(shape \(4,\)\) to the output: weight ([0-9.e+-]+)", text)
    assert head is not None and float(head.group(2)) == pytest.approx(best, rel=1e-5)
    top3 = [float(w) for w in re.findall(r"^  \d\. from x\[\d\]: weight ([0-9.e+-]+)", text, flags=re.M)]
    assert top3 == pytest.approx([p.weight for p in st.top_paths(y, x, k=3)], rel=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tour", "--seed", "-1"], "argument --seed: must be >= 0, got -1"),
        (["tour", "--hidden", "0"], "argument --hidden: must be >= 1, got 0"),
        (["tour", "--hidden", "wide"], "argument --hidden: invalid int value: 'wide'"),
        (["sva", "--seed", "-2", "--n", "1"], "argument --seed: must be >= 0, got -2"),
    ],
)
def test_bad_arguments_are_usage_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Out-of-range numbers are argparse errors that name the option (not a traceback from numpy)."""
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_tour_prints_no_path_plainly(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """When top_paths finds no path, the top-3 section says so instead of printing an empty path of weight 0."""
    real = st.top_paths

    def none_for_k3(y: st.Tensor, x: st.Tensor, k: int = 1, index: object = None) -> list[st.Path]:
        paths = real(y, x, k=k, index=index)
        return [st.Path(0.0, [], 0, x.shape, found=False)] if k == 3 else paths

    monkeypatch.setattr(st, "top_paths", none_for_k3)
    assert main(["tour"]) == 0
    out = capsys.readouterr().out
    top3 = out[out.index("top-3 paths") :].splitlines()
    assert top3[1] == "  no path from x to y" and "weight 0 " not in out[out.index("top-3 paths") :]
