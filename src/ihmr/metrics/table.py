"""Per-sample evaluation and the Table-1 shaped report (Markdown + JSON)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from ihmr.io.files import atomic_write
from ihmr.metrics.contact import ContactStats, contact_stats
from ihmr.metrics.penetration import PenetrationStats, penetration_stats
from ihmr.metrics.pose import PoseError, i_mpjpe, i_mpvpe, mpjpe, mpvpe

__all__ = ["SampleMetrics", "sample_metrics", "MetricsTable", "metrics_table"]


@dataclass
class SampleMetrics:
    """Per-sample metrics of one method on one data set (millimetres)."""

    mpjpe: PoseError
    i_mpjpe: PoseError
    penetration: Optional[PenetrationStats] = None
    mpvpe: Optional[PoseError] = None
    i_mpvpe: Optional[PoseError] = None
    contact: Optional[ContactStats] = None

    def summary(self, mask: Optional[np.ndarray] = None) -> dict[str, float]:
        m = np.ones(len(self.mpjpe.per_sample), bool) if mask is None else np.asarray(mask, bool)
        out = {"n": int(m.sum()), "mpjpe": self.mpjpe.subset(m).value, "i_mpjpe": self.i_mpjpe.subset(m).value}
        if self.mpvpe is not None and self.i_mpvpe is not None:
            out.update(mpvpe=self.mpvpe.subset(m).value, i_mpvpe=self.i_mpvpe.subset(m).value)
        if self.penetration is not None:
            out["ave_p"], out["max_p"] = self.penetration.value(m)
        if self.contact is not None:
            out.update(self.contact.value(m))
        return out


def sample_metrics(pred_joints, gt_joints, valid=None, pred_vertices=None, faces=None, gt_vertices=None) -> SampleMetrics:
    """All metrics per sample (a :class:`SampleMetrics`): joints ``(B, 2, 21, 3)`` / ``(B, 42, 3)`` metres, vertices ``(B, 2, V, 3)``.

    Penetration needs ``pred_vertices`` and ``faces``; MPVPE ``gt_vertices``; contact all three."""
    res = SampleMetrics(mpjpe=mpjpe(pred_joints, gt_joints, valid), i_mpjpe=i_mpjpe(pred_joints, gt_joints, valid))
    if pred_vertices is not None and faces is not None:
        res.penetration = penetration_stats(pred_vertices, faces)
    if pred_vertices is not None and gt_vertices is not None:
        res.mpvpe = mpvpe(pred_vertices, gt_vertices, pred_joints, gt_joints)
        res.i_mpvpe = i_mpvpe(pred_vertices, gt_vertices)
        if faces is not None:
            res.contact = contact_stats(pred_vertices, gt_vertices, faces)
    return res


@dataclass
class MetricsTable:
    """Rows = methods, column groups = subsets; numbers in mm, speed in samples/s."""

    rows: dict[str, dict[str, dict[str, float]]]
    speed: dict[str, Optional[float]] = field(default_factory=dict)
    subsets: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        def clean(x):
            return None if isinstance(x, float) and math.isnan(x) else x

        return {
            "units": {"errors": "mm", "penetration": "mm", "speed": "samples/s"},
            "subsets": self.subsets,
            "methods": {
                m: {"subsets": {s: {k: clean(v) for k, v in d.items()} for s, d in subs.items()}, "speed": self.speed.get(m)}
                for m, subs in self.rows.items()
            },
        }

    def to_markdown(self) -> str:
        def f(x: Optional[float], nd: int = 2) -> str:
            return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"

        has_v = any("mpvpe" in d for subs in self.rows.values() for d in subs.values())
        has_c = any("contact_gap" in d for subs in self.rows.values() for d in subs.values())
        head = ["Method"]
        for s in self.subsets:
            head += [f"{s} MPJPE", f"{s} I-MPJPE"] + ([f"{s} MPVPE"] if has_v else []) + [f"{s} AVE-P / MAX-P"]
            head += [f"{s} contact gap / P / R"] if has_c else []
        head.append("Speed (samples/s)")
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for m, subs in self.rows.items():
            cells = [m]
            for s in self.subsets:
                d = subs.get(s, {})
                cells += [f(d.get("mpjpe")), f(d.get("i_mpjpe"))] + ([f(d.get("mpvpe"))] if has_v else [])
                cells.append(f"{f(d.get('ave_p'))} / {f(d.get('max_p'))}" if "ave_p" in d else "-")
                if has_c:
                    cells.append(f"{f(d.get('contact_gap'))} / {f(d.get('contact_precision'))} / {f(d.get('contact_recall'))}"
                                 if "contact_gap" in d else "-")
            cells.append(f(self.speed.get(m)))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def save(self, stem: str | Path) -> tuple[Path, Path]:
        """Write ``stem.md`` and ``stem.json`` atomically; returns both paths."""
        stem = Path(stem)
        md, js = stem.with_suffix(".md"), stem.with_suffix(".json")
        with atomic_write(md, "w") as fh:
            fh.write(self.to_markdown())
        with atomic_write(js, "w") as fh:
            json.dump(self.to_json(), fh, indent=2)
        return md, js


def metrics_table(
    results: Mapping[str, SampleMetrics],
    subsets: Mapping[str, np.ndarray],
    speed: Optional[Mapping[str, float]] = None,
) -> MetricsTable:
    """Build the table from per-sample results of several methods on the same samples.

    Args:
        results: method name -> :class:`SampleMetrics`.
        subsets: subset name (e.g. "All", "Inter", "Inter-Close") -> ``(B,)`` bool mask.
        speed: method name -> samples per second.
    """
    rows = {m: {s: r.summary(mask) for s, mask in subsets.items()} for m, r in results.items()}
    return MetricsTable(rows=rows, speed=dict(speed or {}), subsets=list(subsets))
