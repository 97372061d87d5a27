"""The paper's experiments: evaluation tables of stage I with the refiners (:mod:`.evaluation`)."""
