"""CS-Fold: secondary structure from chemical shifts.

Reading order (each module uses only the ones before it):
:mod:`~csrna.fold.impute` (missing shifts, MICE-PMM) -> :mod:`~csrna.fold.features`
(71 features) -> :mod:`~csrna.fold.network` / :mod:`~csrna.fold.classifier` (P(unpaired)) ->
:mod:`~csrna.fold.probknot` / :mod:`~csrna.fold.folding` (restrained ViennaRNA candidates) ->
:mod:`~csrna.fold.pipeline` (selection, :func:`cs_fold`) -> :mod:`~csrna.fold.figure`.
"""

from csrna.fold.pipeline import MODES, CSFoldResult, cs_fold

__all__ = ["MODES", "CSFoldResult", "cs_fold"]
