"""CS-BME: ensembles of secondary structures reweighted by chemical shifts.

Reading order: :mod:`~csrna.ensemble.ss_features` (SS2CS features) ->
:mod:`~csrna.ensemble.shiftpred` (shift predictor) -> :mod:`~csrna.ensemble.library`
(candidate structures) -> :mod:`~csrna.ensemble.observables` (predicted vs measured shifts)
-> :mod:`~csrna.ensemble.bme` (reweighting), :mod:`~csrna.ensemble.bme_io` (BME files).
"""

from csrna.ensemble.observables import (
    UNCERTAINTY,
    match_observables,
    pair_probability_matrix,
    plot_pair_probabilities,
    predict_library,
    uncertainty,
)

__all__ = ["UNCERTAINTY", "match_observables", "pair_probability_matrix",
           "plot_pair_probabilities", "predict_library", "uncertainty"]
