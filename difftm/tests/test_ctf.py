"""CTF: analytic zeros, astigmatism geometry, layouts, batching and gradients."""

import math

import pytest
import torch

from difftm.physics.ctf import ctf_2d, ctf_from_frequencies
from difftm.physics.electron import electron_wavelength

AMP = 0.07


def analytic_zeros(defocus, cs_mm, voltage_kv, amp, phase_shift_deg, k_max):
    """Spatial frequencies where chi(k) + asin(A) = n pi (non-astigmatic CTF zeros)."""
    lam = electron_wavelength(voltage_kv)
    a = 0.5 * math.pi * cs_mm * 1e7 * lam**3
    b = math.pi * lam * defocus
    phi = math.asin(amp) + math.radians(phase_shift_deg)
    zeros = []
    for n in range(-5, 400):
        c = phi - n * math.pi  # a u^2 - b u - c = 0 with u = k^2
        if a == 0:
            roots = [-c / b]
        else:
            disc = b * b + 4 * a * c
            if disc < 0:
                continue
            roots = [(b - math.sqrt(disc)) / (2 * a), (b + math.sqrt(disc)) / (2 * a)]
        zeros.extend(math.sqrt(u) for u in roots if 0 < u and math.sqrt(u) < k_max)
    return sorted(set(zeros))


def ctf_line(k, defocus, cs_mm, voltage_kv=300.0, phase_shift_deg=0.0):
    k = torch.as_tensor(k, dtype=torch.float64)
    return ctf_from_frequencies(
        torch.zeros_like(k), k, defocus, defocus, 0.0, voltage_kv, cs_mm, AMP, phase_shift_deg
    )


@pytest.mark.parametrize(
    ("defocus", "cs_mm", "voltage_kv", "phase_shift_deg"),
    [(5000.0, 2.7, 300.0, 0.0), (15000.0, 2.7, 300.0, 0.0), (8000.0, 0.0, 200.0, 0.0),
     (-3000.0, 2.7, 300.0, 0.0), (5000.0, 2.7, 300.0, 90.0), (20000.0, 0.01, 300.0, 0.0)],
)
def test_ctf_zeros_at_analytic_frequencies(defocus, cs_mm, voltage_kv, phase_shift_deg):
    zeros = analytic_zeros(defocus, cs_mm, voltage_kv, AMP, phase_shift_deg, k_max=0.5)
    assert len(zeros) >= 2
    k = torch.tensor(zeros, dtype=torch.float64)
    vals = ctf_line(k, defocus, cs_mm, voltage_kv, phase_shift_deg)
    assert vals.abs().max() < 1e-7
    # the CTF really changes sign there (a crossing, not a touch)
    below = ctf_line(k * (1 - 1e-4), defocus, cs_mm, voltage_kv, phase_shift_deg)
    above = ctf_line(k * (1 + 1e-4), defocus, cs_mm, voltage_kv, phase_shift_deg)
    assert torch.all(below * above < 0)


