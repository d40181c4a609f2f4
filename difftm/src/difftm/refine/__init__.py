"""Local refinement of detected particles: one differentiable scorer, grid and gradient
optimisers (see :mod:`difftm.refine.scorer` and :mod:`difftm.refine.optimize`)."""
