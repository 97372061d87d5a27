"""Evaluation metrics in millimetres: MPJPE family, exact penetration AVE-P / MAX-P, subsets, tables."""

from ihmr.metrics.errors import PoseError, i_mpjpe, i_mpvpe, mpjpe, mpvpe
from ihmr.metrics.penetration import (
    PenetrationStats,
    closely_interacting_mask,
    inter_distance,
    interacting_mask,
    penetration_depths,
    penetration_stats,
)
from ihmr.metrics.table import MetricsTable, SampleMetrics, evaluate, metrics_table

__all__ = [
    "PoseError",
    "mpjpe",
    "i_mpjpe",
    "mpvpe",
    "i_mpvpe",
    "PenetrationStats",
    "penetration_depths",
    "penetration_stats",
    "inter_distance",
    "interacting_mask",
    "closely_interacting_mask",
    "SampleMetrics",
    "evaluate",
    "MetricsTable",
    "metrics_table",
]
