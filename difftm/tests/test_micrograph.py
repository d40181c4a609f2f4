"""Synthetic micrographs: determinism, truth, contrast sign, counts, background, errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from difftm.geometry.euler import euler_to_matrix
from difftm.physics.ctf import ctf_2d
from difftm.simulate.micrograph import (
    TRUTH_COLUMNS,
    prepare_background,
    project_volume,
    random_orientations,
    simulate_micrograph,
)

_DEFAULT_SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SHARED = Path(os.environ.get("DIFFTM_SHARED_DATA", _DEFAULT_SHARED))
MICROGRAPH = SHARED / "micrographs" / "Ucsf_stack_1142_DW.mrc"

BOX = 48
PX = 2.0


def blob_template(box: int = BOX, n_blobs: int = 12, width: float = 2.0, seed: int = 3):
    """An asymmetric cluster of Gaussian blobs (peak about 4 V each), centre at box//2."""
    g = torch.arange(box, dtype=torch.float32) - box // 2
    z, y, x = torch.meshgrid(g, g, g, indexing="ij")
    rng = np.random.default_rng(seed)
    vol = torch.zeros(box, box, box)
    for cx, cy, cz in rng.uniform(-box / 5, box / 5, (n_blobs, 3)):
        vol += 4.0 * torch.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * width**2))
    return vol


@pytest.fixture(scope="module")
def template():
    return blob_template()


@pytest.fixture(scope="module")
def sim(template):
    return simulate_micrograph(
        template, PX, (384, 400), 8, defocus=12000.0, fluence=30.0, seed=1, defocus_spread=200.0
    )


def _ctf_filtered_projection(volume, angles, defocus, padded=128):
    d = volume.shape[0]
    proj = project_volume(volume, euler_to_matrix(torch.tensor(angles)).float())
    box = torch.zeros(padded, padded)
    lo = padded // 2 - d // 2
    box[lo : lo + d, lo : lo + d] = proj
    ctf = ctf_2d((padded, padded), PX, defocus, defocus, 0.0, 300.0, 2.7, 0.07)
    out = torch.fft.irfft2(torch.fft.rfft2(box) * ctf, s=(padded, padded))
    return out[lo : lo + d, lo : lo + d].numpy()


def _pearson(a, b):
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _crop(image, x, y, d=BOX):
    return image[y - d // 2 : y - d // 2 + d, x - d // 2 : x - d // 2 + d]


def test_same_seed_same_result(template, sim):
    again = simulate_micrograph(
        template, PX, (384, 400), 8, defocus=12000.0, fluence=30.0, seed=1, defocus_spread=200.0
    )
    np.testing.assert_array_equal(again.image, sim.image)
    assert again.truth.equals(sim.truth)
    other = simulate_micrograph(
        template, PX, (384, 400), 8, defocus=12000.0, fluence=30.0, seed=2, defocus_spread=200.0
    )
    assert not np.array_equal(other.image, sim.image)
    assert not np.array_equal(other.truth[["x", "y"]].to_numpy(), sim.truth[["x", "y"]].to_numpy())


def test_truth_table(sim):
    t = sim.truth
    assert list(t.columns) == list(TRUTH_COLUMNS) and len(t) == 8
    half = BOX // 2
    assert (t.x >= half).all() and (t.x <= 400 - BOX + half).all()
    assert (t.y >= half).all() and (t.y <= 384 - BOX + half).all()
    xy = t[["x", "y"]].to_numpy(float)
    dist = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1)) + np.eye(len(xy)) * 1e9
    assert dist.min() >= sim.params["min_separation_px"]
    assert t.defocus_u.std() > 50  # the spread was applied
    assert sim.image.dtype == np.float32 and sim.image.shape == (384, 400)


def test_truth_matches_image(template, sim):
    """Each particle's CTF-filtered projection at the recorded pose matches the noiseless
    image at the recorded centre, better than a shifted centre, a wrong pose or defocus."""
    contrast = sim.noiseless / sim.params["mean_counts"] - 1.0
    for r in sim.truth.itertuples():
        angles = (r.rot, r.tilt, r.psi)
        expected = _ctf_filtered_projection(template, angles, r.defocus_u)
        here = _pearson(expected, _crop(contrast, r.x, r.y))
        shifted = _pearson(expected, _crop(contrast, r.x + 2, r.y))
        wrong_pose = _pearson(
            _ctf_filtered_projection(template, (r.rot + 40, r.tilt, r.psi), r.defocus_u),
            _crop(contrast, r.x, r.y),
        )
        wrong_df = _pearson(
            _ctf_filtered_projection(template, angles, r.defocus_u + 3000),
            _crop(contrast, r.x, r.y),
        )
        assert here > 0.85, (r.Index, here)
        assert here > shifted + 0.1 and here > wrong_pose + 0.1 and here > wrong_df


def test_dark_particles_at_underfocus_bright_at_overfocus():
    smooth = blob_template(n_blobs=6, width=4.0)
    for defocus, sign in ((15000.0, -1), (-15000.0, 1)):
        s = simulate_micrograph(smooth, PX, (256, 256), 4, defocus=defocus, fluence=30.0,
                                seed=5, shot_noise=False)
        c = s.noiseless / s.params["mean_counts"] - 1.0
        for r in s.truth.itertuples():
            centre = c[r.y - 4 : r.y + 5, r.x - 4 : r.x + 5].mean()
            assert sign * centre > 1e-3, (defocus, centre)
        np.testing.assert_array_equal(s.image, s.noiseless)  # no shot noise asked for


