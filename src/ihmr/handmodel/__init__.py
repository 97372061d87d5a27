"""Hand models: the pure LBS core, single-hand and two-hand layers, model loaders."""

from ihmr.handmodel.data import HandModelData
from ihmr.handmodel.layer import HandLayer, HandOutput
from ihmr.handmodel.two_hands import TwoHands, TwoHandsOutput, load_hand_data, load_hand_model, model_info

__all__ = [
    "HandModelData",
    "HandLayer",
    "HandOutput",
    "TwoHands",
    "TwoHandsOutput",
    "load_hand_data",
    "load_hand_model",
    "model_info",
]
