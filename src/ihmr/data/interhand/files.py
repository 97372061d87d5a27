"""Where a split's InterHand2.6M annotation files are (v1.0 names; also what ``ihmr synth`` writes).

Files of one split (``{prefix}`` is e.g. ``InterHand2.6M_test`` or ``test_interhand2.6m``):

- ``{prefix}_data.json``: COCO-style ``images`` (id, file_name, width, height, capture, camera,
  frame_idx, ...) and ``annotations`` (image_id, bbox ``[x, y, w, h]`` pixels, joint_valid
  ``(42, 1)``, hand_type ``"right"/"left"/"interacting"``, hand_type_valid). No 2D joints.
- ``{prefix}_camera.json``: ``{capture: {"campos"|"camrot"|"focal"|"princpt": {camera: value}}}``
  with campos ``(3,)`` mm (camera centre in world), camrot ``(3, 3)``, focal ``(2,)`` and princpt
  ``(2,)`` pixels.
- ``{prefix}_joint_3d.json``: ``{capture: {frame_idx: {world_coord (42, 3) mm, joint_valid (42, 1),
  hand_type, hand_type_valid}}}``.
- optional ``{prefix}_MANO_NeuralAnnot.json``: ``{capture: {frame_idx: {"right"|"left": null or
  {pose (48,), shape (10,), trans (3,)}}}}`` (axis-angle incl. global orientation, world frame;
  ``trans`` in metres as the MANO layer uses it; kept as stored).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from ihmr.errors import InputError

__all__ = ["PathLike", "InterHandFiles", "find_split_files"]

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class InterHandFiles:
    """Annotation files of one split and the folder the images' ``file_name`` is relative to."""

    data: Path
    camera: Path
    joint_3d: Path
    mano: Optional[Path] = None
    image_root: Optional[Path] = None

    @property
    def prefix(self) -> str:
        """File-name prefix of the split (``data`` without ``_data.json``)."""
        return self.data.name[: -len("_data.json")] if self.data.name.endswith("_data.json") else self.data.stem

    def inputs(self) -> list[Path]:
        """The annotation files that exist and are read (cache key inputs)."""
        return [p for p in (self.data, self.camera, self.joint_3d, self.mano) if p is not None]


def find_split_files(
    root: PathLike,
    split: str = "test",
    prefix: Optional[str] = None,
    image_root: Optional[PathLike] = None,
    mano: bool = True,
) -> InterHandFiles:
    """Locate a split's annotation files in ``root``.

    Args:
        root: the data set's root in the official layout (``root/annotations/<split>/*_data.json``,
            images in ``root/images/<split>/``; also what ``ihmr synth`` writes), or the folder
            holding the ``*_data.json``, ``*_camera.json``, ``*_joint_3d.json`` files.
        split: ``"train"``, ``"val"`` or ``"test"``; used when ``prefix`` is None: the unique
            ``*_data.json`` whose name contains ``split`` (case-insensitive) gives the prefix
            (``InterHand2.6M_test_data.json`` and ``test_interhand2.6m_data.json`` both work).
        prefix: explicit file-name prefix (``{prefix}_data.json`` ...).
        image_root: folder the images' ``file_name`` is relative to (default: ``images/<split>`` of
            the official layout when it exists, else the annotation folder).
        mano: look for ``{prefix}_MANO_NeuralAnnot.json`` (used when present).

    Raises:
        InputError: no or several matching files, or a required file is missing.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data folder {str(root)!r} does not exist")
    images: Optional[Path] = None
    if (root / "annotations" / split).is_dir():  # the data set's root, official layout
        root, images = root / "annotations" / split, root / "images" / split
    elif (root / "annotations").is_dir() and any((root / "annotations").glob("*_data.json")):
        root, images = root / "annotations", root / "images" / split
    else:  # the annotation folder itself: images in ../../images/<split> when that exists
        images = root.parent.parent / "images" / split
    if image_root is None and images is not None and images.is_dir():
        image_root = images
    if prefix is None:
        pat = re.compile(rf".*{re.escape(split.lower())}.*_data\.json$")
        cands = sorted(p for p in root.iterdir() if pat.match(p.name.lower()))
        if len(cands) != 1:
            found = ", ".join(p.name for p in cands) or "none"
            raise InputError(f"expected one *{split}*_data.json in {root}, found {found}; pass prefix=")
        prefix = cands[0].name[: -len("_data.json")]
    files = {k: root / f"{prefix}_{k}.json" for k in ("data", "camera", "joint_3d")}
    for k, p in files.items():
        if not p.is_file():
            raise InputError(f"InterHand2.6M {k} file {p} not found")
    mano_path = root / f"{prefix}_MANO_NeuralAnnot.json"
    return InterHandFiles(
        data=files["data"], camera=files["camera"], joint_3d=files["joint_3d"],
        mano=mano_path if mano and mano_path.is_file() else None,
        image_root=Path(image_root) if image_root is not None else root,
    )
