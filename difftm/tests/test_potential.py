"""Electrostatic potential from atoms: integral, amplitude, centring, orientation, limits."""

import math
import time

import numpy as np
import pytest
import torch

from difftm.io.models import Atoms, load_model
from difftm.physics import potential
from difftm.physics.electron import POTENTIAL_PER_SCATTERING_FACTOR
from difftm.physics.potential import potential_integral, simulate_potential
from difftm.physics.scattering import peng_coefficients, scattering_factor

from model_files import model_path


def test_peng_table_is_electron_factors():
    # Peng et al. (1996) table 1 (0 < s < 2): carbon and oxygen a/b coefficients
    a, b = peng_coefficients(np.array(["C", "O"]))
    np.testing.assert_allclose(a[0], [0.0893, 0.2563, 0.7570, 1.0487, 0.3575])
    np.testing.assert_allclose(b[0], [0.2465, 1.7100, 6.4094, 18.6113, 50.2523])
    np.testing.assert_allclose(a[1], [0.0974, 0.2921, 0.6910, 0.6990, 0.2039])
    # f_e(0) of carbon ~ 2.51 A, falling monotonically with s
    f = scattering_factor(np.array(["C"]), np.array([0.0, 0.5, 1.0]))[0]
    assert f[0] == pytest.approx(2.5088)
    assert f[0] > f[1] > f[2] > 0
    with pytest.raises(ValueError, match="unknown element"):
        peng_coefficients(np.array(["Xx"]))


@pytest.mark.parametrize("pixel_size", [1.0, 2.0, 3.0])
def test_integral_matches_scattering_factors_1ubi(pixel_size):
    atoms = load_model(model_path("1ubi.pdb.gz"))
    box = int(math.ceil(70 / pixel_size)) + 4
    vol = simulate_potential(atoms, pixel_size, box, dtype=torch.float64)
    assert vol.shape == (box, box, box)
    expected = POTENTIAL_PER_SCATTERING_FACTOR * (
        peng_coefficients(atoms.elements)[0].sum() * 1.0
    )
    assert potential_integral(atoms) == pytest.approx(expected)
    total = vol.sum().item() * pixel_size**3
    assert total == pytest.approx(expected, rel=1e-3)  # brief asks 1%; exact integration
    assert vol.min().item() >= 0


@pytest.mark.parametrize("pixel_size", [0.7, 1.6, 4.5])
def test_integral_synthetic_any_pixel_size(pixel_size):
    rng = np.random.default_rng(1)
    pos = rng.normal(scale=6.0, size=(60, 3))
    els = rng.choice(["H", "C", "N", "O", "S", "P", "Fe"], size=60)
    atoms = Atoms.from_arrays(pos, els, b_factors=rng.uniform(0, 80, 60))
    box = int(math.ceil(80 / pixel_size))
    total = simulate_potential(atoms, pixel_size, box).sum().item() * pixel_size**3
    assert total == pytest.approx(potential_integral(atoms), rel=1e-4)


def analytic_voxel_mean(element, b_atom, offset, pixel_size, n=48):
    """Mean of the analytic potential over one voxel by dense midpoint sampling."""
    a, b = peng_coefficients(np.array([element]))
    grid = (np.arange(n) + 0.5) / n - 0.5
    z, y, x = np.meshgrid(grid, grid, grid, indexing="ij")
    r2 = ((x * pixel_size - offset[0]) ** 2 + (y * pixel_size - offset[1]) ** 2
          + (z * pixel_size - offset[2]) ** 2)
    bi = b[0] + b_atom
    v = sum(a[0, i] * (4 * math.pi / bi[i]) ** 1.5 * np.exp(-4 * math.pi**2 * r2 / bi[i])
            for i in range(5))
    return POTENTIAL_PER_SCATTERING_FACTOR * v.mean()


@pytest.mark.parametrize(("pixel_size", "b_atom"), [(0.5, 20.0), (1.0, 40.0), (2.0, 10.0)])
def test_voxel_values_match_analytic_potential(pixel_size, b_atom):
    atoms = Atoms.from_arrays([[0.0, 0.0, 0.0]], ["N"], b_factors=[b_atom])
    box = 17
    vol = simulate_potential(atoms, pixel_size, box, dtype=torch.float64)
    c = box // 2
    # centre voxel and two neighbours (the voxel centre is offset from the atom)
    for dz, dy, dx in [(0, 0, 0), (0, 0, 1), (1, 1, 0)]:
        offset = (-dx * pixel_size, -dy * pixel_size, -dz * pixel_size)  # atom rel. voxel
        expected = analytic_voxel_mean("N", b_atom, offset, pixel_size)
        assert vol[c + dz, c + dy, c + dx].item() == pytest.approx(expected, rel=2e-3)


