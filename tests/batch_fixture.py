"""A fast stand-in for :class:`ihmr.pipeline.Reconstructor` in batch tests: two (or more) hands of
the open model in a fixed, slightly interpenetrating pose in front of the camera, for any image size
(no MediaPipe, no refinement), so the batch, its files and the renderer are what is tested."""

from __future__ import annotations

import numpy as np
import torch

from ihmr.geometry.camera import intrinsics, project_points
from ihmr.handmodel import TwoHands
from ihmr.pipeline.refiners import NoRefiner, refine_pair
from ihmr.pipeline.results import HandResult, Result

_HANDS: dict = {}


def _model() -> TwoHands:
    if "m" not in _HANDS:
        _HANDS["m"] = TwoHands(dtype=torch.float64)
    return _HANDS["m"]


class FakeReconstructor:
    """``rec(image, focal=, boxes=) -> Result``; ``extra_hands`` more right hands (unpaired);
    ``fail``: image index -> exception raised for that call (counted from 0)."""

    def __init__(self, extra_hands: int = 0, fail: dict | None = None) -> None:
        self.hands = _model()
        self.extra_hands = extra_hands
        self.fail = fail or {}
        self.calls = 0

    def __call__(self, image, focal=None, boxes=()):
        k = self.calls
        self.calls += 1
        if k in self.fail:
            raise self.fail[k]
        H, W = image.shape[:2]
        K = intrinsics(W, H, float(focal) if focal else 1.2 * max(W, H))
        z = torch.zeros
        m = self.hands
        out = m(z(1, 2, 10, dtype=torch.float64), torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]], dtype=torch.float64),
                z(1, 2, 45, dtype=torch.float64), torch.tensor([[0.02, 0.01, 0.0]], dtype=torch.float64))
        origin = np.array([0.05, 0.0, 0.45])
        hands = []
        for h, side in enumerate(("right", "left")):
            v = out.vertices[0, h].numpy() + origin
            j = out.joints[0, h].numpy() + origin
            hands.append(self._hand(side, v, j, K, out, h))
        for e in range(self.extra_hands):
            shift = np.array([0.0, 0.12 * (e + 1), 0.0])
            hands.append(self._hand("right", hands[0].vertices + shift, hands[0].joints_3d + shift, K, out, 0))
        pairs = [refine_pair(m, NoRefiner(), hands, 0, 1, K)]
        return Result(image_size=(W, H), K=K, hands=hands, pairs=pairs, faces=m.faces.numpy(), timings_s={}, notes=[])

    @staticmethod
    def _hand(side, v, j, K, out, h) -> HandResult:
        j2d = project_points(j[None], K[None])[0]
        params = dict(beta=np.zeros(10), global_orient=np.zeros(3), hand_pose=np.zeros(45), wrist=j[0].copy())
        return HandResult(side=side, score=1.0, params=params, joints_3d=j.copy(), joints_2d=j2d, vertices=v.copy(),
                          source="fake", landmarks_3d=j.copy())


def write_images(folder, sizes, seed: int = 0) -> list:
    """Random RGB photos ``photo<k>.png`` of the given ``(W, H)`` sizes in ``folder``; their paths."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for k, (W, H) in enumerate(sizes):
        p = folder / f"photo{k}.png"
        Image.fromarray((rng.random((H, W, 3)) * 255).astype(np.uint8)).save(p)
        paths.append(p)
    return paths
