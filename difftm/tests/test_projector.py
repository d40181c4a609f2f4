"""Fourier-slice projector against analytic and real-space projections."""

import math

import pytest
import torch

from difftm.fourier.projector import FourierSliceProjector, real_space_project
from difftm.geometry.euler import euler_to_matrix
from difftm.geometry.symmetry import symmetry_matrices


def blob_volume(D, centres, amplitudes, sigma, dtype=torch.float64):
    """Sum of isotropic Gaussians; centres (n, 3) as (x, y, z) relative to voxel D//2."""
    r = torch.arange(D, dtype=dtype) - D // 2
    z, y, x = torch.meshgrid(r, r, r, indexing="ij")
    vol = torch.zeros(D, D, D, dtype=dtype)
    for (cx, cy, cz), a in zip(centres.tolist(), amplitudes.tolist(), strict=True):
        vol += a * torch.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sigma**2))
    return vol


def analytic_projection(D, centres, amplitudes, sigma, R):
    """Exact line integrals of the Gaussians: 2D Gaussians at (A c)_xy, centre pixel D//2."""
    r = torch.arange(D, dtype=R.dtype) - D // 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    c = torch.einsum("bij,nj->bni", R, centres.to(R.dtype))
    out = torch.zeros(R.shape[0], D, D, dtype=R.dtype)
    for i, a in enumerate(amplitudes.tolist()):
        d2 = (x - c[:, i, 0, None, None]) ** 2 + (y - c[:, i, 1, None, None]) ** 2
        out += a * math.sqrt(2 * math.pi) * sigma * torch.exp(-d2 / (2 * sigma**2))
    return out


def random_blobs(D, n=10, seed=0, extent=0.18):
    g = torch.Generator().manual_seed(seed)
    centres = (torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1) * extent * D
    amplitudes = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    return centres, amplitudes


