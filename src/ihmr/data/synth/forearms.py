"""Forearms of ``ihmr synth``: elliptic tubes continuing each wrist (random wrist bend, length and
girth, half of them in sleeves), dropped where they would pass through a hand, the other forearm or
the camera. World frame, metres.

A forearm is a dict: ``hand`` (0 right, 1 left), ``start (3,)`` (the tube's start, just inside the
wrist opening), orthonormal ``a (3,)`` (axis, away from the hand), ``u (3,)``, ``v (3,)`` (the
cross-section's axes), ``length`` (m), ``r0`` (semi-axes along ``u``, ``v`` at the start, m),
``growth`` (relative thickening over :data:`ARM_RAMP`) and ``sleeve`` (None, or about how many
metres of bare skin the forearm shows before its sleeve starts).
"""

from __future__ import annotations

import numpy as np
import torch

from ihmr.geometry.rotations import axis_angle_to_matrix

__all__ = ["ARM_RAMP", "arm_radii", "tube", "inside_tube", "random_forearms", "arm_sees_camera", "arm_meshes"]

#: Forearms thicken over this length from the wrist (m), then keep their girth.
ARM_RAMP = 0.2


def arm_radii(t: np.ndarray, r0: tuple[float, float], growth: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Semi-axes ``(ru, rv)`` (m, shaped like ``t``) at distances ``t`` (m) along the tube."""
    f = np.clip(t / ARM_RAMP, 0.0, 1.0)
    return r0[0] * (1 + growth[0] * f), r0[1] * (1 + growth[1] * f)


def tube(start: np.ndarray, a: np.ndarray, u: np.ndarray, v: np.ndarray, length: float, r0: tuple[float, float],
         growth: tuple[float, float], segs: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """A closed elliptic tube along ``a`` from ``start``: semi-axes ``r0`` along ``u``, ``v`` growing by
    ``growth`` (relative) over the first :data:`ARM_RAMP` metres. ``(vertices, faces)``, outward."""
    ang = np.linspace(0.0, 2 * np.pi, segs, endpoint=False)
    ts = np.unique(np.clip(np.array([0.0, 0.03, 0.07, 0.12, 0.17, ARM_RAMP, length]), 0.0, length))
    ru, rv = arm_radii(ts, r0, growth)
    ring = (start[None, None] + ts[:, None, None] * a
            + (ru[:, None, None] * np.cos(ang)[None, :, None]) * u + (rv[:, None, None] * np.sin(ang)[None, :, None]) * v)
    rings = len(ts) - 1
    verts = [ring.reshape(-1, 3)]
    faces = []
    for i in range(rings):
        for k in range(segs):
            a0, a1 = i * segs + k, i * segs + (k + 1) % segs
            b0, b1 = a0 + segs, a1 + segs
            faces += [[a0, b0, a1], [a1, b0, b1]]
    count = ring.shape[0] * segs
    for end, sign in ((0, -1), (rings, 1)):  # caps with their own vertices (flat normals)
        verts.append(np.concatenate([ring[end].mean(0, keepdims=True), ring[end]]))
        for k in range(segs):
            f = [count, count + 1 + k, count + 1 + (k + 1) % segs]
            faces.append(f if sign < 0 else f[::-1])
        count += segs + 1
    V = np.concatenate(verts)
    F = np.asarray(faces, dtype=np.int64)
    if np.dot(np.cross(u, v), a) > 0:  # the winding above is inward for a right-handed (u, v, a)
        F = F[:, ::-1]
    return V, F


def inside_tube(points: np.ndarray, start: np.ndarray, a: np.ndarray, u: np.ndarray, v: np.ndarray, length: float,
                r0: tuple[float, float], growth: tuple[float, float], pad: float) -> np.ndarray:
    """``(N,)`` bool: which ``points (N, 3)`` lie inside the tube of :func:`tube` grown by ``pad`` (m)
    all round (ends included)."""
    d = points - start
    t = d @ a
    ru, rv = arm_radii(t, r0, growth)
    return (t > -pad) & (t < length + pad) & (((d @ u) / (ru + pad)) ** 2 + ((d @ v) / (rv + pad)) ** 2 < 1.0)


def random_forearms(rng: np.random.Generator, V: np.ndarray, J: np.ndarray, ring: np.ndarray) -> list[dict]:
    """Forearms continuing each wrist (random wrist bend, length, optional sleeve), dropped where they
    would pass through the other hand, the hand's own fingers or the other forearm. World metres;
    ``V (2, V, 3)`` and ``J (2, 21, 3)`` (MANO order) the hands; ``ring``: indices of the vertices around
    the wrist opening."""
    arms: list[dict] = []
    for h in range(2):
        w = J[h, 0]
        a0 = w - J[h, 4]  # middle-finger base -> wrist
        a0 /= np.linalg.norm(a0)
        lat = J[h, 1] - J[h, 7]  # index base - pinky base
        lat -= (lat @ a0) * a0
        lat /= np.linalg.norm(lat)
        tries = 0
        while tries < 8:
            tries += 1
            nrm = np.cross(a0, lat)
            rot = axis_angle_to_matrix(torch.tensor(lat * rng.normal(0, 0.35) + nrm * rng.normal(0, 0.2))).numpy()
            a = rot @ a0
            u = lat - (lat @ a) * a
            u /= np.linalg.norm(u)
            v = np.cross(a, u)
            wr = V[h][ring]
            s_max = float(((wr - w) @ a).max())
            pu, pv = np.abs((wr - w) @ u), np.abs((wr - w) @ v)
            r0 = (max(float(pu.max()) * 0.93, 0.014), max(float(pv.max()) * 0.9, 0.009))
            growth = (rng.uniform(0.1, 0.3), rng.uniform(0.35, 0.75))
            start = w + (s_max - 0.014) * a
            length = rng.uniform(0.6, 0.85)
            # The other hand (with room for a sleeve), and this hand's fingers curled back past the wrist.
            if inside_tube(V[1 - h], start, a, u, v, length, r0, growth, 0.006).any():
                continue
            own = V[h][(V[h] - start) @ a > 0.02]
            if own.size and inside_tube(own, start, a, u, v, length, r0, growth, 0.002).any():
                continue
            ok = True
            for b in arms:  # the other forearm: sample its axis and surface roughly
                axis = b["start"][None] + np.linspace(0, b["length"], 24)[:, None] * b["a"]
                if inside_tube(axis, start, a, u, v, length, r0, growth, max(b["r0"]) * 1.3).any():
                    ok = False
            if not ok:
                continue
            sleeve = rng.uniform(0.03, 0.12) if rng.random() < 0.5 else None
            arms.append(dict(hand=h, start=start, a=a, u=u, v=v, length=length, r0=r0, growth=growth, sleeve=sleeve))
            break
    return arms


def arm_sees_camera(arm: dict, eye: np.ndarray, look: np.ndarray) -> bool:
    """Keep a forearm only if it does not point at the camera nor pass near it."""
    view = (look - eye) / np.linalg.norm(look - eye)
    if float(arm["a"] @ view) < -0.25:
        return False
    near = inside_tube(eye[None], arm["start"], arm["a"], arm["u"], arm["v"], arm["length"] + 0.05, arm["r0"], arm["growth"], 0.05)
    return not bool(near.any())


def arm_meshes(arm: dict, sleeve_pad: float = 1.12) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Skin part and (optional) sleeve part of a forearm: ``[(vertices, faces, "skin" | "sleeve")]``."""
    L, r0, g = arm["length"], arm["r0"], arm["growth"]
    if arm["sleeve"] is None:
        V, F = tube(arm["start"], arm["a"], arm["u"], arm["v"], L, r0, g)
        return [(V, F, "skin")]
    cut = min(float(arm["sleeve"]) + 0.014, L * 0.8)
    Vs, Fs = tube(arm["start"], arm["a"], arm["u"], arm["v"], cut + 0.01, r0, g)
    ru, rv = arm_radii(np.array(cut), r0, g)
    # The sleeve: a little wider than the arm where it starts, then the arm's own growth.
    r1 = (float(ru) * sleeve_pad, float(rv) * sleeve_pad)
    f = min(cut / ARM_RAMP, 1.0)
    g1 = ((1 + g[0]) / (1 + g[0] * f) - 1, (1 + g[1]) / (1 + g[1] * f) - 1)
    Vc, Fc = tube(arm["start"] + cut * arm["a"], arm["a"], arm["u"], arm["v"], L - cut, r1, g1)
    return [(Vs, Fs, "skin"), (Vc, Fc, "sleeve")]
