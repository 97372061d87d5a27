"""Image in, two collision-free hand meshes out: ``ihmr.reconstruct(image) -> Result``.

One path, like a demo: image loading (:func:`ihmr.io.images.load_image`) and the camera ->
stage I (:mod:`ihmr.pipeline.sources`: MediaPipe detection + IK, or the stage-I network) ->
pairing of right and left hands (:mod:`ihmr.pipeline.pairing`) -> refinement of each pair
(:mod:`ihmr.pipeline.refiners`: OPT, the MLP refiners, or none) -> :class:`~ihmr.pipeline.results.Result`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ihmr.detect import HandDetector
from ihmr.geometry.camera import intrinsics
from ihmr.handmodel import TwoHands
from ihmr.io.images import load_image
from ihmr.pipeline.pairing import pair_hands, place_pair, separate_pair, touch_pair, unpaired
from ihmr.pipeline.refiners import make_refiner, refine_pair
from ihmr.pipeline.results import Result
from ihmr.pipeline.sources import LandmarkSource, NetworkSource, Stage1Source
from ihmr.stage1.weights import checkpoint_hands, load_stage1

__all__ = ["Reconstructor", "reconstruct", "DEFAULT_FOCAL"]

#: The focal length of a photo without one, in units of its longer side.
DEFAULT_FOCAL = 1.2


class Reconstructor:
    """Holds the models (hand model, detector, stage I, refiner) for reconstructing many images."""

    def __init__(self, model: str = "open", refine: Union[bool, str] = True, iterations: int = 30,
                 threads: Optional[int] = 1, refiner: Union[str, Path] = "default",
                 checkpoint: Union[str, Path, None] = None, contact: bool = True) -> None:
        """``refine``: ``"opt"`` (or ``True``, the default) for the OPT refinement, ``"mlp"`` for the
        learned refiners (``refiner``: a checkpoint, ``"default"`` = the shipped ones), ``"none"``
        (or ``False``) to skip it. ``iterations``: OPT steps per factor. ``contact``: a pair whose
        hands overlap in the image but lie apart in depth is placed in contact
        (:func:`~ihmr.pipeline.pairing.touch_pair`, also with ``refine="none"``), and the refiner
        closes gaps between hands whose landmarks evidence touching (``False``: the paper).
        ``threads``: torch threads while reconstructing (None: leave torch's setting). One image's
        tensors are small (two hands, a few thousand vertices), so intra-op threads only add
        synchronisation, which costs 10-100x on a CPU shared with other processes.
        ``checkpoint``: a stage-I network checkpoint used as stage I instead of MediaPipe + IK (the
        detector then only gives a box around the hands); its hand model replaces ``model``."""
        net = arch = None
        if checkpoint is not None:
            net, arch, _ = load_stage1(checkpoint)
            self.hands = checkpoint_hands(arch, checkpoint)
        else:
            self.hands = TwoHands(model, dtype=torch.float64)
        detector = HandDetector()
        self.source: Stage1Source = (LandmarkSource(self.hands, detector) if net is None
                                     else NetworkSource(net, arch, self.hands, detector))
        self.refine = {True: "opt", False: "none"}.get(refine, refine) if isinstance(refine, bool) else str(refine)
        self.refiner = make_refiner(self.refine, self.hands, iterations, refiner, contact)
        self.contact = contact
        self.threads = threads

    @property
    def detector(self) -> HandDetector:
        """The hand detector of stage I (replaceable, e.g. by a stub in tests)."""
        return self.source.detector

    @detector.setter
    def detector(self, value: HandDetector) -> None:
        self.source.detector = value

    def __call__(self, image, focal: Optional[float] = None, boxes: Sequence[Sequence[float]] = ()) -> Result:
        """Reconstruct the hands in ``image`` (a path or an RGB array); ``focal`` in pixels; ``boxes``
        ``(x, y, w, h)`` regions known to hold the hands. Raises NoHandsError if none is found."""
        if self.threads is None:
            return self._reconstruct(image, focal, boxes)
        prev = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self._reconstruct(image, focal, boxes)
        finally:
            torch.set_num_threads(prev)

    def _reconstruct(self, image, focal: Optional[float], boxes: Sequence[Sequence[float]]) -> Result:
        t = {}
        t0 = time.perf_counter()
        img = load_image(image)
        H, W = img.shape[:2]
        K = intrinsics(W, H, float(focal) if focal else DEFAULT_FOCAL * max(W, H))
        t["load"] = time.perf_counter() - t0
        init = self.source(img, K, boxes)
        t.update(init.timings_s)
        hands, notes = init.hands, init.notes
        t0 = time.perf_counter()
        placed = init.pairs is not None
        pairs = []
        for i, j in init.pairs if placed else pair_hands(hands):
            if not placed:
                place_pair(hands[i], hands[j], K)
            reference = np.stack([hands[i].joints_3d, hands[j].joints_3d])  # as placed: later moves are guarded against them
            if not placed:
                shift = touch_pair(hands[i], hands[j], self.hands.faces.numpy(), K) if self.contact else 0.0
                if shift > 0:
                    notes.append(f"right hand {i} and left hand {j} overlap in the image: placed in contact, "
                                 f"their depths {1000 * shift:.0f} mm closer")
            pair = refine_pair(self.hands, self.refiner, hands, i, j, K, reference)
            if self.refine != "none" and pair.max_p_mm_after > 0:
                shift, depth = separate_pair(hands[i], hands[j], self.hands.faces.numpy(), K, reference=reference)
                if shift > 0:
                    notes.append(f"right hand {i} and left hand {j} still penetrated after refinement (MAX-P "
                                 f"{pair.max_p_mm_after:.1f} mm): moved apart in depth by {1000 * shift:.1f} mm")
                    pair.ave_p_mm_after, pair.max_p_mm_after = float(depth.mean()) * 1000, float(depth.max()) * 1000
            pairs.append(pair)
        lone = [hands[k].side for k in unpaired(hands, pairs)]
        if lone:
            notes.append(f"reconstructed {len(lone)} hand(s) without a partner: {', '.join(lone)}")
        t["refine"] = time.perf_counter() - t0
        return Result(image_size=(W, H), K=K, hands=hands, pairs=pairs, faces=self.hands.faces.numpy(), timings_s=t, notes=notes)


_DEFAULT: Optional[Reconstructor] = None


def reconstruct(image, focal: Optional[float] = None, boxes: Sequence[Sequence[float]] = ()) -> Result:
    """Reconstruct the hands in one image (a path or an RGB array); models load on first use."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Reconstructor()
    return _DEFAULT(image, focal=focal, boxes=boxes)
