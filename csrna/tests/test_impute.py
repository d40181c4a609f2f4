"""Tests for csrna.fold.impute (MICE with predictive mean matching)."""

from __future__ import annotations

import numpy as np
import pytest

from csrna.fold.impute import impute_with_reference, mice_pmm


def _correlated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 1))
    names = rng.choice(list("ACGU"), size=n)
    offset = np.array([{"A": 0.0, "C": 1.0, "G": 2.0, "U": 3.0}[c] for c in names])[:, None]
    noise = 0.1 * rng.standard_normal((n, 4))
    x = np.hstack([z + offset, 2 * z - offset, -z, z * 0.5 + 10]) + noise
    return x, names


def test_reproducible_and_keeps_observed_values():
    x, names = _correlated(300, 0)
    holes = x.copy()
    mask = np.random.default_rng(1).random(x.shape) < 0.2
    holes[mask] = np.nan
    a = mice_pmm(holes, names, m=3, maxit=4, seed=7)
    b = mice_pmm(holes, names, m=3, maxit=4, seed=7)
    c = mice_pmm(holes, names, m=3, maxit=4, seed=8)
    assert a.shape == (3, 300, 4) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(a[:, ~mask], np.broadcast_to(x[~mask], a[:, ~mask].shape))
    # predictive mean matching copies observed values of the same column
    for j in range(4):
        donors = set(holes[~mask[:, j], j])
        assert set(a[0][mask[:, j], j]) <= donors


def test_pmm_beats_mean_imputation_on_correlated_data():
    ref, ref_names = _correlated(2000, 2)
    target, names = _correlated(60, 3)
    holes = target.copy()
    mask = np.random.default_rng(4).random(target.shape) < 0.3
    mask[:, 0] = False
    holes[mask] = np.nan
    out = impute_with_reference(holes, names, ref, ref_names, m=5, maxit=5, seed=1)
    err_pmm = np.abs(out - target)[mask].mean()
    err_mean = np.abs(np.broadcast_to(ref.mean(axis=0), target.shape) - target)[mask].mean()
    assert err_pmm < 0.5 * err_mean
    assert np.array_equal(out[~mask], target[~mask])


def test_combine_options_and_errors():
    ref, ref_names = _correlated(200, 5)
    target, names = _correlated(10, 6)
    holes = target.copy()
    holes[0, 1] = np.nan
    med = impute_with_reference(holes, names, ref, ref_names, m=3, maxit=2, combine="median")
    mean = impute_with_reference(holes, names, ref, ref_names, m=3, maxit=2, combine="mean")
    assert np.isfinite(med).all() and np.isfinite(mean).all()
    every = impute_with_reference(holes, names, ref, ref_names, m=3, maxit=2, combine="none")
    assert every.shape == (3, *holes.shape)
    assert np.array_equal(np.median(every, axis=0), med)
    assert np.array_equal(impute_with_reference(target, names, ref, ref_names, combine="none"),
                          target[None])
    assert np.array_equal(impute_with_reference(target, names, ref, ref_names), target)
    with pytest.raises(ValueError, match="combine"):
        impute_with_reference(holes, names, ref, ref_names, combine="mode")
    empty = np.full((5, 2), np.nan)
    with pytest.raises(ValueError, match="no observed value"):
        mice_pmm(empty, np.array(list("ACGUA")))
