"""The global random number generators' state (torch, numpy, Python, CUDA) as plain types, so a
training checkpoint can hold it and a resumed run continues the same random streams."""

from __future__ import annotations

import json
import random

import numpy as np
import torch

__all__ = ["rng_state", "set_rng_state"]


def rng_state() -> dict:
    """``{"torch": ByteTensor, "numpy": json str, "python": json str[, "cuda": ByteTensor]}``."""
    st = {"torch": torch.get_rng_state(), "numpy": json.dumps(_np_state()), "python": json.dumps(_py_state())}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state()
    return st


def _np_state() -> list:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _py_state() -> list:
    v, inner, g = random.getstate()
    return [v, list(inner), g]


def set_rng_state(st: dict) -> None:
    """Restore a state from :func:`rng_state` (CUDA's only where CUDA is available)."""
    torch.set_rng_state(st["torch"])
    n = json.loads(st["numpy"])
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = json.loads(st["python"])
    random.setstate((p[0], tuple(p[1]), p[2]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state(st["cuda"])
