"""The accelerated 2DTM search (DiffTM): :mod:`difftm.accelerate.search` holds the method
(coarse grid and low-pass, candidate threshold, refinement schedule, merged maps) and
:mod:`difftm.accelerate.run` runs it inside :func:`difftm.search.engine.run_search` for
``--strategy accelerated``. It builds on :mod:`difftm.refine` (the one scorer), so it sits
below it in the layers; the engine imports it lazily, only for that strategy."""
