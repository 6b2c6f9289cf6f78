"""Weight files: reading safetensors / pytorch_model.bin into numpy, atomic writes, and array trees on disk.

Everything here works on plain ``{name: numpy array}`` dicts; no module or
model is known. Files are written to a temporary name in the target directory
and renamed when complete, so a crash never leaves a half-written file under
the real name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint cannot be used: a missing or corrupt file, wrong keys, a shape mismatch. Names the file/key."""


def as_path(fn: str, path: Any, name: str = "path") -> Path:
    """``path`` as a Path, or a TypeError naming ``fn`` when it is not a str or os.PathLike."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{fn}: {name} must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def existing_file(fn: str, path: Any, what: str = "file") -> Path:
    """``path`` as a Path to an existing file: FileNotFoundError if it is missing, IsADirectoryError if a directory."""
    p = as_path(fn, path)
    if p.is_dir():
        hint = " (for a model directory use semitorch.io.load_checkpoint)" if what == "weights file" else ""
        raise IsADirectoryError(f"{p}: is a directory, expected a {what}{hint}")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such {what}")
    return p


def default_mode(directory: bool = False) -> int:
    """The permission bits a newly created file (or directory) gets under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block completes, else delete it."""
    path = as_path("atomic_path", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, default_mode())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_safetensors(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """All tensors of a .safetensors file as numpy arrays (bfloat16 is not supported by numpy: an error)."""
    from safetensors import SafetensorError  # noqa: PLC0415
    from safetensors.numpy import load_file  # noqa: PLC0415

    path = existing_file("read_safetensors", path, "weights file")
    try:
        return dict(load_file(str(path)))
    except SafetensorError as e:
        raise CheckpointError(f"{path}: cannot read the safetensors file, it is truncated or corrupt ({e})") from None
    except (TypeError, ValueError) as e:  # e.g. a dtype numpy lacks (bfloat16)
        raise CheckpointError(f"{path}: cannot convert a tensor of this safetensors file to numpy ({e})") from None


def read_torch_bin(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A pytorch_model.bin state dict, read with ``torch.load(..., weights_only=True)`` (needs torch)."""
    path = existing_file("read_torch_bin", path, "weights file")
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        raise CheckpointError(
            f"{path}: reading a pytorch .bin checkpoint needs torch; convert it to safetensors"
        ) from None
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read the torch checkpoint, it is truncated or corrupt ({e})") from None
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{path}: expected a state dict (a mapping of names to tensors), got {type(sd).__name__}")
    out: dict[str, np.ndarray] = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{path}: entry {k!r} is a {type(v).__name__}, not a tensor")
        v = v.detach().cpu()
        out[k] = (v.float() if v.dtype in (torch.bfloat16, torch.float16) else v).numpy()
    return out


def write_safetensors(path: str | os.PathLike[str], tensors: Mapping[str, Any], metadata: dict[str, str] | None = None):
    """Write ``tensors`` (numpy arrays) to a .safetensors file atomically."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    path = as_path("write_safetensors", path)
    arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata=metadata)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_path(as_path("write_json", path)) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parse a JSON file; a syntax error names the file."""
    try:
        return json.loads(as_path("read_json", path).read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None


# ---- trees of arrays and numbers (optimizer state) ------------------------------------------


def save_tree(path: str | os.PathLike[str], tree: Any) -> None:
    """Save nested dicts/lists of arrays, numbers, strings and None to one .safetensors file.

    Arrays become tensors; the structure is JSON in the file's metadata. No
    pickle is involved, so loading is safe. Dict keys may be str or int.
    """
    path = as_path("save_tree", path)
    tensors: dict[str, np.ndarray] = {}

    def enc(x: Any) -> Any:
        if isinstance(x, dict):
            return {"dict": [[k if isinstance(k, str) else {"int": int(k)}, enc(v)] for k, v in x.items()]}
        if isinstance(x, (list, tuple)):
            return {"list": [enc(v) for v in x]}
        if hasattr(x, "shape") and hasattr(x, "dtype"):
            name = f"t{len(tensors)}"
            tensors[name] = np.asarray(x)
            return {"array": name}
        if isinstance(x, (np.generic,)):
            x = x.item()
        if x is None or isinstance(x, (bool, int, float, str)):
            return {"value": x}
        raise TypeError(f"save_tree: cannot save a {type(x).__name__}")

    structure = enc(tree)
    write_safetensors(path, tensors, metadata={"semitorch_tree": json.dumps(structure)})


def load_tree(path: str | os.PathLike[str]) -> Any:
    """Load what :func:`save_tree` wrote."""
    from safetensors import SafetensorError, safe_open  # noqa: PLC0415

    path = existing_file("load_tree", path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except SafetensorError as e:
        raise CheckpointError(f"{path}: cannot read the safetensors file, it is truncated or corrupt ({e})") from None
    if "semitorch_tree" not in meta:
        raise CheckpointError(f"{path}: not a file written by semitorch.io.save_tree (no 'semitorch_tree' metadata)")

    def dec(x: Any) -> Any:
        if "dict" in x:
            return {(k["int"] if isinstance(k, dict) else k): dec(v) for k, v in x["dict"]}
        if "list" in x:
            return [dec(v) for v in x["list"]]
        if "array" in x:
            return tensors[x["array"]]
        return x["value"]

    return dec(json.loads(meta["semitorch_tree"]))
