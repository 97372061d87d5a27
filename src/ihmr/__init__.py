"""ihmr: two interacting 3D hands from one RGB image, collision-free.

Public API::

    hands = ihmr.TwoHands(model="open")          # or a folder with MANO_RIGHT.pkl / MANO_LEFT.pkl
    out = hands(beta, phi, theta, tau)           # out.vertices (B,2,V,3), out.joints (B,2,21,3), metres
    right = ihmr.load_hand_model("open", side="right")
"""

from ihmr.errors import IhmrError, InputError, ModelFileError, UnsafePickleError
from ihmr.handmodel import HandLayer, HandModelData, TwoHands, TwoHandsOutput, load_hand_model
from ihmr.pipeline import reconstruct
from ihmr.version import __version__

__all__ = [
    "IhmrError",
    "InputError",
    "ModelFileError",
    "UnsafePickleError",
    "HandLayer",
    "HandModelData",
    "TwoHands",
    "TwoHandsOutput",
    "load_hand_model",
    "reconstruct",
    "__version__",
]
