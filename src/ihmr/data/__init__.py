"""Data: the synthetic interacting-hands benchmark and the InterHand2.6M loader."""

from ihmr.data.interhand import (
    HAND_TYPES,
    SUBSETS,
    InterHandAnnotations,
    InterHandDataset,
    InterHandFiles,
    SkippedSample,
    find_split_files,
    load_interhand,
)

__all__ = [
    "HAND_TYPES",
    "SUBSETS",
    "InterHandAnnotations",
    "InterHandDataset",
    "InterHandFiles",
    "SkippedSample",
    "find_split_files",
    "load_interhand",
]