def test_counts_mean_and_shot_noise(sim):
    n0 = 30.0 * PX**2
    assert sim.params["mean_counts"] == n0
    assert abs(sim.image.mean(dtype=np.float64) - n0) < 0.01 * n0
    # Poisson: variance = mean away from particles; integer counts
    far = np.ones(sim.image.shape, bool)
    yy, xx = np.mgrid[: sim.image.shape[0], : sim.image.shape[1]]
    for r in sim.truth.itertuples():
        far &= (yy - r.y) ** 2 + (xx - r.x) ** 2 > 60**2
    assert far.sum() > 5000
    values = sim.image[far].astype(np.float64)
    assert values.var() == pytest.approx(n0, rel=0.1)
    np.testing.assert_array_equal(sim.image, np.round(sim.image))


def test_haar_orientations():
    angles = random_orientations(4000, np.random.default_rng(0))
    rot, tilt, psi = angles.T
    # Haar measure: cos(tilt) uniform on [-1, 1], rot and psi uniform on (-180, 180]
    assert stats.kstest(np.cos(np.deg2rad(tilt)), "uniform", args=(-1, 2)).pvalue > 1e-3
    assert stats.kstest(rot, "uniform", args=(-180, 360)).pvalue > 1e-3
    assert stats.kstest(psi, "uniform", args=(-180, 360)).pvalue > 1e-3
    # a non-uniform sampler (uniform tilt) is rejected by the same test
    bad = np.random.default_rng(0).uniform(0, 180, 4000)
    assert stats.kstest(np.cos(np.deg2rad(bad)), "uniform", args=(-1, 2)).pvalue < 1e-3


def test_projection_convention():
    d = 32
    c = d // 2
    vol = torch.zeros(d, d, d)
    vol[c, c, c + 5] = 1.0  # voxel at x = +5
    # rot = 90: A = Rz(90) (RELION passive) maps (5, 0, 0) to (0, -5, 0)
    proj = project_volume(vol, euler_to_matrix(torch.tensor([90.0, 0.0, 0.0])).float())
    iy, ix = np.unravel_index(int(proj.argmax()), proj.shape)
    assert (ix - c, iy - c) == (0, -5)
    assert float(proj.sum()) == pytest.approx(1.0, abs=1e-4)


def test_background_texture():
    small = np.arange(30 * 20, dtype=float).reshape(30, 20) ** 1.5
    b = prepare_background(small, (70, 45))
    assert b.shape == (70, 45)
    assert b.mean() == pytest.approx(0.0, abs=1e-9) and b.std() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="constant"):
        prepare_background(np.ones((10, 10)), (5, 5))


def test_real_background(template):
    if not MICROGRAPH.exists():
        pytest.skip(f"shared test data not found at {MICROGRAPH}")
    from difftm.io.mrc import read_mrc

    real = read_mrc(MICROGRAPH).data
    s = simulate_micrograph(template, PX, (300, 320), 0, defocus=10000.0, fluence=25.0,
                            seed=4, background=real, background_scale=1.5)
    n0 = 25.0 * PX**2
    assert s.image.mean(dtype=np.float64) == pytest.approx(n0, rel=0.01)
    assert s.image.var(dtype=np.float64) == pytest.approx(n0 * (1 + 1.5**2), rel=0.1)
    # the texture is the real image (centre crop), not white noise
    texture = (s.image - s.noiseless) / (1.5 * np.sqrt(n0))
    crop = real[313:613, 319:639].astype(np.float64)
    assert _pearson(texture.astype(np.float64), crop) > 0.7


def test_bad_inputs(template):
    with pytest.raises(ValueError, match="smaller than the template"):
        simulate_micrograph(template, PX, (40, 400), 1, defocus=1e4)
    with pytest.raises(ValueError, match="pixel size"):
        simulate_micrograph(template, -1.0, (100, 100), 1, defocus=1e4)
    with pytest.raises(ValueError, match="cannot fit"):  # refused before any placement
        simulate_micrograph(template, PX, (100, 100), 50, defocus=1e4)
    with pytest.raises(ValueError, match="cubic"):
        simulate_micrograph(torch.zeros(4, 5, 6), PX, (100, 100), 1, defocus=1e4)


def test_absolute_contrast_scale(template):
    """The image integral of the contrast is the CTF's zero-frequency value (-A) times
    2 * sigma_e * pixel_size * (sum of the potential): checks units and scaling."""
    from difftm.physics.electron import interaction_constant

    s = simulate_micrograph(template, PX, (400, 400), 1, defocus=8000.0, fluence=30.0,
                            seed=2, shot_noise=False, amplitude_contrast=0.1)
    contrast = s.noiseless.astype(np.float64) / s.params["mean_counts"] - 1.0
    expected = -2.0 * 0.1 * interaction_constant(300.0) * PX * float(template.sum())
    assert contrast.sum() == pytest.approx(expected, rel=0.02)
    assert s.params["sigma_e"] == pytest.approx(interaction_constant(300.0))


def test_impossible_particle_count_is_refused_at_once(template):
    """A million particles in a small image: refused by the packing bound before placing
    (the placement loop used to try 200 x n times, each against every placed particle)."""
    import time

    start = time.perf_counter()
    with pytest.raises(ValueError, match="cannot fit"):
        simulate_micrograph(template, PX, (100, 100), 1_000_000, defocus=1e4)
    assert time.perf_counter() - start < 5.0
