"""Visualisation: mesh export (OBJ / PLY / GLB) and a small offscreen renderer."""

from ihmr.viz.export import HAND_COLORS, export_hand, export_hands

__all__ = ["HAND_COLORS", "export_hand", "export_hands"]
