"""Visualisation: mesh export (OBJ / PLY / GLB) and a small offscreen renderer."""

from ihmr.viz.export import HAND_COLORS, atomic_write, export_hand, export_hands

__all__ = ["HAND_COLORS", "atomic_write", "export_hand", "export_hands"]
