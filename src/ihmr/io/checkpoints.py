"""Checkpoint files shared by every trained part of ihmr (MLP refiners, stage-I network).

A checkpoint is a ``torch.save`` dict of plain types and tensors with ``"format"`` and
``"version"`` keys, written atomically and read with ``weights_only=True`` (no code runs on load).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ihmr.errors import InputError
from ihmr.io.files import atomic_write

__all__ = ["write_checkpoint", "read_checkpoint", "load_matching_state"]


def write_checkpoint(path, blob: dict[str, Any]) -> Path:
    """``torch.save(blob)`` to ``path`` atomically."""
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        torch.save(blob, fh)
    return path


def read_checkpoint(path, fmt: str, version: int, what: str) -> dict[str, Any]:
    """The checkpoint dict at ``path`` after checking its format and version.

    Raises:
        InputError: missing, unreadable, another format or version (``what`` names the kind in
            the message, e.g. "refiner checkpoint").
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds
        raise InputError(f"{path}: not a readable {what} ({type(e).__name__}: {str(e).splitlines()[0]})") from e
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise InputError(f"{path}: not an ihmr {what} (format {found!r}, expected {fmt!r})")
    if blob.get("version") != version:
        raise InputError(f"{path}: {what} version {blob.get('version')} is not supported (expected {version})")
    return blob


def load_matching_state(module: nn.Module, state: dict[str, torch.Tensor], path, hint: str = "") -> None:
    """Load ``state`` into ``module`` after checking names and shapes; a mismatch names the tensor
    (``hint`` is appended, e.g. the architecture it expected)."""
    want = module.state_dict()
    missing, extra = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    if missing or extra:
        raise InputError(f"{path}: tensors do not match (missing {missing[:3]}, unexpected {extra[:3]}){hint}")
    for k, v in want.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise InputError(f"{path}: tensor {k!r} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}{hint}")
    module.load_state_dict(state)
