"""``semitorch convert SRC DST``: a Hugging Face BERT directory to a semitorch directory.

The output holds config.json and one model.safetensors whose keys are the
model's ``state_dict()`` names (legacy gamma/beta renamed, buffers and tied
copies dropped, a sentence-transformers layout flattened), plus the tokenizer
files. It is written to a temporary directory and renamed when complete. The
result is again a Hugging Face directory (``save_pretrained`` writes the same
format), so transformers can load it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

NAME = "convert"
HELP = "convert a Hugging Face BERT directory (config.json + safetensors/.bin) to a semitorch directory"

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """SRC, DST, --model, --dtype, --force."""
    parser.add_argument("src", metavar="SRC", help="Hugging Face model directory (or sentence-transformers directory)")
    parser.add_argument("dst", metavar="DST", help="output directory (must not exist unless --force)")
    parser.add_argument(
        "--model",
        default="auto",
        choices=["auto", "BertModel", "BertForMaskedLM", "BertForSequenceClassification"],
        help="model class (default: from config.json's 'architectures')",
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="weight dtype")
    parser.add_argument("--force", action="store_true", help="replace DST if it exists")


def model_class(name: str, config: dict[str, Any]) -> Any:
    """The semitorch.nn BERT class for ``name`` ('auto': the first known entry of config['architectures'])."""
    from .. import nn  # noqa: PLC0415

    known = {c.__name__: c for c in (nn.BertModel, nn.BertForMaskedLM, nn.BertForSequenceClassification)}
    if name != "auto":
        return known[name]
    for arch in config.get("architectures") or []:
        if arch in known:
            return known[arch]
    return nn.BertModel


def convert(src: str | Path, dst: str | Path, model: str = "auto", dtype: Any = np.float32, force: bool = False):
    """Convert ``src`` to ``dst`` (see the module doc); returns the loaded model."""
    from ..io import read_json, resolve_model_dir  # noqa: PLC0415
    from ..io.weights import default_mode  # noqa: PLC0415

    src_dir = resolve_model_dir(src)
    dst = Path(dst)
    if dst.exists() and not force:
        raise FileExistsError(f"convert: {dst} exists; pass --force to replace it")
    cls = model_class(model, read_json(src_dir / "config.json"))
    m = cls.from_pretrained(src_dir, dtype=dtype)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        os.chmod(tmp, default_mode(directory=True))  # mkdtemp makes 0700 directories
        m.save_pretrained(tmp)
        for root in (Path(src), src_dir):
            for f in TOKENIZER_FILES:
                if (root / f).is_file() and not (tmp / f).exists():
                    shutil.copyfile(root / f, tmp / f)
        if dst.exists():
            old = dst.with_name(f".{dst.name}.old")
            dst.rename(old)
            tmp.rename(dst)
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return m


def run(args: argparse.Namespace) -> int:
    """Convert and print what was written; a bad source or destination prints the error and returns 1."""
    from ..io import CheckpointError  # noqa: PLC0415

    try:
        m = convert(args.src, args.dst, args.model, np.dtype(args.dtype), args.force)
    except (CheckpointError, FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"semitorch convert: error: {e}", file=sys.stderr)
        return 1
    n = len(m.state_dict())
    print(f"converted {args.src} -> {args.dst}: {type(m).__name__}, {n} tensors, {args.dtype}")
    return 0
