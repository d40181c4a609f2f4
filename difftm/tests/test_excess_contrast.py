"""The excess-contrast statistic of the particle call, checked against direct computations.

``excess_contrast`` is ``(m(p) - s <t, b> / <t, t> - median(m)) / (1.4826 MAD(m))``: ``m`` the
correlation of the whitened micrograph with a particle-sized Gaussian ``b``, ``s`` the
candidate's SNR, ``t`` its template. Here the correlation is compared with a direct sum (an
asymmetric kernel, so a flip or a one-pixel shift fails), and the statistic with a
micrograph built by hand: white noise, a strong "particle" (the template itself) and a
dark blob with the same SNR. The particle must come out as noise (the subtraction of what
the template explains is what makes it so: without it the particle would be rejected),
the blob far out.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from difftm.search.contamination import (
    BLOB_SIGMA_DIAMETERS,
    MAX_EXCESS_CONTRAST,
    blob_correlation,
    blob_kernel,
    excess_contrast,
)


def test_blob_correlation_is_the_scorers_correlation():
    rng = np.random.default_rng(0)
    image = rng.standard_normal((70, 90))
    kernel = rng.standard_normal((16, 16))  # even size and asymmetric, like a template
    c = 8
    m = blob_correlation(image, kernel, (60, 80))
    padded = np.pad(image, 16)
    for qy, qx in [(0, 0), (5, 70), (30, 41), (59, 79)]:
        direct = sum(kernel[uy, ux] * padded[16 + qy + uy - c, 16 + qx + ux - c]
                     for uy in range(16) for ux in range(16))
        assert m[qy, qx] == pytest.approx(direct, abs=1e-9)


def test_blob_kernel_is_centred_zero_mean_unit_norm():
    b = blob_kernel(64, 6.0)
    assert np.unravel_index(np.argmax(b), b.shape) == (32, 32)
    assert abs(b.sum()) < 1e-9 and (b**2).sum() == pytest.approx(1.0)


class _Scorer:
    """The two things excess_contrast needs of a ParticleScorer: the box and the whitened
    micrograph, and the candidates' templates (here one fixed template)."""

    def __init__(self, image: np.ndarray, template: np.ndarray):
        self.size = template.shape[0]
        self.image = torch.as_tensor(image)
        self._t = torch.as_tensor(template, dtype=torch.float32)

    def templates(self, rotations, defocus_offsets):
        return self._t.expand(rotations.shape[0], -1, -1)


def _place(image, pattern, y, x):
    c = pattern.shape[0] // 2
    image[y - c:y - c + pattern.shape[0], x - c:x - c + pattern.shape[1]] += pattern


def test_a_particle_is_noise_and_a_blob_of_the_same_snr_is_not():
    diameter, p = 40.0, 64
    b = blob_kernel(p, BLOB_SIGMA_DIAMETERS * diameter)
    c = p // 2
    yy, xx = np.mgrid[0:p, 0:p] - c
    r = np.hypot(yy, xx)
    ring = np.cos(2 * np.pi * r / 7.0) * np.exp(-r**2 / (2 * 12.0**2))
    ring -= ring.mean()
    ring -= (ring * b).sum() * b  # orthogonal to the blob
    ring /= np.sqrt((ring**2).sum())
    # a template whose low frequencies are dark, like a CTF-filtered projection: <t, b> < 0
    t = -0.7 * b + np.sqrt(1 - 0.49) * ring
    rng = np.random.default_rng(1)
    image = rng.standard_normal((400, 400))
    particle, blob = (120, 120), (280, 280)
    _place(image, 14.0 * t, *particle)  # a particle of SNR ~14
    _place(image, -20.0 * b, *blob)  # a dark blob: SNR 0.7 * 20 = 14 too
    valid = np.zeros((400, 400), dtype=bool)
    valid[32:-32, 32:-32] = True
    scorer = _Scorer(image, t)
    snr = np.array([(t * image[q[0] - c:q[0] + c, q[1] - c:q[1] + c]).sum()
                    for q in (particle, blob)])
    assert snr == pytest.approx([14.0, 14.0], abs=4.0)
    ys, xs = np.array([particle[0], blob[0]]), np.array([particle[1], blob[1]])
    z = excess_contrast(scorer, valid, diameter, ys, xs, snr, np.zeros((2, 3)), np.zeros(2))
    assert abs(z[0]) < 4.0, z  # what the template explains is taken out: noise
    assert z[1] < -MAX_EXCESS_CONTRAST, z  # darker than its template explains
    # without the template's share the particle would look like a blob too
    m = blob_correlation(image, b, image.shape)
    assert abs(m[particle]) > MAX_EXCESS_CONTRAST
