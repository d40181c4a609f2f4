"""Fourier-slice projection of a 3D volume, batched and differentiable w.r.t. the rotations.

Conventions (see :mod:`difftm.geometry.euler`): the volume is indexed ``[z, y, x]`` with its
centre (the rotation centre) at voxel ``D // 2``; the projection for the matrix ``A`` is
``P(x, y) = sum_z V(A^T (x, y, z))`` with the image centre at pixel ``(D // 2, D // 2)``. By the
projection-slice theorem ``rfft2(P)(kx, ky) = exp(-2 pi i (kx + ky) D//2) F(A^T (kx, ky, 0))``
where ``F`` is the 3D Fourier transform of the volume taken about its centre and ``k`` is in
cycles per pixel; :meth:`FourierSliceProjector.project` returns exactly that layout, so it
can stand in for ``torch.fft.rfft2`` of a real-space projection.

Method: the volume is zero-padded to ``N = oversampling * D`` (rounded up to even), its
half-spectrum (``rfftn``) is computed once about the centre voxel, and slices are read by
trilinear interpolation with :func:`torch.nn.functional.grid_sample` (real and imaginary
parts as two channels). Points with negative x frequency use Hermitian symmetry
``F(-q) = conj F(q)``. The spectrum is extended by one periodic plane on each side in z and
y (the DFT is periodic), so every point of the Nyquist sphere is interpolated exactly.

Interpolation error and the gridding correction: trilinear interpolation in Fourier space
multiplies the volume by ``W(r) = prod_i sinc^2(r_i / N)`` in real space (and adds faint
copies of the volume at distance ``N``). With ``gridding_correction=True`` (default, as
RELION does) the volume is divided by ``W`` before the FFT, which removes the attenuation of
the periphery for rotations that sample between grid points. Rotations that sample exactly
on grid nodes (e.g. the identity with integer oversampling) then show the division itself:
the result is the projection of ``V / W`` (for ``oversampling=2``, ``W`` >= 0.81 per axis at
the box edge and >= 0.95 within the central half, where particles usually sit).
``oversampling=1`` halves the memory per axis (8x in 3D) but ``W`` drops to 0.405 per axis at
the box edge and the periodic copies of the volume are only ``D`` away, so it is accurate
only for particles well inside the box (diameter <= D/2); the correction then matters more.

Memory (float32): the stored spectrum takes ``8 (N + 2)^2 (N/2 + 1)`` bytes: D=128, os=2:
~70 MB; D=256, os=2: ~0.54 GB; D=512, os=2: ~4.3 GB (os=1: ~0.54 GB). Building it needs
about three times that transiently. Each batch of ``B`` projections adds ``~B D (D/2+1) * 50``
bytes (grid and output).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from difftm.fourier.padding import pad_to

__all__ = ["FourierSliceProjector", "real_space_project"]


def _as_rotations(R: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    R = torch.as_tensor(R)
    if R.dim() == 2:
        R = R.unsqueeze(0)
    if R.dim() != 3 or R.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices need shape (B, 3, 3) or (3, 3), got {tuple(R.shape)}")
    return R.to(device=device, dtype=dtype)


class FourierSliceProjector:
    """Central-slice projector of one volume (pre-computes its padded 3D spectrum once).

    Projections are differentiable w.r.t. the rotation matrices, not w.r.t. the volume
    (it is detached).

    Args:
        volume: ``(D, D, D)`` real tensor/array ``[z, y, x]``, rotation centre at ``D // 2``.
        oversampling: padding factor of the 3D FFT (>= 1; 2 is accurate, 1 is 8x smaller).
        device: where the spectrum lives and projections are computed (default: the
            volume's device).
        dtype: float32 (default for non-float64 input) or float64.
        gridding_correction: divide the volume by the sinc^2 kernel of trilinear
            interpolation before the FFT (module docstring).
        max_frequency: frequencies with ``sqrt(kx^2 + ky^2)`` above this (cycles/pixel,
            <= 0.5) are set to zero; the default keeps the Nyquist disc, so every orientation
            carries the same band (the cube corners would depend on the orientation).
    """

    def __init__(
        self,
        volume,
        oversampling: float = 2.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        gridding_correction: bool = True,
        max_frequency: float = 0.5,
    ) -> None:
        vol = torch.as_tensor(volume).detach()
        if vol.dim() != 3 or len(set(vol.shape)) != 1:
            raise ValueError(f"volume must be a cube (D, D, D), got shape {tuple(vol.shape)}")
        if vol.is_complex():
            raise ValueError("volume must be real")
        if not (oversampling >= 1.0 and math.isfinite(oversampling)):
            raise ValueError(f"oversampling must be >= 1, got {oversampling}")
        if not (0.0 < max_frequency <= 0.5):
            raise ValueError(f"max_frequency must be in (0, 0.5] cycles/pixel, got {max_frequency}")
        if dtype is None:
            dtype = torch.float64 if vol.dtype == torch.float64 else torch.float32
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        self.device = torch.device(device) if device is not None else vol.device
        self.dtype = dtype
        self.size = D = int(vol.shape[0])
        n = int(math.ceil(oversampling * D))
        self.padded_size = N = n + (n % 2)
        self.oversampling = N / D
        self.gridding_correction = gridding_correction
        self.max_frequency = float(max_frequency)

        vol = vol.to(device=self.device, dtype=dtype)
        if gridding_correction:
            r = torch.arange(D, device=self.device, dtype=dtype) - D // 2
            w = torch.sinc(r / N) ** 2  # normalised sinc, sin(pi x) / (pi x)
            vol = vol / (w[:, None, None] * w[None, :, None] * w[None, None, :])
        padded = pad_to(vol, (N, N, N))
        del vol
        spec = torch.fft.rfftn(torch.fft.ifftshift(padded, dim=(0, 1, 2)), dim=(0, 1, 2))
        del padded
        # Reorder z and y so frequency f sits at index f + N//2 + 1, with one periodic plane on
        # each side (the DFT is periodic), and store real/imag as two channels.
        perm = (torch.arange(N + 2, device=self.device) - 1 - N // 2) % N
        parts = torch.view_as_real(spec)[perm][:, perm]  # (N+2, N+2, N//2+1, 2)
        del spec
        self._spectrum = parts.permute(3, 0, 1, 2).unsqueeze(0).contiguous()
        del parts

        # Only frequencies inside the disc are interpolated; the rest of the output is zero.
        ky = torch.fft.fftfreq(D, device=self.device, dtype=torch.float64)
        kx = torch.fft.rfftfreq(D, device=self.device, dtype=torch.float64)
        kyy, kxx = torch.meshgrid(ky, kx, indexing="ij")
        inside = (kxx**2 + kyy**2).reshape(-1) <= self.max_frequency**2 + 1e-12
        self._index = inside.nonzero()[:, 0]
        kxi, kyi = kxx.reshape(-1)[self._index], kyy.reshape(-1)[self._index]
        # Plane coordinates (kx, ky) in units of the padded grid, (P, 2).
        self._kplane = (torch.stack([kxi, kyi], -1) * N).to(dtype)
        # Moves the origin from the centre voxel to pixel (D//2, D//2).
        phase = torch.exp(-2j * math.pi * (D // 2) * (kxi + kyi))
        self._phase = phase.to(torch.complex128 if dtype == torch.float64 else torch.complex64)
        lx, lyz = N // 2 + 1, N + 2
        self._grid_scale = torch.tensor(
            [2.0 / (lx - 1), 2.0 / (lyz - 1), 2.0 / (lyz - 1)], device=self.device, dtype=dtype
        )
        self._grid_offset = torch.tensor(
            [0.0, N // 2 + 1.0, N // 2 + 1.0], device=self.device, dtype=dtype
        )

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the stored spectrum."""
        return self._spectrum.numel() * self._spectrum.element_size()

    def _sample(self, R: torch.Tensor) -> torch.Tensor:
        """Spectrum about the centre at ``A^T (kx, ky, 0)`` for in-disc points -> ``(B, P)``."""
        # q = kx * A[0, :] + ky * A[1, :], in units of the padded grid: (B, P, 3) as (x, y, z).
        q = torch.matmul(self._kplane, R[:, :2, :])
        flip = q[..., 0] < 0  # use F(-q) = conj(F(q)) on the stored half-spectrum
        q = torch.where(flip[..., None], -q, q)
        grid = ((q + self._grid_offset) * self._grid_scale - 1.0).reshape(-1, 3)
        # The CPU kernel of grid_sample parallelises over its batch dimension only: split the
        # points into one batch entry per thread, against a stride-0 view of the spectrum.
        chunks = 1 if grid.device.type != "cpu" else max(1, min(torch.get_num_threads(), 64))
        n_points = grid.shape[0]
        per_chunk = -(-n_points // chunks) if n_points else 0
        if per_chunk * chunks != n_points:
            grid = F.pad(grid, (0, 0, 0, per_chunk * chunks - n_points))
        spectrum = self._spectrum.expand(chunks, -1, -1, -1, -1)
        out = F.grid_sample(
            spectrum,
            grid.reshape(chunks, 1, 1, per_chunk, 3),
            mode="bilinear",
            padding_mode="zeros",
            align_corners=True,
        )  # (chunks, 2, 1, 1, per_chunk)
        out = out[:, :, 0, 0].permute(1, 0, 2).reshape(2, -1)[:, :n_points]
        out = out.reshape(2, R.shape[0], self._kplane.shape[0])  # (2, B, P)
        return torch.complex(out[0], torch.where(flip, -out[1], out[1]))

    def project(self, rotation_matrices) -> torch.Tensor:
        """Fourier transforms of the projections for a batch of rotations.

        Args:
            rotation_matrices: ``(B, 3, 3)`` (or ``(3, 3)``) matrices ``A`` (RELION
                convention); differentiable.

        Returns:
            Complex ``(B, D, D//2+1)``: ``torch.fft.rfft2`` of the projection whose centre is
            pixel ``(D//2, D//2)``, zero beyond ``max_frequency``.
        """
        R = _as_rotations(rotation_matrices, self.dtype, self.device)
        values = self._sample(R) * self._phase
        D = self.size
        out = torch.zeros(R.shape[0], D * (D // 2 + 1), dtype=values.dtype, device=self.device)
        out = out.index_copy(1, self._index, values)
        return out.view(R.shape[0], D, D // 2 + 1)

    def project_real(self, rotation_matrices) -> torch.Tensor:
        """Real-space projections ``(B, D, D)`` (inverse rfft2 of :meth:`project`)."""
        D = self.size
        return torch.fft.irfft2(self.project(rotation_matrices), s=(D, D))


def real_space_project(volume, rotation_matrices, chunk: int = 1) -> torch.Tensor:
    """Reference projector: rotate by trilinear interpolation and sum along z (slow).

    Args:
        volume: ``(D, D, D)`` real tensor ``[z, y, x]``, centre at voxel ``D // 2``.
        rotation_matrices: ``(B, 3, 3)`` or ``(3, 3)`` matrices ``A``.
        chunk: rotations processed at once (memory ``~ chunk * D^3 * 16`` bytes).

    Returns:
        ``(B, D, D)`` projections ``P(x, y) = sum_z V(A^T (x, y, z))``, centre at
        ``(D//2, D//2)``; points sampled outside the box count as zero.
    """
    vol = torch.as_tensor(volume)
    if vol.dim() != 3 or len(set(vol.shape)) != 1:
        raise ValueError(f"volume must be a cube (D, D, D), got shape {tuple(vol.shape)}")
    if not vol.is_floating_point():
        vol = vol.to(torch.float32)
    R = _as_rotations(rotation_matrices, vol.dtype, vol.device)
    D = vol.shape[0]
    r = torch.arange(D, dtype=vol.dtype, device=vol.device) - D // 2
    z, y, x = torch.meshgrid(r, r, r, indexing="ij")
    pts = torch.stack([x, y, z], dim=-1)  # (D, D, D, 3) output coordinates (x, y, z)
    outs = []
    for start in range(0, R.shape[0], chunk):
        Rc = R[start : start + chunk]
        src = torch.einsum("bji,zyxj->bzyxi", Rc, pts)  # A^T r
        grid = (src + D // 2) * (2.0 / (D - 1)) - 1.0
        inp = vol[None, None].expand(Rc.shape[0], 1, D, D, D)
        rot = F.grid_sample(inp, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        outs.append(rot[:, 0].sum(dim=1))
    return torch.cat(outs)
