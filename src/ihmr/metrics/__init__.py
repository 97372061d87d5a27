"""Evaluation metrics in millimetres: pose errors (MPJPE family, :mod:`.pose`), exact penetration
AVE-P / MAX-P and the interacting subsets (:mod:`.penetration`), contact gap and precision /
recall (:mod:`.contact`), per-sample metrics and tables
(:mod:`.table`)."""

from ihmr.metrics.contact import CONTACT_THRESHOLD, ContactStats, contact_stats
from ihmr.metrics.penetration import (
    PenetrationStats,
    closely_interacting_mask,
    inter_distance,
    interacting_mask,
    penetration_depths,
    penetration_stats,
)
from ihmr.metrics.pose import PoseError, i_mpjpe, i_mpvpe, mpjpe, mpvpe, mrrpe
from ihmr.metrics.table import MetricsTable, SampleMetrics, metrics_table, sample_metrics

__all__ = [
    "PoseError",
    "mpjpe",
    "i_mpjpe",
    "mrrpe",
    "mpvpe",
    "i_mpvpe",
    "CONTACT_THRESHOLD",
    "ContactStats",
    "contact_stats",
    "PenetrationStats",
    "penetration_depths",
    "penetration_stats",
    "inter_distance",
    "interacting_mask",
    "closely_interacting_mask",
    "SampleMetrics",
    "sample_metrics",
    "MetricsTable",
    "metrics_table",
]
