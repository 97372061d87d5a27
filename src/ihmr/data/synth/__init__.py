"""Rendered synthetic training data in the official InterHand2.6M format (``ihmr synth``).

Each sample is a pair of interacting hands from :func:`ihmr.data.synthetic.make_synthetic` (ground
truth in contact), placed in a fixed world frame (millimetres) and seen by its own random pinhole
camera, rendered with skin-like shading, forearms, random light, a procedural background and
sometimes blur and noise. Modules, by job:

- :mod:`~ihmr.data.synth.format`: the files written (paths, conventions, the per-sample record, the
  assembled annotation files) and :func:`read_ihmr_params`, the reader of ``ihmr_params.json``;
- :mod:`~ihmr.data.synth.poses`: ground-truth poses in chunks;
- :mod:`~ihmr.data.synth.camera`: the random camera;
- :mod:`~ihmr.data.synth.appearance`: skin colours, backgrounds, lights;
- :mod:`~ihmr.data.synth.forearms`: forearm tubes and sleeves;
- :mod:`~ihmr.data.synth.renderer`: one sample rendered (:class:`SampleRenderer`);
- :mod:`~ihmr.data.synth.generation`: :func:`generate`, the process pool, ``--resume``, the manifest.

Determinism: sample ``idx`` depends only on ``(seed, idx)``, so the output is identical for any
number of workers, and a run with a larger ``n`` extends a smaller one.
"""

from ihmr.data.synth.format import (
    CAPTURE,
    PARAMS_FILE,
    POSE_CHUNK,
    SEQ_NAME,
    IhmrParams,
    annotation_paths,
    image_relpath,
    read_ihmr_params,
)
from ihmr.data.synth.generation import SynthConfig, generate
from ihmr.data.synth.poses import pose_chunk
from ihmr.data.synth.renderer import RenderedSample, SampleRenderer

__all__ = [
    "SynthConfig",
    "SampleRenderer",
    "RenderedSample",
    "generate",
    "pose_chunk",
    "image_relpath",
    "annotation_paths",
    "IhmrParams",
    "read_ihmr_params",
    "POSE_CHUNK",
    "CAPTURE",
    "SEQ_NAME",
    "PARAMS_FILE",
]
