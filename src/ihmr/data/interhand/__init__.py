"""InterHand2.6M loader for the official annotation files (v1.0), subsets, hand crops, a torch Dataset.

Everything inside is in metres. :class:`InterHandAnnotations` holds all samples of a split as arrays
(``N`` samples); it is built once from the JSON files (indexed by capture / frame / camera) and stored
in an ``.npz`` cache (no pickle) keyed by the input files' paths, sizes and modification times.
Records that cannot be used (missing keys, wrong lengths, NaN, unknown camera or frame, a missing
image) are skipped and listed in :attr:`InterHandAnnotations.skipped` with a reason, and a warning
summarises them; nothing is silently dropped or misaligned. Modules, by job:

- :mod:`~ihmr.data.interhand.files`: where a split's files are (:func:`find_split_files`) and what
  they hold;
- :mod:`~ihmr.data.interhand.parse`: the JSON files -> arrays (the camera and unit conventions);
- :mod:`~ihmr.data.interhand.annotations`: :class:`InterHandAnnotations`, :class:`SkippedSample`;
- :mod:`~ihmr.data.interhand.cache`: the ``.npz`` cache;
- :mod:`~ihmr.data.interhand.load`: :func:`load_interhand` (cache or parse, image checks);
- :mod:`~ihmr.data.interhand.dataset`: :class:`InterHandDataset`, crops as tensors.
"""

from ihmr.data.interhand.annotations import HAND_TYPES, SUBSETS, InterHandAnnotations, SkippedSample
from ihmr.data.interhand.cache import CACHE_VERSION
from ihmr.data.interhand.dataset import InterHandDataset
from ihmr.data.interhand.files import InterHandFiles, find_split_files
from ihmr.data.interhand.load import load_interhand

__all__ = [
    "HAND_TYPES",
    "SUBSETS",
    "CACHE_VERSION",
    "InterHandFiles",
    "SkippedSample",
    "InterHandAnnotations",
    "find_split_files",
    "load_interhand",
    "InterHandDataset",
]
