"""The loaded annotations of a split: :class:`InterHandAnnotations` (arrays over ``N`` samples,
metres and pixels) and the records left out (:class:`SkippedSample`).

Joints in the files: 42 per image, right hand 0-20, left 21-41, InterHand order; ihmr's layout
``(2, 21, C)`` in MANO order comes from :func:`ihmr.joint_order.to_two_hand`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from ihmr.errors import InputError
from ihmr.joint_order import to_two_hand
from ihmr.metrics import closely_interacting_mask, interacting_mask

__all__ = ["HAND_TYPES", "SUBSETS", "N_JOINTS", "FIELDS", "STR_FIELDS", "SkippedSample", "InterHandAnnotations"]

#: Hand type codes: ``hand_type[i]`` indexes this tuple.
HAND_TYPES: tuple[str, ...] = ("right", "left", "interacting")
#: Subset names accepted by :meth:`InterHandAnnotations.subset_mask`.
SUBSETS: tuple[str, ...] = ("all", "inter", "inter_close")
#: Joints per image in the files (right hand 0-20, left 21-41).
N_JOINTS = 42


#: Array fields of InterHandAnnotations (name -> per-sample trailing shape); order = cache order.
FIELDS: dict[str, tuple[int, ...]] = {
    "image_id": (), "width": (), "height": (), "capture": (), "frame_idx": (),
    "bbox": (4,), "K": (3, 3), "R": (3, 3), "t": (3,),
    "joints_world": (N_JOINTS, 3), "joints_cam": (N_JOINTS, 3), "joints_2d": (N_JOINTS, 2),
    "valid": (N_JOINTS,), "hand_type": (), "hand_type_valid": (),
    "mano_pose": (2, 48), "mano_shape": (2, 10), "mano_trans": (2, 3), "mano_valid": (2,),
}
#: String fields of InterHandAnnotations.
STR_FIELDS = ("file_name", "camera")


@dataclass(frozen=True)
class SkippedSample:
    """A record that was not loaded: its image id (-1 if unknown), file name and why."""

    image_id: int
    file_name: str
    reason: str


@dataclass
class InterHandAnnotations:
    """All usable samples of a split, as arrays over ``N`` samples (metres, pixels).

    Attributes:
        image_id, width, height, capture, frame_idx: ``(N,)`` int64.
        file_name, camera: ``(N,)`` str arrays (``file_name`` relative to ``image_root``).
        bbox: ``(N, 4)`` float64 annotation box ``[x, y, w, h]`` in pixels.
        K: ``(N, 3, 3)`` intrinsics ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` (pixels).
        R, t: ``(N, 3, 3)``, ``(N, 3)`` extrinsics, ``X_cam = R X_world + t`` (metres;
            ``t = -R campos``).
        joints_world, joints_cam: ``(N, 42, 3)`` metres, InterHand order (right 0-20, left 21-41);
            invalid joints hold whatever the file has (finite; non-finite values are set to 0).
        joints_2d: ``(N, 42, 2)`` projections of ``joints_cam`` in image pixels.
        valid: ``(N, 42)`` bool = joint_valid of the data file AND of the joint_3d file.
        hand_type: ``(N,)`` int64 index into :data:`HAND_TYPES`; hand_type_valid ``(N,)`` bool.
        mano_pose, mano_shape, mano_trans: ``(N, 2, 48)``, ``(N, 2, 10)``, ``(N, 2, 3)`` NeuralAnnot
            parameters, hand 0 = right (zeros where absent); mano_valid ``(N, 2)`` bool.
        image_root: folder the file names are relative to.
        skipped: records not loaded, with reasons.
        from_cache: True when the arrays came from the ``.npz`` cache (no JSON was parsed).
        has_mano: a NeuralAnnot file was read.
    """

    image_id: np.ndarray
    width: np.ndarray
    height: np.ndarray
    capture: np.ndarray
    frame_idx: np.ndarray
    bbox: np.ndarray
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    joints_world: np.ndarray
    joints_cam: np.ndarray
    joints_2d: np.ndarray
    valid: np.ndarray
    hand_type: np.ndarray
    hand_type_valid: np.ndarray
    mano_pose: np.ndarray
    mano_shape: np.ndarray
    mano_trans: np.ndarray
    mano_valid: np.ndarray
    file_name: np.ndarray
    camera: np.ndarray
    image_root: Path = Path(".")
    skipped: list[SkippedSample] = field(default_factory=list)
    from_cache: bool = False
    has_mano: bool = False

    def __len__(self) -> int:
        return int(self.image_id.shape[0])

    # -- views
    @property
    def image_paths(self) -> list[Path]:
        """Absolute-or-relative paths of the images, ``image_root / file_name``."""
        return [self.image_root / str(f) for f in self.file_name]

    def image_path(self, i: int) -> Path:
        """Path of image ``i`` (one entry of :attr:`image_paths`, without building them all)."""
        return self.image_root / str(self.file_name[i])

    @property
    def hand_type_names(self) -> np.ndarray:
        """``(N,)`` str: ``"right"``, ``"left"`` or ``"interacting"``."""
        return np.asarray(HAND_TYPES, dtype=str)[self.hand_type]

    @property
    def campos(self) -> np.ndarray:
        """``(N, 3)`` camera centres in world coordinates (metres), ``-R^T t``."""
        return -np.einsum("nji,nj->ni", self.R, self.t)

    @property
    def joints(self) -> np.ndarray:
        """``(N, 2, 21, 3)`` camera-frame joints in metres, ihmr layout (hand 0 = right, MANO order)."""
        return to_two_hand(self.joints_cam, "interhand")

    @property
    def joints_2d_two_hand(self) -> np.ndarray:
        """``(N, 2, 21, 2)`` image pixels, ihmr layout."""
        return to_two_hand(self.joints_2d, "interhand")

    @property
    def valid_two_hand(self) -> np.ndarray:
        """``(N, 2, 21)`` bool, ihmr layout."""
        return to_two_hand(self.valid, "interhand", axis=-1)

    # -- subsets
    def subset_mask(self, subset: str = "all") -> np.ndarray:
        """``(N,)`` bool membership of a paper subset (Sec. 4.1), via :mod:`ihmr.metrics`:

        - ``"all"``: every sample;
        - ``"inter"``: more than 30 valid 3D joints (:func:`ihmr.metrics.interacting_mask`);
        - ``"inter_close"``: interacting and mean inter-distance < 40 mm
          (:func:`ihmr.metrics.closely_interacting_mask` on camera-frame joints).
        """
        n = len(self)
        if subset not in SUBSETS:
            raise InputError(f"unknown subset {subset!r}; known: {', '.join(SUBSETS)}")
        if subset == "all" or n == 0:
            return np.ones(n, dtype=bool)
        if subset == "inter":
            return interacting_mask(self.valid)
        return closely_interacting_mask(self.joints, self.valid_two_hand)

    def select(self, index: Union[np.ndarray, Sequence[int]]) -> "InterHandAnnotations":
        """A new object with the samples ``index`` (bool mask ``(N,)`` or integer indices)."""
        idx = np.asarray(index)
        if idx.dtype == bool and idx.shape != (len(self),):
            raise InputError(f"mask must be ({len(self)},), got {idx.shape}")
        arrays = {k: getattr(self, k)[idx] for k in (*FIELDS, *STR_FIELDS)}
        return replace(self, **arrays, skipped=list(self.skipped))

    def subset(self, subset: str) -> "InterHandAnnotations":
        """The samples of a subset (see :meth:`subset_mask`)."""
        return self.select(self.subset_mask(subset))