def test_ctf_zero_crossings_on_grid_match_analytic_count():
    px, n, defocus = 1.0, 512, 12000.0
    ctf = ctf_2d((n, n), px, defocus, defocus, 0.0, 300.0, 2.7, AMP, rfft=True,
                 dtype=torch.float64)
    row = ctf[0, :]  # ky = 0, kx = 0 .. Nyquist
    k = torch.arange(n // 2 + 1, dtype=torch.float64) / (n * px)
    crossings = torch.nonzero(row[:-1] * row[1:] < 0).flatten()
    zeros = analytic_zeros(defocus, 2.7, 300.0, AMP, 0.0, k_max=float(k[-1]))
    assert len(crossings) == len(zeros)
    for i, z in zip(crossings.tolist(), zeros, strict=True):
        assert k[i] <= z <= k[i + 1]


def test_low_frequency_sign_and_value():
    ctf = ctf_2d((64, 64), 1.0, 10000.0, 10000.0, 0.0, 300.0, 2.7, AMP, dtype=torch.float64)
    assert ctf[0, 0].item() == pytest.approx(-AMP)
    assert ctf[0, 1].item() < -AMP  # underfocus: negative phase contrast at low k


@pytest.mark.parametrize("angle", [17.0, 63.5, 120.0, -40.0])
def test_astigmatism_rotates_with_angle(angle):
    gen = torch.Generator().manual_seed(0)
    ky = (torch.rand(500, generator=gen, dtype=torch.float64) - 0.5) * 0.8
    kx = (torch.rand(500, generator=gen, dtype=torch.float64) - 0.5) * 0.8
    a = math.radians(angle)
    # rotate the frequencies by -angle: the rotated-by-angle CTF at k equals the
    # angle-0 CTF at R(-angle) k
    kx_r = math.cos(a) * kx + math.sin(a) * ky
    ky_r = -math.sin(a) * kx + math.cos(a) * ky
    rotated = ctf_from_frequencies(ky, kx, 15000.0, 11000.0, angle, 300.0, 2.7, AMP)
    reference = ctf_from_frequencies(ky_r, kx_r, 15000.0, 11000.0, 0.0, 300.0, 2.7, AMP)
    torch.testing.assert_close(rotated, reference, atol=1e-10, rtol=0)


def test_astigmatism_90_degrees_is_transpose_and_u_is_along_angle():
    kw = dict(voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=AMP, rfft=False,
              dtype=torch.float64)
    c0 = ctf_2d((96, 96), 1.2, 16000.0, 9000.0, 0.0, **kw)
    c90 = ctf_2d((96, 96), 1.2, 16000.0, 9000.0, 90.0, **kw)
    torch.testing.assert_close(c90, c0.T, atol=1e-12, rtol=0)
    # defocus_u along x for angle 0: equals the non-astigmatic CTF of defocus_u on the x axis
    iso = ctf_2d((96, 96), 1.2, 16000.0, 16000.0, 0.0, **kw)
    torch.testing.assert_close(c0[0, :], iso[0, :], atol=1e-12, rtol=0)
    assert not torch.allclose(c0[:, 0], iso[:, 0])


@pytest.mark.parametrize("shape", [(64, 64), (48, 50), (33, 47)])
def test_rfft_and_full_layouts_agree(shape):
    args = (shape, 1.3, 9000.0, 8000.0, 33.0, 300.0, 2.7, AMP)
    full = ctf_2d(*args, rfft=False, dtype=torch.float64)
    half = ctf_2d(*args, rfft=True, dtype=torch.float64)
    assert half.shape == (shape[0], shape[1] // 2 + 1)
    w2 = (shape[1] + 1) // 2  # columns that both layouts hold with the same frequency
    torch.testing.assert_close(half[:, :w2], full[:, :w2], atol=0, rtol=0)
    if shape[1] % 2 == 0:  # rfft's Nyquist column is +1/2, fft's is -1/2: CTF(k) = CTF(-k)
        rows = torch.tensor([i for i in range(shape[0]) if 2 * i != shape[0]])  # not corner
        torch.testing.assert_close(half[rows, -1], full[(-rows) % shape[0], shape[1] // 2],
                                   atol=1e-12, rtol=0)
    # the full layout is symmetric, CTF(-k) = CTF(k), away from the (+-1/2) Nyquist lines
    flipped = torch.roll(torch.flip(full, dims=(0, 1)), shifts=(1, 1), dims=(0, 1))
    keep = torch.ones(shape, dtype=torch.bool)
    for axis, n in enumerate(shape):
        if n % 2 == 0:
            keep.select(axis, n // 2).fill_(False)
    torch.testing.assert_close(full[keep], flipped[keep], atol=1e-12, rtol=0)


def test_batched_defocus_matches_scalar_calls():
    du = torch.tensor([8000.0, 10000.0, 14000.0])
    dv = du - 500.0
    batch = ctf_2d((32, 40), 1.0, du, dv, 20.0, 300.0, 2.7, AMP, phase_shift_deg=10.0,
                   b_factor=50.0)
    assert batch.shape == (3, 32, 21)
    for i in range(3):
        single = ctf_2d((32, 40), 1.0, float(du[i]), float(dv[i]), 20.0, 300.0, 2.7, AMP,
                        phase_shift_deg=10.0, b_factor=50.0)
        torch.testing.assert_close(batch[i], single)


def test_b_factor_envelope():
    base = ctf_2d((32, 32), 1.0, 9000.0, 9000.0, 0.0, 300.0, 2.7, AMP, dtype=torch.float64)
    damped = ctf_2d((32, 32), 1.0, 9000.0, 9000.0, 0.0, 300.0, 2.7, AMP, b_factor=80.0,
                    dtype=torch.float64)
    k2 = torch.fft.fftfreq(32, dtype=torch.float64)[:, None] ** 2 + torch.fft.rfftfreq(
        32, dtype=torch.float64
    )[None, :] ** 2
    torch.testing.assert_close(damped, base * torch.exp(-80.0 * k2 / 4))


def test_gradient_in_defocus_matches_finite_difference():
    du = torch.tensor([9000.0, 12000.0], dtype=torch.float64, requires_grad=True)
    dv = torch.tensor([8500.0, 11000.0], dtype=torch.float64, requires_grad=True)
    ang = torch.tensor(25.0, dtype=torch.float64, requires_grad=True)

    def f(du, dv, ang):
        return ctf_2d((12, 12), 2.0, du, dv, ang, 300.0, 2.7, AMP, dtype=torch.float64)

    assert torch.autograd.gradcheck(f, (du, dv, ang), eps=1e-3, atol=1e-6)
    # explicit central difference of a scalar loss
    weights = torch.linspace(-1, 1, 12 * 7, dtype=torch.float64).reshape(12, 7)
    loss = (f(du, dv, ang) * weights).sum()
    (g_du,) = torch.autograd.grad(loss, du)
    h = 0.5
    with torch.no_grad():
        plus = (f(du + torch.tensor([h, 0.0], dtype=torch.float64), dv, ang) * weights).sum()
        minus = (f(du - torch.tensor([h, 0.0], dtype=torch.float64), dv, ang) * weights).sum()
    assert g_du[0].item() == pytest.approx(((plus - minus) / (2 * h)).item(), rel=1e-5)


def test_bad_parameters():
    with pytest.raises(ValueError, match="amplitude contrast"):
        ctf_2d((8, 8), 1.0, 1e4, 1e4, 0.0, 300.0, 2.7, 1.5)
    with pytest.raises(ValueError, match="pixel size"):
        ctf_2d((8, 8), -1.0, 1e4, 1e4, 0.0, 300.0, 2.7, 0.07)
