"""The demo pipeline on a batch of photo variants: hands found and penetration left.

Run (from the project root)::

    PYTHONPATH=src PYOPENGL_PLATFORM=egl .venv/bin/python benchmarks/bench_photos.py [--data DIR] [--json OUT]

With no photo collection on this machine, the batch is made from the four InterHand2.6M sample
frames (``../shared/data/interhand26m_sample``; two interacting, two single hands) as a user's
photos differ: as taken, tightly cropped around the hands (10 % and 30 % margins, the data set's
box), grey-scale, mirrored, turned by 90 degrees, half and twice the size. Each runs through
``Reconstructor`` with the data set's focal length (scaled with the image) and no box. Per image:
hands expected / found (sides), AVE-P / MAX-P before -> after refinement of each pair, the pair's
surface gap after it, the mean 2D reprojection error of the pair's joints before -> after, and the
time. The summary counts hands found, pairs left with MAX-P above 2 mm, and the largest rise of the
reprojection error.

To compare with an earlier commit, run the same script against that commit's sources
(``git worktree add /tmp/base REV``, then ``PYTHONPATH=/tmp/base/src``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_demo as bd  # noqa: E402 - the sample's annotations and the pair figures

#: The frames and how many hands each shows.
FRAMES = {"image69148": 2, "image44669": 2, "image2017": 1, "image29590": 1}


def variants(img: np.ndarray, box, focal: float):
    """``(name, image, focal)`` of the photo variants of one frame (``box`` = x, y, w, h)."""
    from PIL import Image

    H, W = img.shape[:2]
    yield "as taken", img, focal
    x, y, w, h = box
    for pad in (0.1, 0.3):
        x0, y0 = int(max(0, x - pad * w)), int(max(0, y - pad * h))
        x1, y1 = int(min(W, x + w * (1 + pad))), int(min(H, y + h * (1 + pad)))
        yield f"crop {int(pad * 100)} %", np.ascontiguousarray(img[y0:y1, x0:x1]), focal
    yield "grey", np.repeat(img.mean(2, keepdims=True), 3, 2).astype(np.uint8), focal
    yield "mirrored", np.ascontiguousarray(img[:, ::-1]), focal
    yield "turned 90", np.ascontiguousarray(np.rot90(img)), focal
    for s in (0.5, 2.0):
        size = (int(round(W * s)), int(round(H * s)))
        yield f"x{s:g}", np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC)), focal * s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=bd.DATA, help="the InterHand2.6M sample folder")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows and the summary to this JSON file")
    args = bd.parse_sample_args(ap, argv, "bench_photos")
    if args is None:
        return 2
    from ihmr.io.images import load_image
    from ihmr.pipeline import Reconstructor

    ann = bd.annotations(args.data)
    rec = Reconstructor()
    rows = []
    for stem, expected in FRAMES.items():
        side, img = bd.sidecar(ann, stem), load_image(bd.image_path(args.data, stem))
        for name, im, focal in variants(img, side["boxes"][0], side["focal"]):
            t0 = time.perf_counter()
            try:
                res = rec(im, focal=focal)
            except Exception as e:  # noqa: BLE001 - a benchmark row, not a crash
                res, err = None, type(e).__name__
            row = {"image": stem, "variant": name, "expected": expected, "seconds": time.perf_counter() - t0}
            if res is None:
                row.update(found=0, sides="-", error=err, pairs=[])
            else:
                row.update(found=len(res.hands), sides="".join(h.side[0].upper() for h in res.hands), pairs=[])
                for p in res.pairs:
                    one = dataclasses.replace(res, pairs=[p])
                    row["pairs"].append({"ave_p_before": p.ave_p_mm_before, "max_p_before": p.max_p_mm_before,
                                         "ave_p_after": p.ave_p_mm_after, "max_p_after": p.max_p_mm_after, **bd.pair_figures(one)})
            rows.append(row)
    print("| image | variant | hands expected / found | AVE-P/MAX-P mm before -> after | gap mm | reproj px before -> after | s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        pen = "; ".join(f"{p['ave_p_before']:.2f}/{p['max_p_before']:.1f} -> {p['ave_p_after']:.2f}/{p['max_p_after']:.1f}" for p in r["pairs"]) or "-"
        gap = "; ".join(f"{p['gap_mm']:.1f}" for p in r["pairs"]) or "-"
        rep = "; ".join(f"{p['reproj_before']:.1f} -> {p['reproj_after']:.1f}" for p in r["pairs"]) or "-"
        found = f"{r['found']} ({r['sides']})" if r["found"] else f"0 ({r.get('error', '-')})"
        print(f"| {r['image']} | {r['variant']} | {r['expected']} / {found} | {pen} | {gap} | {rep} | {r['seconds']:.2f} |")
    pairs = [p for r in rows for p in r["pairs"]]
    summary = {
        "images": len(rows), "hands_expected": sum(r["expected"] for r in rows),
        "hands_found": sum(min(r["found"], r["expected"]) for r in rows),
        "extra_hands": sum(max(r["found"] - r["expected"], 0) for r in rows),
        "pairs": len(pairs), "pairs_penetrating_before": sum(p["max_p_before"] > 0 for p in pairs),
        "pairs_max_p_over_2mm_after": sum(p["max_p_after"] > 2.0 for p in pairs),
        "worst_max_p_after_mm": max((p["max_p_after"] for p in pairs), default=0.0),
        "worst_reprojection_rise_px": max((p["reproj_after"] - p["reproj_before"] for p in pairs), default=0.0),
        "median_seconds": float(np.median([r["seconds"] for r in rows])),
    }
    print("\n" + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()))
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
