"""Ground-truth poses of ``ihmr synth``, in chunks: sample ``idx`` takes its pose from chunk
``idx // chunk``, drawn by ``make_synthetic(chunk, seed=chunk_seed(seed, idx // chunk))``."""

from __future__ import annotations

import numpy as np
import torch

from ihmr.data.synthetic import CONTACTS, make_synthetic
from ihmr.handmodel.two_hands import TwoHands

__all__ = ["chunk_seed", "pose_chunk"]


def chunk_seed(seed: int, chunk: int) -> int:
    """The ``make_synthetic`` seed of pose chunk ``chunk`` of run ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(chunk), 0x5EED]).generate_state(1)[0])


def pose_chunk(seed: int, chunk: int, size: int, hands: TwoHands) -> dict[str, np.ndarray]:
    """Ground truth of pose chunk ``chunk``: ``beta (C, 2, 10), phi (C, 2, 3), theta (C, 2, 45),
    tau (C, 3)`` float64, ``contact (C,)`` names, and the posed model (model frame, metres):
    ``vertices (C, 2, V, 3)``, ``joints (C, 2, 21, 3)`` (MANO order) and ``rest_wrist (C, 2, 3)`` = the
    wrist ``J0(beta)`` of the unposed hand, for ``C = size`` samples posed by ``hands`` (float64).
    Single-threaded torch, so bitwise reproducible."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        s = make_synthetic(size, seed=chunk_seed(seed, chunk), hands=hands, progress=False)
        g = s.gt
        with torch.no_grad():
            out = hands(g["beta"], g["phi"], g["theta"], g["tau"])
            z = torch.zeros(size, 3, dtype=g["beta"].dtype)
            zp = torch.zeros(size, 45, dtype=g["beta"].dtype)
            rest = torch.stack([hands.right(g["beta"][:, 0], z, zp).joints[:, 0],
                                hands.left(g["beta"][:, 1], z, zp).joints[:, 0]], 1)
    finally:
        torch.set_num_threads(threads)
    gt = {k: v.numpy().copy() for k, v in g.items()}
    gt["contact"] = np.array([CONTACTS[int(k)] for k in s.contact])
    gt["vertices"] = out.vertices.numpy()
    gt["joints"] = out.joints.numpy()
    gt["rest_wrist"] = rest.numpy()
    return gt
