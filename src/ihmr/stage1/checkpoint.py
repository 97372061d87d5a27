"""Old name of :mod:`ihmr.stage1.weights` (kept until every importer uses the new one)."""

from ihmr.stage1.weights import Stage1Arch, load_stage1, read_stage1_checkpoint, save_stage1

__all__ = ["Stage1Arch", "save_stage1", "load_stage1", "read_stage1_checkpoint"]
