"""The image front end's hand detector (MediaPipe Hands' models): see :mod:`ihmr.detect.hands`."""

from ihmr.detect.anchors import palm_anchors
from ihmr.detect.hands import PARTNER_DIST, HandDetector
from ihmr.detect.landmarks import CHIRALITY_MIN, Detections, HandDetection, chirality, chirality_side, landmark_roi, overlap
from ihmr.detect.tracking import SAME_HAND, SAME_HAND_ALWAYS, merge_hands, same_hand, track

__all__ = ["CHIRALITY_MIN", "PARTNER_DIST", "SAME_HAND", "SAME_HAND_ALWAYS", "Detections", "HandDetection", "HandDetector",
           "chirality", "chirality_side", "landmark_roi", "merge_hands", "overlap", "palm_anchors", "same_hand", "track"]
