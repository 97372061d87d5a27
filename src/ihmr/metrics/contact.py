"""Contact metrics (our addition; no published two-hand method reports contact).

A vertex is *in contact* when it lies within :data:`CONTACT_THRESHOLD` of the other hand's
surface (inside included). Against a ground truth:

- **contact gap** (mm): the mean distance of the ground truth's contact vertices, on the
  predicted meshes, to the other predicted hand (zero inside) -- how far apart the prediction
  holds the surfaces that should touch (a perfect prediction scores the ground truth's own
  figure, below the 2 mm threshold). Undefined (NaN) for a sample whose ground truth has no
  contact vertex (a near miss).
- **contact precision / recall**: predicted contact vertices vs the ground truth's, pooled over
  the samples of a subset (true positives / predicted, true positives / ground truth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ihmr.collision.distance import surface_distances

__all__ = ["CONTACT_THRESHOLD", "ContactStats", "contact_stats"]

#: A vertex within this distance (m) of the other hand is in contact.
CONTACT_THRESHOLD = 0.002


@dataclass
class ContactStats:
    """Per-sample contact figures: ``gap_mm (B,)`` (NaN without ground-truth contact), counts
    ``tp``, ``n_pred``, ``n_gt`` ``(B,)`` of contact vertices (both hands)."""

    gap_mm: np.ndarray
    tp: np.ndarray
    n_pred: np.ndarray
    n_gt: np.ndarray

    def value(self, mask: np.ndarray | None = None) -> dict[str, float]:
        """``contact_gap`` (mm, mean over the samples with ground-truth contact), pooled
        ``contact_precision`` and ``contact_recall`` (fractions; NaN when undefined)."""
        m = np.ones(len(self.gap_mm), bool) if mask is None else np.asarray(mask, bool)
        g = self.gap_mm[m]
        g = g[np.isfinite(g)]
        tp, npred, ngt = self.tp[m].sum(), self.n_pred[m].sum(), self.n_gt[m].sum()
        return {
            "contact_gap": float(g.mean()) if g.size else float("nan"),
            "contact_precision": float(tp / npred) if npred else float("nan"),
            "contact_recall": float(tp / ngt) if ngt else float("nan"),
        }


@torch.no_grad()
def contact_stats(pred_vertices, gt_vertices, faces, threshold: float = CONTACT_THRESHOLD) -> ContactStats:
    """Contact figures of predicted vs ground-truth meshes ``(B, 2, V, 3)`` (m), faces ``(2, F, 3)``."""
    dp = surface_distances(torch.as_tensor(pred_vertices), torch.as_tensor(faces)).flatten(1).numpy()
    dg = surface_distances(torch.as_tensor(gt_vertices), torch.as_tensor(faces)).flatten(1).numpy()
    cp, cg = dp <= threshold, dg <= threshold
    n_gt = cg.sum(1)
    gap = np.where(n_gt > 0, (dp * cg).sum(1) / np.maximum(n_gt, 1), np.nan) * 1000.0
    return ContactStats(gap_mm=gap, tp=(cp & cg).sum(1), n_pred=cp.sum(1), n_gt=n_gt)
