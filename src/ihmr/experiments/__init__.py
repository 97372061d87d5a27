"""The paper's experiments: the ``ihmr eval`` tables of stage I with the refiners
(:mod:`.evaluation`), the synthetic refinement benchmark of ``ihmr bench refine`` (Tables 1, 3, 4,
A.4: :mod:`.refine_tables`) and refining stored predictions (``ihmr refine``: :mod:`.refine_runs`)."""
