"""The demo pipeline on the two bundled InterHand2.6M frames against their ground-truth 3D joints.

Run (from the project root)::

    PYTHONPATH=src PYOPENGL_PLATFORM=egl .venv/bin/python benchmarks/bench_demo.py [--data DIR] [--no-box] [--write DIR]
        [--checkpoint CKPT|default]

Per frame: hands found (side and source), MPJPE (per-hand wrist aligned, right / left / both),
I-MPJPE and MRRPE (the left wrist's error relative to the right) of the final 3D joints
(``ihmr.metrics``), the mean 2D error of the detected landmarks against the projected ground truth,
AVE-P / MAX-P before -> after refinement, the pair's surface gap after it (mm, 0 when penetrating),
the mean reprojection error (px) of the pair's 3D joints against the detected landmarks before ->
after refinement, and time per stage.
A side that was not found is left out of MPJPE (and I-MPJPE needs both). Also prints the model
loading time, the first image's time and the steady-state time (the frames run a second time);
with ``--write`` these include writing the outputs (rendering), as ``ihmr demo`` does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "src" / "ihmr" / "examples"
DATA = ROOT.parent / "shared" / "data" / "interhand26m_sample"
FRAMES = ("image44669", "image69148")
EXTRA_FRAMES = ("image2017", "image29590")  # single hands, not bundled


def image_path(data: Path, stem: str) -> Path:
    return EXAMPLES / f"{stem}.jpg" if stem in FRAMES else data / f"{stem}.jpg"


def annotations(data: Path):
    """The sample's annotations (``ihmr.data.interhand``: world -> camera, projection, validity)."""
    from ihmr.data.interhand import load_interhand

    return load_interhand(data, split="test", cache_dir=False, warn=False)


def _row(ann, stem: str) -> int:
    return next(i for i, f in enumerate(ann.file_name) if Path(str(f)).stem == stem)


def sidecar(ann, stem: str) -> dict:
    """The bundled sidecar, or the same built from the annotation (box) and camera (focal)."""
    if stem in FRAMES:
        return json.loads((EXAMPLES / f"{stem}.json").read_text())
    i = _row(ann, stem)
    return {"boxes": [ann.bbox[i].tolist()], "focal": float(np.mean([ann.K[i, 0, 0], ann.K[i, 1, 1]]))}