def random_rotations(n, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    angles = torch.rand(n, 3, generator=g, dtype=torch.float64) * torch.tensor(
        [360.0, 180.0, 360.0], dtype=torch.float64
    )
    return euler_to_matrix(angles).to(dtype)


def bandlimited_volume(D, cutoff=0.3, seed=0, dtype=torch.float64):
    """Random volume band-limited to |k| < cutoff cycles/voxel, confined to a sphere.

    Low-pass filtered noise times a Gaussian envelope (sigma D/8): the product stays smooth,
    and is only negligibly non-zero near the box surface.
    """
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(D, D, D, generator=g, dtype=dtype)
    k = torch.fft.fftfreq(D, dtype=dtype)
    kz, ky, kx = torch.meshgrid(k, k, k, indexing="ij")
    smooth = torch.fft.ifftn(torch.fft.fftn(noise) * ((kx**2 + ky**2 + kz**2) < cutoff**2)).real
    r = torch.arange(D, dtype=dtype) - D // 2
    z, y, x = torch.meshgrid(r, r, r, indexing="ij")
    return smooth * torch.exp(-(x**2 + y**2 + z**2) / (2 * (D / 8) ** 2))


def ncc(a, b):
    a = a - a.mean(dim=(-2, -1), keepdim=True)
    b = b - b.mean(dim=(-2, -1), keepdim=True)
    return (a * b).sum(dim=(-2, -1)) / torch.sqrt(
        (a * a).sum(dim=(-2, -1)) * (b * b).sum(dim=(-2, -1))
    )


def rel_err(a, b):
    return ((a - b).norm(dim=(-2, -1)) / b.norm(dim=(-2, -1))).max().item()


D = 48
SIGMA = 2.0


@pytest.fixture(scope="module")
def blobs():
    centres, amplitudes = random_blobs(D)
    return centres, amplitudes, blob_volume(D, centres, amplitudes, SIGMA)


@pytest.fixture(scope="module")
def rotations():
    return random_rotations(8, seed=1)


@pytest.mark.parametrize("oversampling,max_rel", [(2, 0.02), (1, 0.06)])
def test_matches_analytic_projection(blobs, rotations, oversampling, max_rel):
    centres, amplitudes, vol = blobs
    proj = FourierSliceProjector(vol, oversampling=oversampling)
    ours = proj.project_real(rotations)
    exact = analytic_projection(D, centres, amplitudes, SIGMA, rotations)
    assert ncc(ours, exact).min() > 0.999
    assert rel_err(ours, exact) < max_rel


def test_gridding_correction_reduces_error_off_grid(blobs, rotations):
    centres, amplitudes, vol = blobs
    exact = analytic_projection(D, centres, amplitudes, SIGMA, rotations)
    with_c = FourierSliceProjector(vol, oversampling=1).project_real(rotations)
    without = FourierSliceProjector(vol, oversampling=1, gridding_correction=False).project_real(
        rotations
    )
    assert rel_err(with_c, exact) < 0.6 * rel_err(without, exact)


def test_spectrum_equals_rfft2_of_exact_projection(blobs, rotations):
    centres, amplitudes, vol = blobs
    spec = FourierSliceProjector(vol, oversampling=2).project(rotations)
    assert spec.shape == (8, D, D // 2 + 1) and spec.dtype == torch.complex128
    reference = torch.fft.rfft2(analytic_projection(D, centres, amplitudes, SIGMA, rotations))
    err = (spec - reference).abs().pow(2).sum(dim=(-2, -1)).sqrt()
    assert (err / reference.abs().pow(2).sum(dim=(-2, -1)).sqrt()).max() < 0.02


def test_matches_real_space_projection(rotations):
    # Real-space trilinear rotation blurs high frequencies (~sinc^2), so use smooth volumes.
    for vol in (bandlimited_volume(D, cutoff=0.12, seed=2), blob_volume(D, *random_blobs(D), 2.5)):
        proj = FourierSliceProjector(vol, oversampling=2)
        real = real_space_project(vol, rotations)
        assert ncc(proj.project_real(rotations), real).min() > 0.99
        spec, reference = proj.project(rotations), torch.fft.rfft2(real)
        ky = torch.fft.fftfreq(D, dtype=torch.float64)[:, None]
        kx = torch.fft.rfftfreq(D, dtype=torch.float64)[None, :]
        for band, tol in ((0.5, 0.12), (0.08, 0.03)):  # the blur grows with frequency
            w = (kx**2 + ky**2) <= band**2
            err = ((spec - reference) * w).abs().pow(2).sum(dim=(-2, -1)).sqrt()
            norm = (reference * w).abs().pow(2).sum(dim=(-2, -1)).sqrt()
            assert (err / norm).max() < tol, band


def test_identity_is_sum_along_z_exactly_without_correction():
    vol = bandlimited_volume(D, cutoff=0.45, seed=3)
    proj = FourierSliceProjector(vol, oversampling=2, gridding_correction=False)
    eye = torch.eye(3, dtype=torch.float64)
    spec = proj.project(eye)
    # Identity slices fall on grid nodes: exact inside the Nyquist disc, zero outside it.
    ky = torch.fft.fftfreq(D, dtype=torch.float64)[:, None]
    kx = torch.fft.rfftfreq(D, dtype=torch.float64)[None, :]
    disc = (kx**2 + ky**2) <= 0.25
    reference = torch.fft.rfft2(vol.sum(dim=0)) * disc
    assert torch.allclose(spec[0], reference, atol=1e-9 * vol.abs().sum())
    assert torch.allclose(real_space_project(vol, eye)[0], vol.sum(dim=0), atol=1e-12)
    corrected = FourierSliceProjector(vol, oversampling=2).project_real(eye)
    assert ncc(corrected, vol.sum(dim=0)[None]).item() > 0.999


def test_centre_and_axis_conventions():
    # One blob at volume (x, y, z) = (5, -3, 2); its projection peaks where A maps it.
    Dc = 32
    centre = torch.tensor([[5.0, -3.0, 2.0]], dtype=torch.float64)
    vol = blob_volume(Dc, centre, torch.ones(1, dtype=torch.float64), 1.5)
    proj = FourierSliceProjector(vol)
    cases = {
        (0.0, 0.0, 0.0): (5, -3),  # identity: image (x, y) = volume (x, y)
        (90.0, 0.0, 0.0): (-3, -5),  # A^T (x, y, z) = (-y, x, z)
        (0.0, 90.0, 0.0): (-2, -3),  # A^T (x, y, z) = (z, y, -x): image x = -volume z
    }
    for angles, (px, py) in cases.items():
        img = proj.project_real(euler_to_matrix(angles))[0]
        iy, ix = divmod(int(img.argmax()), Dc)
        assert (ix - Dc // 2, iy - Dc // 2) == (px, py), angles


def test_symmetric_volume_gives_equal_projections():
    # A D2-symmetric volume: projections for A and A S coincide for every S in D2.
    centres = torch.tensor([[6.0, 3.0, 4.0]], dtype=torch.float64)
    S = symmetry_matrices("D2")
    all_centres = torch.einsum("gij,nj->gni", S, centres).reshape(-1, 3)
    vol = blob_volume(D, all_centres, torch.ones(4, dtype=torch.float64), SIGMA)
    proj = FourierSliceProjector(vol)
    A = euler_to_matrix((20.0, 50.0, 70.0))
    images = proj.project_real(A[None] @ S)
    assert ncc(images, images[:1]).min() > 0.999


def test_batch_equals_one_at_a_time(blobs, rotations):
    proj = FourierSliceProjector(blobs[2].float())
    batch = proj.project(rotations.float())
    assert batch.dtype == torch.complex64
    for i in range(rotations.shape[0]):
        single = proj.project(rotations[i].float())
        assert torch.allclose(batch[i : i + 1], single, rtol=1e-5, atol=1e-3)


def test_gradient_wrt_euler_angles_matches_finite_differences(blobs):
    centres, amplitudes, vol = blobs
    proj = FourierSliceProjector(vol)
    target = analytic_projection(
        D, centres, amplitudes, SIGMA, euler_to_matrix((25.0, 65.0, 100.0))[None]
    )
    target_spec = torch.fft.rfft2(target)

    def loss(angles):
        spec = proj.project(euler_to_matrix(angles)[None])
        return (spec - target_spec).abs().pow(2).sum() / target_spec.abs().pow(2).sum()

    angles = torch.tensor([20.0, 60.0, 95.0], dtype=torch.float64, requires_grad=True)
    value = loss(angles)
    (grad,) = torch.autograd.grad(value, angles)
    h = 1e-4
    for i in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[i] = h
        fd = (loss(angles.detach() + e) - loss(angles.detach() - e)) / (2 * h)
        assert abs(fd.item() - grad[i].item()) <= 1e-3 * abs(fd.item()) + 1e-8, (i, fd, grad)
    assert grad.abs().min() > 0  # the loss does depend on every angle here


def test_odd_box_and_float32(rotations):
    Dodd = 33
    centres, amplitudes = random_blobs(Dodd, n=6, seed=4)
    vol = blob_volume(Dodd, centres, amplitudes, SIGMA).float()
    proj = FourierSliceProjector(vol)
    out = proj.project_real(rotations.float())
    assert out.shape == (8, Dodd, Dodd) and out.dtype == torch.float32
    exact = analytic_projection(Dodd, centres, amplitudes, SIGMA, rotations)
    assert ncc(out.double(), exact).min() > 0.999


def test_memory_and_errors():
    proj = FourierSliceProjector(torch.zeros(16, 16, 16), oversampling=2)
    assert proj.padded_size == 32
    assert proj.memory_bytes == 2 * 34 * 34 * 17 * 4
    assert proj.project(torch.zeros(0, 3, 3)).shape == (0, 16, 9)
    with pytest.raises(ValueError, match="cube"):
        FourierSliceProjector(torch.zeros(8, 8, 9))
    with pytest.raises(ValueError, match="oversampling"):
        FourierSliceProjector(torch.zeros(8, 8, 8), oversampling=0.5)
    with pytest.raises(ValueError, match=r"\(B, 3, 3\)"):
        proj.project(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="cube"):
        real_space_project(torch.zeros(4, 4, 5), torch.eye(3))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(blobs, rotations):
    vol = blobs[2].float()
    cpu = FourierSliceProjector(vol).project(rotations.float())
    gpu = FourierSliceProjector(vol, device="cuda").project(rotations.float().cuda())
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4 * cpu.abs().max().item())
