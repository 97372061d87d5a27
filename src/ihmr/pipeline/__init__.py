"""Image in, two collision-free hand meshes out: ``ihmr.reconstruct(image) -> Result``.

The path of one image (:class:`Reconstructor`): load (:mod:`ihmr.io.images`) -> stage I
(:mod:`~ihmr.pipeline.sources`: MediaPipe detection + IK, or the stage-I network) -> pairing
(:mod:`~ihmr.pipeline.pairing`) -> refinement (:mod:`~ihmr.pipeline.refiners`: OPT or MLP) ->
:class:`Result` (:mod:`~ihmr.pipeline.results`), written out by :mod:`ihmr.pipeline.outputs`
(not imported here: it loads the mesh exporter and renderer, which ``import ihmr`` does not need).
"""

from ihmr.pipeline.pairing import pair_translations, root_translation, separate_pair, touch_pair
from ihmr.pipeline.reconstructor import Reconstructor, reconstruct
from ihmr.pipeline.results import HandResult, NoHandsError, PairResult, Result

__all__ = ["NoHandsError", "HandResult", "PairResult", "Result", "Reconstructor", "reconstruct",
           "root_translation", "pair_translations", "touch_pair", "separate_pair"]
