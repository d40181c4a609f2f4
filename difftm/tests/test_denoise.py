"""The denoiser studied for the coarse pass (not used by the search: docs/ACCELERATED.md):
tiled inference, training, weights files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from difftm.denoise.model import Denoiser, denoise, load_denoiser, normalise, save_denoiser
from difftm.denoise.train import TrainingSettings, train_denoiser, training_pairs

from model_files import model_path


def _random_model(seed: int = 0) -> Denoiser:
    torch.manual_seed(seed)
    return Denoiser(width=8, depth=5).eval()


def test_tiles_give_the_one_pass_result():
    """The tile margin covers the receptive field: any tile size gives the same image (a
    margin one pixel short would differ at every tile seam)."""
    model = _random_model()
    img = np.random.default_rng(0).normal(size=(150, 130)).astype(np.float32)
    one = denoise(img, model, tile=1024)
    for tile in (32, 47, 64):
        assert np.allclose(denoise(img, model, tile=tile), one, atol=1e-5)
    assert model.receptive_radius == 5


def test_normalise_is_zero_mean_unit_sd():
    x, mean, sd = normalise(np.arange(100.0).reshape(10, 10) * 3 + 7)
    assert abs(float(x.mean())) < 1e-6 and float(x.std()) == pytest.approx(1.0, rel=1e-5)
    assert mean == pytest.approx(3 * 49.5 + 7)


def test_training_lowers_the_error_on_simulated_pairs(tmp_path):
    """A few steps on micrographs of 1UBI already predict the clean image better than the
    noisy input (and better than the untrained network)."""
    settings = TrainingSettings(pixel_sizes=(2.0,), micrographs=2, size=96, particles=2,
                                steps=60, batch=4, patch=48, width=8, depth=4, seed=1)
    pairs = training_pairs([model_path("1ubi.pdb.gz")], settings)
    noisy, clean = pairs[0]
    assert noisy.shape == clean.shape and abs(float(noisy.mean())) < 1e-5
    torch.manual_seed(settings.seed)
    untrained = Denoiser(settings.width, settings.depth).eval()
    model = train_denoiser(pairs, settings)

    def mse(m):
        out = denoise(noisy, m)
        return float(np.mean((out - clean) ** 2))

    identity = float(np.mean((noisy - clean) ** 2))
    assert mse(model) < 0.7 * identity
    assert mse(model) < mse(untrained)
    # deterministic for a seed
    again = train_denoiser(pairs, settings)
    assert np.array_equal(denoise(noisy, again), denoise(noisy, model))


def test_weights_round_trip_and_bad_files(tmp_path):
    model = _random_model(3)
    path = tmp_path / "w.pt"
    save_denoiser(model, path, {"models": ["a.pdb"]})
    back, info = load_denoiser(path)
    img = np.random.default_rng(1).normal(size=(40, 40)).astype(np.float32)
    assert np.array_equal(denoise(img, back), denoise(img, model))
    assert info["models"] == ["a.pdb"]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_denoiser(bad)
    with pytest.raises(FileNotFoundError, match="none.pt"):
        load_denoiser(tmp_path / "none.pt")
