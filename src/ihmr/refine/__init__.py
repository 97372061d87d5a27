"""Stage II: factorized refinement with verification (Algorithm 1) and the OPT refiner."""

from ihmr.refine.factorized import FACTORS, RefineConfig, RefineResult, default_weights, refine_opt
from ihmr.refine.objective import TERMS, Targets, finger_term, joint_error

__all__ = ["FACTORS", "TERMS", "RefineConfig", "RefineResult", "Targets", "default_weights", "finger_term", "joint_error", "refine_opt"]
