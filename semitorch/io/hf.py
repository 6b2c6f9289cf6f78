"""Hugging Face model directories: find config.json and the weights, read them with normalised key names, write them.

Handled layouts: a plain HF directory (``config.json`` + ``model.safetensors``,
a sharded ``model.safetensors.index.json``, or ``pytorch_model.bin`` read by
torch with ``weights_only=True``), and a sentence-transformers directory whose
``modules.json`` points at the Transformer module's sub-directory. Key names
are normalised: legacy ``LayerNorm.gamma/beta`` become ``weight/bias`` and
integer buffers such as ``embeddings.position_ids`` are dropped. Mapping the
keys onto a particular model (``bert.`` prefixes, tied weights) is the model's
job (``semitorch.nn.bert``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .weights import (
    CheckpointError,
    as_path,
    read_json,
    read_safetensors,
    read_torch_bin,
    write_json,
    write_safetensors,
)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


@dataclass
class Checkpoint:
    """A model directory read into memory: its config dict, normalised weights and where they came from."""

    directory: Path
    config: dict[str, Any]
    state: dict[str, np.ndarray]
    weights_file: Path


def resolve_model_dir(path: str | os.PathLike[str]) -> Path:
    """The directory holding config.json: ``path`` itself, or a sentence-transformers Transformer sub-module."""
    p = as_path("resolve_model_dir", path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such model directory")
    if not p.is_dir():
        raise CheckpointError(f"{p}: expected a model directory (config.json + weights), got a file")
    if (p / "config.json").is_file():
        return p
    if (p / "modules.json").is_file():
        for m in read_json(p / "modules.json"):
            if str(m.get("type", "")).endswith("Transformer") and (p / m.get("path", "") / "config.json").is_file():
                return p / m.get("path", "")
    present = ", ".join(sorted(f.name for f in p.iterdir())[:20]) or "nothing"
    raise CheckpointError(f"{p}: no config.json, so this is not a Hugging Face model directory (it holds: {present})")


def weights_file(directory: Path) -> Path:
    """The weights file of a model directory (safetensors preferred)."""
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    present = ", ".join(sorted(f.name for f in directory.iterdir())[:20])
    raise CheckpointError(f"{directory}: no weights file (looked for {', '.join(WEIGHT_FILES)}; found: {present})")


def normalise_key(key: str) -> str:
    """Legacy TF-era names: ``...LayerNorm.gamma`` -> ``...LayerNorm.weight``, ``.beta`` -> ``.bias``."""
    if key.endswith(".gamma"):
        return key[: -len("gamma")] + "weight"
    if key.endswith(".beta"):
        return key[: -len("beta")] + "bias"
    return key


def read_weights(path: str | os.PathLike[str], dtype: Any = np.float32) -> dict[str, np.ndarray]:
    """Read a weights file (safetensors, sharded index or torch .bin) with normalised keys, floats cast to ``dtype``.

    Integer buffers (``position_ids``) are dropped; two keys that normalise to
    the same name are an error.
    """
    path = as_path("read_weights", path)
    if path.name.endswith(".index.json"):
        index = read_json(path)
        wmap = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(wmap, dict):
            raise CheckpointError(f"{path}: a sharded index needs a 'weight_map' object")
        raw: dict[str, np.ndarray] = {}
        for shard in sorted(set(wmap.values())):
            if not (path.parent / shard).is_file():
                raise CheckpointError(f"{path}: shard {shard} is listed in the index but missing")
            raw.update(read_safetensors(path.parent / shard))
    elif path.suffix == ".bin":
        raw = read_torch_bin(path)
    else:
        raw = read_safetensors(path)
    out: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for k, v in raw.items():
        if v.dtype.kind != "f":
            if k.endswith("position_ids") or k.endswith("token_type_ids"):
                continue  # buffers, recomputed by the model
            raise CheckpointError(f"{path}: key {k!r} has non-float dtype {v.dtype}")
        nk = normalise_key(k)
        if nk in out:
            raise CheckpointError(f"{path}: keys {origin[nk]!r} and {k!r} both mean {nk!r}")
        origin[nk] = k
        out[nk] = v.astype(dtype, copy=False)
    return out


def load_checkpoint(path: str | os.PathLike[str], dtype: Any = np.float32) -> Checkpoint:
    """Read a Hugging Face (or semitorch) model directory: config.json and normalised weights."""
    directory = resolve_model_dir(as_path("load_checkpoint", path))
    config = read_json(directory / "config.json")
    if not isinstance(config, dict):
        raise CheckpointError(f"{directory / 'config.json'}: expected a JSON object")
    wf = weights_file(directory)
    return Checkpoint(directory, config, read_weights(wf, dtype), wf)


def save_checkpoint(directory: str | os.PathLike[str], config: dict[str, Any], state: dict[str, Any]) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (keys as given) into ``directory``, each file atomically.

    The result is a Hugging Face directory that transformers can load too.
    """
    d = as_path("save_checkpoint", directory, "directory")
    if d.exists() and not d.is_dir():
        raise CheckpointError(f"{d}: exists and is not a directory")
    d.mkdir(parents=True, exist_ok=True)
    write_safetensors(d / "model.safetensors", state, metadata={"format": "pt", "producer": "semitorch"})
    write_json(d / "config.json", config)
    return d
