"""InterHand2.6M samples as tensors for torch: :class:`InterHandDataset`, cropped around both hands."""

from __future__ import annotations

from typing import Any, Union

import numpy as np
import torch
from torch import Tensor

from ihmr.data.interhand.annotations import InterHandAnnotations
from ihmr.data.interhand.files import InterHandFiles, PathLike
from ihmr.data.interhand.load import load_interhand
from ihmr.errors import InputError
from ihmr.geometry.crop import apply_affine, crop_affine, crop_image, hand_boxes, normalise_image, pixels_to_normalised
from ihmr.io.images import load_image
from ihmr.joint_order import to_two_hand

__all__ = ["InterHandDataset"]


class InterHandDataset(torch.utils.data.Dataset):
    """InterHand2.6M samples as tensors, cropped around both hands (deterministic, no augmentation).

    Each item is a dict:

    - ``image``: ``(3, S, S)`` float32 normalised (mean 0.5 / std 0.5) or, with ``normalise=False``,
      ``(S, S, 3)`` uint8;
    - ``j2d``: ``(2, 21, 2)`` crop pixels; ``j2d_norm``: ``(2, 21, 2)`` in ``[-1, 1]``;
      ``j2d_image``: ``(2, 21, 2)`` original image pixels;
    - ``j3d``: ``(2, 21, 3)`` camera frame, metres (each hand minus its own wrist with
      ``root_relative``); ``root``: ``(2, 3)`` the wrists (metres, camera frame); ``root_valid`` ``(2,)``;
    - ``valid``: ``(2, 21)`` bool (with ``root_relative`` a hand without a valid wrist is all invalid);
    - ``hand_type``: int64 index into :data:`HAND_TYPES`; ``hand_type_vec``: ``(2,)`` float32 (right
      present, left present); ``hand_type_valid``: bool;
    - ``K``: ``(3, 3)`` image intrinsics; ``K_crop``: ``(3, 3)`` intrinsics of the crop;
      ``affine``: ``(2, 3)`` image pixels -> crop pixels; ``R`` ``(3, 3)``, ``t`` ``(3,)`` metres;
    - ``mano_pose`` ``(2, 48)``, ``mano_shape`` ``(2, 10)``, ``mano_trans`` ``(2, 3)``, ``mano_valid``
      ``(2,)`` when the split has NeuralAnnot parameters;
    - ``index``, ``image_id``.

    Joints are in ihmr's layout (hand 0 = right, MANO order, via :mod:`ihmr.joint_order`).

    Args:
        annotations: an :class:`InterHandAnnotations` or anything :func:`load_interhand` accepts.
        subset: ``"all"``, ``"inter"`` or ``"inter_close"``.
        size: crop size ``S`` (pixels).
        padding: enlargement of the valid joints' box (see :func:`hand_boxes`).
        use_bbox: unite the joint box with the annotation bbox.
        context: keep the image around the hand box inside the square crop (default: zero-pad
            outside the box, as the paper).
        normalise: return the float image normalised, else uint8.
        root_relative: subtract each hand's wrist from its joints.
        **load_kwargs: passed to :func:`load_interhand` when ``annotations`` is not loaded yet.
    """

    def __init__(
        self,
        annotations: Union[InterHandAnnotations, PathLike, InterHandFiles],
        subset: str = "all",
        size: int = 224,
        padding: float = 1.2,
        use_bbox: bool = False,
        context: bool = False,
        normalise: bool = True,
        root_relative: bool = False,
        **load_kwargs: Any,
    ) -> None:
        ann = annotations if isinstance(annotations, InterHandAnnotations) else load_interhand(annotations, **load_kwargs)
        if size <= 0:
            raise InputError(f"size must be positive, got {size}")
        self.annotations = ann.subset(subset)
        self.subset, self.size, self.context, self.normalise, self.root_relative = subset, size, context, normalise, root_relative
        a = self.annotations
        self.boxes = hand_boxes(a.joints_2d, a.valid, a.bbox, padding=padding, use_bbox=use_bbox)  # (N, 4)
        self.affine = crop_affine(self.boxes, size)  # (N, 2, 3)
        self._j2d_crop = apply_affine(a.joints_2d, self.affine)  # (N, 42, 2)

    def __len__(self) -> int:
        return len(self.annotations)

    def load_image(self, i: int) -> np.ndarray:
        """The full RGB image ``(H, W, 3)`` uint8 of sample ``i`` (via :func:`ihmr.io.images.load_image`).

        Raises:
            InputError: the file is missing or unreadable, or its size differs from the annotation's.
        """
        a = self.annotations
        path = a.image_path(i)
        img = load_image(path)
        if img.shape[:2] != (int(a.height[i]), int(a.width[i])):
            raise InputError(f"{path}: image is {img.shape[1]}x{img.shape[0]} pixels, the annotation says "
                             f"{int(a.width[i])}x{int(a.height[i])}")
        return img

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        i = i % len(self)
        a, S = self.annotations, self.size
        A = self.affine[i]
        crop = crop_image(self.load_image(i), A, S, box=None if self.context else self.boxes[i])
        f32 = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32)  # noqa: E731
        valid = to_two_hand(a.valid[i], "interhand", axis=-1)
        j3d = to_two_hand(a.joints_cam[i], "interhand")
        root, root_valid = j3d[:, 0].copy(), valid[:, 0].copy()
        if self.root_relative:
            j3d = j3d - root[:, None]
            valid = valid & root_valid[:, None]
        A3 = np.vstack([A, [0.0, 0.0, 1.0]])
        ht = int(a.hand_type[i])
        item: dict[str, Tensor] = {
            "image": normalise_image(crop) if self.normalise else torch.from_numpy(crop),
            "j2d": f32(to_two_hand(self._j2d_crop[i], "interhand")),
            "j2d_norm": f32(to_two_hand(pixels_to_normalised(self._j2d_crop[i], S), "interhand")),
            "j2d_image": f32(to_two_hand(a.joints_2d[i], "interhand")),
            "j3d": f32(j3d), "root": f32(root), "root_valid": torch.as_tensor(root_valid),
            "valid": torch.as_tensor(valid),
            "hand_type": torch.tensor(ht, dtype=torch.long),
            "hand_type_vec": torch.tensor([ht != 1, ht != 0], dtype=torch.float32),
            "hand_type_valid": torch.tensor(bool(a.hand_type_valid[i])),
            "K": f32(a.K[i]), "K_crop": f32(A3 @ a.K[i]), "affine": f32(A), "R": f32(a.R[i]), "t": f32(a.t[i]),
            "index": torch.tensor(i, dtype=torch.long), "image_id": torch.tensor(int(a.image_id[i]), dtype=torch.long),
        }
        if a.has_mano:
            item.update(mano_pose=f32(a.mano_pose[i]), mano_shape=f32(a.mano_shape[i]),
                        mano_trans=f32(a.mano_trans[i]), mano_valid=torch.as_tensor(a.mano_valid[i]))
        return item