def test_centre_of_mass_at_box_centre_and_axis_order():
    # two carbons 12 A apart along x: centre of mass halfway, atoms 6 voxels either side
    pixel_size, box = 1.0, 32
    for axis in range(3):  # 0 = x, 1 = y, 2 = z
        pos = np.zeros((2, 3))
        pos[1, axis] = 12.0
        pos += [3.0, -7.0, 11.0]  # arbitrary absolute position
        vol = simulate_potential(Atoms.from_arrays(pos, ["C", "C"]), pixel_size, box)
        peak_dim = 2 - axis  # volume is [z, y, x]
        profile = vol.sum(dim=tuple(d for d in range(3) if d != peak_dim))
        peaks = torch.topk(profile, 2).indices.sort().values.tolist()
        assert peaks == [box // 2 - 6, box // 2 + 6]
        # centroid of the volume is at voxel box//2 on every axis
        for d in range(3):
            prof = vol.sum(dim=tuple(e for e in range(3) if e != d)).double()
            centroid = (prof * torch.arange(box)).sum() / prof.sum()
            assert centroid.item() == pytest.approx(box // 2, abs=1e-4)


def test_b_factor_scale_and_add_broaden_but_keep_integral():
    atoms = Atoms.from_arrays([[0.0, 0.0, 0.0]], ["O"], b_factors=[20.0])
    sharp = simulate_potential(atoms, 1.0, 25, dtype=torch.float64)
    scaled = simulate_potential(atoms, 1.0, 25, b_factor_scale=3.0, dtype=torch.float64)
    added = simulate_potential(atoms, 1.0, 25, b_factor_add=40.0, dtype=torch.float64)
    torch.testing.assert_close(scaled, added)  # 20 * 3 == 20 + 40
    assert scaled.max() < sharp.max()
    assert scaled.sum().item() == pytest.approx(sharp.sum().item(), rel=1e-6)
    with pytest.raises(ValueError, match="B-factors"):
        simulate_potential(atoms, 1.0, 25, b_factor_add=-30.0)


def test_occupancy_weighting():
    pos = [[0.0, 0.0, 0.0], [4.0, 1.0, -2.0]]
    full = simulate_potential(Atoms.from_arrays(pos, ["S", "S"]), 1.0, 24,
                              dtype=torch.float64)
    half = simulate_potential(Atoms.from_arrays(pos, ["S", "S"], occupancies=[0.5, 0.5]),
                              1.0, 24, dtype=torch.float64)
    torch.testing.assert_close(half, 0.5 * full)


def test_box_too_small_message():
    atoms = Atoms.from_arrays([[0.0, 0.0, 0.0], [30.0, 0.0, 0.0]], ["C", "C"])
    with pytest.raises(ValueError, match=r"box 20 too small for model \(extent 30\.0 A at "
                                         r"1 A/px; needs box >= 31\)"):
        simulate_potential(atoms, 1.0, 20)
    simulate_potential(atoms, 1.0, 31)  # the suggested box works
    with pytest.raises(ValueError, match="pixel size"):
        simulate_potential(atoms, -1.0, 31)
    with pytest.raises(ValueError, match="box"):
        simulate_potential(atoms, 1.0, 0)


def test_deterministic_and_independent_of_chunking(monkeypatch):
    atoms = load_model(model_path("1ubi.pdb.gz"))
    ref = simulate_potential(atoms, 1.5, 48, dtype=torch.float64)
    again = simulate_potential(atoms, 1.5, 48, dtype=torch.float64)
    assert torch.equal(ref, again)
    monkeypatch.setattr(potential, "CHUNK_VOXELS", 5000)
    chunked = simulate_potential(atoms, 1.5, 48, dtype=torch.float64)
    torch.testing.assert_close(chunked, ref, rtol=1e-12, atol=1e-12)


def test_float32_matches_float64():
    atoms = load_model(model_path("1ubi.pdb.gz"))
    v32 = simulate_potential(atoms, 1.0, 64)
    v64 = simulate_potential(atoms, 1.0, 64, dtype=torch.float64)
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), v64, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_cuda_matches_cpu():
    atoms = load_model(model_path("1ubi.pdb.gz"))
    cpu = simulate_potential(atoms, 1.0, 64)
    gpu = simulate_potential(atoms, 1.0, 64, device="cuda")
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_large_ribosome_6zu5_fast_and_exact():
    atoms = load_model(model_path("6zu5.cif.gz"))
    assert len(atoms) > 160_000
    start = time.perf_counter()
    vol = simulate_potential(atoms, 2.0, 200)
    elapsed = time.perf_counter() - start
    assert elapsed < 180.0
    assert vol.sum().item() * 8.0 == pytest.approx(potential_integral(atoms), rel=1e-3)


@pytest.mark.parametrize(("element", "b_atom", "pixel_size"), [("C", 30.0, 1.0), ("P", 60.0, 1.5)])
def test_fourier_transform_is_scattering_factor(element, b_atom, pixel_size):
    """The 3D FT of one atom's volume is 47.878 f_e(k/2) exp(-B k^2/4) x voxel-box sinc."""
    box = 40
    atoms = Atoms.from_arrays([[0.0, 0.0, 0.0]], [element], b_factors=[b_atom])
    vol = simulate_potential(atoms, pixel_size, box, dtype=torch.float64)
    spectrum = torch.fft.fftn(torch.fft.ifftshift(vol)).real * pixel_size**3  # atom at origin
    n = np.arange(1, box // 2)
    k = n / (box * pixel_size)  # along kx, 1/A
    s = k / 2  # sin(theta)/lambda
    f_e = scattering_factor(np.array([element]), s)[0]
    expected = POTENTIAL_PER_SCATTERING_FACTOR * f_e * np.exp(-b_atom * s**2) * np.sinc(
        k * pixel_size
    )
    got = spectrum[0, 0, n].numpy()
    keep = k <= 0.3 / pixel_size  # aliases (k + m / pixel) of the voxel box still small
    np.testing.assert_allclose(got[keep], expected[keep], rtol=0.01,
                               atol=1e-3 * expected[0])


def test_repeated_simulation_is_bit_identical_with_threads():
    """Accumulation order must not depend on thread timing (sorted segment sums)."""
    rng = np.random.default_rng(3)
    n = 3000
    atoms = Atoms(
        positions_angstrom=rng.uniform(-20, 20, (n, 3)),
        elements=np.array(["C"] * n),
        b_factors=np.full(n, 20.0),
        occupancies=np.ones(n),
    )
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first = simulate_potential(atoms, 1.0, 64)
        for _ in range(3):
            assert torch.equal(first, simulate_potential(atoms, 1.0, 64))
    finally:
        torch.set_num_threads(old)
