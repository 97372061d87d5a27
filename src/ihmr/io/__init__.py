"""File formats and safe writing: atomic writes (:mod:`ihmr.io.files`), images
(:mod:`ihmr.io.images`), the refinement ``.npz`` format (:mod:`ihmr.io.npz`) and checkpoints
(:mod:`ihmr.io.checkpoints`)."""