def ground_truth(ann, stem: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joints ``(2, 21, 3)`` metres in camera coordinates (MANO order, 0 = right), valid ``(2, 21)``,
    and the 2D projection ``(2, 21, 2)`` pixels with the data set's intrinsics."""
    i = _row(ann, stem)
    return ann.joints[i], ann.valid_two_hand[i], ann.joints_2d_two_hand[i]


def evaluate(res, gt: np.ndarray, valid: np.ndarray, gt_uv: np.ndarray) -> dict:
    from ihmr.metrics import i_mpjpe, mpjpe, mrrpe

    pred = np.zeros((2, 21, 3))
    uv = np.zeros((2, 21, 2))
    found = np.zeros(2, bool)
    # The paired hands if there is a pair, else the best-scoring hand of each side.
    order = [res.pairs[0].right, res.pairs[0].left] if res.pairs else []
    for s, side in enumerate(("right", "left")):
        idx = [k for k in order if res.hands[k].side == side] or [k for k, h in enumerate(res.hands) if h.side == side]
        if idx:
            pred[s], uv[s], found[s] = res.hands[idx[0]].joints_3d, res.hands[idx[0]].joints_2d, True
    found &= valid.any(1)  # a hand without ground truth (single-hand frames) is not scored
    m = valid & found[:, None]
    out = {"found": found}
    if m.any():
        e = mpjpe(pred[None], gt[None], m[None]).value
        per = [mpjpe(pred[None], gt[None], (m & (np.arange(2)[:, None] == s))[None]).value if found[s] else float("nan") for s in range(2)]
        out.update(mpjpe=e, mpjpe_r=per[0], mpjpe_l=per[1])
        out["err2d"] = [float(np.linalg.norm(uv[s] - gt_uv[s], axis=1).mean()) if found[s] else float("nan") for s in range(2)]
    if found.all():
        out["i_mpjpe"] = i_mpjpe(pred[None], gt[None], m[None]).value
        out["mrrpe"] = mrrpe(pred[None], gt[None], m[None]).value
    if res.pairs:
        out.update(pair_figures(res))
    return out


def pair_figures(res) -> dict:
    """The first pair's surface gap after refinement (mm; 0 when the meshes penetrate) and the mean
    2D reprojection error (px) of its final and its unrefined 3D joints against the detected
    landmarks of both hands."""
    import torch

    from ihmr.collision.distance import surface_gap
    from ihmr.geometry.camera import reprojection_error

    p = res.pairs[0]
    hr, hl = res.hands[p.right], res.hands[p.left]
    v = torch.as_tensor(np.stack([hr.vertices, hl.vertices])[None])
    gap = float(surface_gap(v, torch.as_tensor(res.faces), torch.tensor([p.max_p_mm_after > 0]))[0]) * 1000
    lm = np.stack([hr.joints_2d, hl.joints_2d])
    after = float(reprojection_error(np.stack([hr.joints_3d, hl.joints_3d]), lm, res.K).mean())
    before = float(reprojection_error(p.joints_before, lm, res.K).mean()) if p.joints_before is not None else float("nan")
    return {"gap_mm": gap, "reproj_before": before, "reproj_after": after}


def parse_sample_args(ap: argparse.ArgumentParser, argv, prog: str):
    """Parse ``argv`` (``ap`` has ``--data``), silence RuntimeWarnings; None (and a message) when the
    sample folder is missing."""
    import warnings

    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    if not args.data.is_dir():
        print(f"{prog}: {args.data} not found", file=sys.stderr)
        return None
    return args


def fmt(x, spec=".1f") -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="the InterHand2.6M sample folder")
    ap.add_argument("--no-box", action="store_true", help="also run without the data set's box")
    ap.add_argument("--all", action="store_true", help="also the sample's two single-hand frames (box and focal from the annotation)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the process (the pipeline may set its own)")
    ap.add_argument("--checkpoint", default=None, help="stage I: this stage-I network ('default': the shipped one) instead of MediaPipe + IK")
    ap.add_argument("--write", type=Path, default=None, help="also write the outputs (overlay, views, meshes, JSON) here and time them")
    args = parse_sample_args(ap, argv, "bench_demo")
    if args is None:
        return 2
    t_start = time.perf_counter()
    c_start = time.process_time()
    import torch

    torch.set_num_threads(args.threads)
    from ihmr.io.images import load_image
    from ihmr.pipeline import Reconstructor

    t_import = time.perf_counter() - t_start
    ann = annotations(args.data)
    t0 = time.perf_counter()
    rec = Reconstructor(checkpoint=args.checkpoint)
    t_load = time.perf_counter() - t0
    modes = [True, False] if args.no_box else [True]
    frames = FRAMES + (EXTRA_FRAMES if args.all else ())
    rows, first, steady = [], None, []
    for rep in range(2):
        for use_box in modes:
            for stem in frames:
                side, img = sidecar(ann, stem), load_image(image_path(args.data, stem))
                t0 = time.perf_counter()
                try:
                    res = rec(img, focal=side["focal"], boxes=side["boxes"] if use_box else ())
                    if args.write is not None:
                        from ihmr.pipeline.outputs import write_outputs  # only with --write (the exporter's import)

                        tw = time.perf_counter()
                        write_outputs(res, img, args.write / f"{stem}_{'box' if use_box else 'nobox'}", image_name=stem)
                        res.timings_s["write"] = time.perf_counter() - tw
                except Exception as e:  # noqa: BLE001 - a benchmark row, not a crash
                    res, err = None, f"{type(e).__name__}: {e}".split(" (tried")[0]
                dt = time.perf_counter() - t0
                if first is None:
                    first = dt
                elif rep == 1:
                    steady.append(dt)
                if rep == 1:
                    continue
                gt, valid, gt_uv = ground_truth(ann, stem)
                if res is None:
                    rows.append((stem, "box" if use_box else "none", err, *["-"] * 10, f"{dt:.2f}", "-"))
                    continue
                ev = evaluate(res, gt, valid, gt_uv)
                hands = ", ".join(f"{h.side[0].upper()}:{h.source}" for h in res.hands)
                pen = "; ".join(f"{p.ave_p_mm_before:.2f}/{p.max_p_mm_before:.1f} -> {p.ave_p_mm_after:.2f}/{p.max_p_mm_after:.1f}" for p in res.pairs) or "-"
                stages = " ".join(f"{k} {v:.2f}" for k, v in res.timings_s.items())
                e2 = ev.get("err2d", [float("nan")] * 2)
                rows.append((stem, "box" if use_box else "none", f"{len(res.hands)} ({hands})", fmt(ev.get("mpjpe")),
                             fmt(ev.get("mpjpe_r")), fmt(ev.get("mpjpe_l")), fmt(ev.get("i_mpjpe")), fmt(ev.get("mrrpe")),
                             f"{fmt(e2[0])} / {fmt(e2[1])}", pen, fmt(ev.get("gap_mm")),
                             f"{fmt(ev.get('reproj_before'))} -> {fmt(ev.get('reproj_after'))}" if res.pairs else "-",
                             str(len(res.pairs)), f"{dt:.2f}", stages))
    print("| image | box | hands found (side:source) | MPJPE mm | R | L | I-MPJPE mm | MRRPE mm | 2D err px R / L "
          "| AVE-P/MAX-P mm before -> after | gap mm | reproj px before -> after | pairs | s | stages s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\nimports {t_import:.2f} s, model loading {t_load:.2f} s, first image {first:.2f} s, "
          f"steady state {np.mean(steady):.2f} s per image (mean of {len(steady)}, max {np.max(steady):.2f} s); "
          f"torch threads {torch.get_num_threads()}; process CPU time {time.process_time() - c_start:.1f} s, "
          f"wall {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
