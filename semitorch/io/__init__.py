"""Checkpoint I/O: safetensors and torch .bin weights, Hugging Face model directories, array trees on disk."""

from .hf import Checkpoint, load_checkpoint, normalise_key, read_weights, resolve_model_dir, save_checkpoint
from .weights import (
    CheckpointError,
    atomic_path,
    load_tree,
    read_json,
    read_safetensors,
    read_torch_bin,
    save_tree,
    write_json,
    write_safetensors,
)

__all__ = [
    "Checkpoint", "CheckpointError", "atomic_path", "load_checkpoint", "load_tree", "normalise_key", "read_json",
    "read_safetensors", "read_torch_bin", "read_weights", "resolve_model_dir", "save_checkpoint", "save_tree",
    "write_json", "write_safetensors",
]  # fmt: skip
