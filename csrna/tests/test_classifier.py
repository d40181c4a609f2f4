"""Tests for csrna.fold.network and csrna.fold.classifier."""

from __future__ import annotations

import numpy as np
import pytest
from _fold_data import CS2BPS, needs_data

from csrna.fold.classifier import (
    Ensemble,
    load_ensemble,
    load_reference,
    save_ensemble,
    train_ensemble,
)
from csrna.fold.features import raw_features, read_ss_table_1
from csrna.fold.network import _gradients, init_mlp, train_mlp


def test_backprop_matches_finite_differences():
    rng = np.random.default_rng(0)
    net = init_mlp(5, rng, hidden=(4, 3))
    net.biases = [rng.normal(0.0, 0.3, b.shape) for b in net.biases]  # no relu exactly at 0
    x, y = rng.standard_normal((7, 5)), (rng.random(7) > 0.5).astype(float)

    def loss():
        p = np.clip(net.predict(x), 1e-12, 1 - 1e-12)
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))

    grads = _gradients(net, x, y, 0.0, rng)
    params = [p for pair in zip(net.kernels, net.biases, strict=True) for p in pair]
    for p, g in zip(params, grads, strict=True):
        idx = (0,) * p.ndim
        old = p[idx]
        p[idx] = old + 1e-6
        up = loss()
        p[idx] = old - 1e-6
        down = loss()
        p[idx] = old
        assert (up - down) / 2e-6 == pytest.approx(g[idx], rel=1e-4, abs=1e-9)


def test_training_learns_a_separable_problem_and_is_seeded():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 6))
    y = (x[:, 0] - x[:, 1] > 0).astype(float)
    a = train_mlp(x, y, seed=3, epochs=15)
    b = train_mlp(x, y, seed=3, epochs=15)
    assert np.array_equal(a.predict(x), b.predict(x))
    assert ((a.predict(x) > 0.5) == y).mean() > 0.95
    assert all(np.sqrt((w * w).sum(axis=0)).max() <= 3.0 + 1e-9 for w in a.kernels[:-1])


def test_shipped_ensemble_shapes_and_roundtrip(tmp_path):
    ens = load_ensemble()
    assert len(ens.nets) == 6 and ens.mean.shape == (57,) and ens.std.shape == (57,)
    assert [w.shape for w in ens.nets[0].kernels] == [(71, 70), (70, 16), (16, 1)]
    save_ensemble(tmp_path / "e.npz", ens)
    again = load_ensemble(tmp_path / "e.npz")
    x = np.random.default_rng(0).standard_normal((5, 71))
    assert np.allclose(again.predict(x), ens.predict(x), atol=1e-6)
    shifts, names, ids = load_reference()
    assert shifts.shape == (3352, 19) and set(names) == set("ACGU") and len(set(ids)) == 108
    with pytest.raises(ValueError, match="71"):
        ens.predict(np.zeros((2, 70)))
    with pytest.raises(FileNotFoundError):
        load_ensemble(tmp_path / "missing.npz")


@needs_data
def test_shipped_ensemble_fits_training_table_and_retrains_reproducibly():
    t1 = read_ss_table_1(CS2BPS / "ss_table_1.txt")
    raw, y = raw_features(t1), t1["class"].to_numpy()
    assert ((load_ensemble().predict(raw) > 0.5) == y).mean() > 0.95
    small = train_ensemble(t1, n_models=1, epochs=2, seed=0)
    again = train_ensemble(t1, n_models=1, epochs=2, seed=0)
    assert isinstance(small, Ensemble)
    assert np.array_equal(small.predict(raw[:50]), again.predict(raw[:50]))


@needs_data
@pytest.mark.slow
def test_retraining_reproduces_shipped_weights():
    """The shipped npz is exactly what `python -m csrna.fold.classifier` builds (float32)."""
    t1 = read_ss_table_1(CS2BPS / "ss_table_1.txt")
    fresh = train_ensemble(t1)
    shipped = load_ensemble()
    x = raw_features(t1)
    assert np.allclose(fresh.predict(x), shipped.predict(x), atol=1e-4)
