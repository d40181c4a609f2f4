"""Direct Fourier insertion (back-projection) into a padded 3D half-spectrum.

The forward model is difftm's Fourier-slice projector
(:class:`difftm.fourier.projector.FourierSliceProjector`): the ``rfft2`` of the projection of a
volume for the RELION matrix ``A`` is the volume's 3D spectrum, taken about its centre voxel,
at ``q = A^T (kx, ky, 0)``, read by trilinear interpolation from the spectrum of the volume
zero-padded to ``N``. Insertion is the transpose of that read: every image coefficient is
spread with the same eight trilinear weights onto the grid nodes around ``q`` (points with
``qx < 0`` go to ``-q`` conjugated, the Hermitian half the grid stores). :func:`backproject`
is the exact adjoint of :meth:`FourierSliceProjector.project` (tests pin ``<P v, I> = <v,
P^T I>``); :class:`FourierAccumulator` uses the same scatter to accumulate, per half-set,

    data(q)   = sum_i w_i(q) CTF_i(k) X_i(k)          (X_i: particle spectrum)
    weight(q) = sum_i w_i(q) CTF_i(k)^2

and a reconstruction is ``data / (weight + tau(|q|))`` (:mod:`difftm.reconstruct.run` states
the regularisation ``tau``), inverse FFT, crop to the box, and division by the real-space
kernel of trilinear interpolation, ``sinc^2(r / N)`` per axis (the gridding correction).

Images may be padded to ``M = N`` before their FFT (as RELION does): their coefficients then
fall on integer-spaced points of the 3D grid and every node near the slice receives data.

Layout: the 3D spectrum is stored in ``torch.fft.rfftn`` order of the padded volume
``ifftshift``-ed about its centre voxel ``N // 2`` (frequencies wrap modulo ``N`` in z and y;
x runs over ``0 .. N//2``), as three flat float64 arrays (real and imaginary data, weight).
Accumulation uses ``index_add_`` in a fixed order; float64 sums make the result independent of
the thread count to rounding far below single precision (a test checks bitwise equality with
1 and 2 threads).

Memory: ``3 * 8 * N^2 (N/2 + 1)`` bytes per accumulator (box 128, padding 2: 0.8 GB; box 256,
padding 1: 0.8 GB; box 512, padding 1: 6.5 GB); see :func:`accumulator_bytes`.
"""

from __future__ import annotations

import math

import torch

from difftm.fourier.padding import crop_center

__all__ = [
    "FourierAccumulator",
    "accumulator_bytes",
    "backproject",
    "gridding_kernel",
    "padded_size",
    "plane_coordinates",
    "scatter_indices",
]


def padded_size(box: int, padding: float) -> int:
    """Edge ``N`` of the padded 3D grid: ``ceil(padding * box)`` rounded up to even."""
    if not (padding >= 1.0 and math.isfinite(padding)):
        raise ValueError(f"padding must be a finite number >= 1, got {padding}")
    n = int(math.ceil(padding * box))
    return n + (n % 2)


def accumulator_bytes(box: int, padding: float) -> int:
    """Bytes of one :class:`FourierAccumulator` (data real/imag and weight, float64)."""
    n = padded_size(box, padding)
    return 3 * 8 * n * n * (n // 2 + 1)


def plane_coordinates(
    image_size: int, grid_size: int, max_frequency: float = 0.5,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """In-plane points of an ``image_size`` rfft2 layout, in units of the 3D grid.

    Args:
        image_size: ``M``, the edge of the (square) images whose ``rfft2`` is inserted.
        grid_size: ``N``, the edge of the padded 3D grid.
        max_frequency: keep points with ``|k| <= max_frequency`` (cycles per image pixel).
        device: of the results.

    Returns:
        ``(index, kplane, phase)``: flat indices into the ``(M, M//2+1)`` layout of the kept
        points, their ``(kx, ky) * N`` coordinates ``(P, 2)`` float64, and the complex128
        factor ``exp(+2 pi i (M//2) (kx + ky))`` that moves the origin of an image whose
        centre is pixel ``(M//2, M//2)`` to that centre (the conjugate of the projector's).
    """
    m = int(image_size)
    ky = torch.fft.fftfreq(m, device=device, dtype=torch.float64)
    kx = torch.fft.rfftfreq(m, device=device, dtype=torch.float64)
    kyy, kxx = torch.meshgrid(ky, kx, indexing="ij")
    inside = (kxx**2 + kyy**2).reshape(-1) <= max_frequency**2 + 1e-12
    index = inside.nonzero()[:, 0]
    kxi, kyi = kxx.reshape(-1)[index], kyy.reshape(-1)[index]
    kplane = torch.stack([kxi, kyi], -1) * grid_size
    phase = torch.exp(2j * math.pi * (m // 2) * (kxi + kyi))
    return index, kplane, phase


def scatter_indices(q: torch.Tensor, grid_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Trilinear nodes and weights of points ``q`` (``(..., 3)`` as x, y, z; ``qx >= 0``).

    Returns:
        ``(index, weight)``, each ``(..., 8)``: flat indices into the ``(N, N, N//2+1)``
        half-spectrum (z, y wrap modulo ``N``) and the trilinear weights; nodes beyond
        ``x = N//2`` get weight 0 (their index is clamped).
    """
    n = int(grid_size)
    nx = n // 2 + 1
    base = torch.floor(q)
    frac = q - base
    base = base.to(torch.int64)
    idx, wts = [], []
    for dz in (0, 1):
        wz = frac[..., 2] if dz else 1.0 - frac[..., 2]
        iz = torch.remainder(base[..., 2] + dz, n)
        for dy in (0, 1):
            wy = frac[..., 1] if dy else 1.0 - frac[..., 1]
            iy = torch.remainder(base[..., 1] + dy, n)
            for dx in (0, 1):
                wx = frac[..., 0] if dx else 1.0 - frac[..., 0]
                ix = base[..., 0] + dx
                valid = ix < nx
                ix = torch.clamp(ix, max=nx - 1)
                idx.append((iz * n + iy) * nx + ix)
                wts.append(torch.where(valid, wz * wy * wx, torch.zeros_like(wx)))
    return torch.stack(idx, -1), torch.stack(wts, -1)


def _slice_points(
    kplane: torch.Tensor, rotations: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``q = A^T (kx, ky, 0)`` for each rotation, folded to ``qx >= 0``: ``(B, P, 3)`` and
    the ``(B, P)`` mask of points that were flipped (their value is conjugated)."""
    q = torch.matmul(kplane, rotations[:, :2, :])  # kx * A[0, :] + ky * A[1, :]
    flip = q[..., 0] < 0
    q = torch.where(flip[..., None], -q, q)
    return q, flip


def gridding_kernel(box: int, grid_size: int, dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Real-space kernel ``prod_i sinc^2(r_i / N)`` of trilinear interpolation, ``(D, D, D)``
    about the centre voxel ``D // 2`` (divide a reconstruction by it)."""
    r = torch.arange(box, dtype=dtype, device=device) - box // 2
    w = torch.sinc(r / grid_size) ** 2
    return w[:, None, None] * w[None, :, None] * w[None, None, :]


def backproject(
    spectra: torch.Tensor,
    rotations: torch.Tensor,
    oversampling: float = 2.0,
    gridding_correction: bool = True,
    max_frequency: float = 0.5,
) -> torch.Tensor:
    """The exact adjoint of :meth:`FourierSliceProjector.project` (for tests and checks).

    With ``P`` the projector built with the same ``oversampling``, ``gridding_correction``
    and ``max_frequency``, ``sum Re(conj(P v) * I) == sum v * backproject(I)`` for every
    real volume ``v`` and complex ``I``. Builds a full complex ``N^3`` array: small boxes
    only.

    Args:
        spectra: complex ``(B, D, D//2+1)`` image spectra in the projector's output layout.
        rotations: ``(B, 3, 3)`` RELION matrices.
        oversampling, gridding_correction, max_frequency: as the projector's.

    Returns:
        ``(D, D, D)`` float64 volume ``[z, y, x]``.
    """
    spectra = torch.as_tensor(spectra).to(torch.complex128)
    if spectra.dim() == 2:
        spectra = spectra.unsqueeze(0)
    rotations = torch.as_tensor(rotations, dtype=torch.float64).reshape(-1, 3, 3)
    d = spectra.shape[-2]
    n = int(math.ceil(oversampling * d))
    n += n % 2
    index, kplane, phase = plane_coordinates(d, n, max_frequency)
    # The projector multiplies by exp(-2 pi i (D//2)(kx+ky)); its adjoint by the conjugate.
    values = spectra.reshape(spectra.shape[0], -1)[:, index] * phase
    q, flip = _slice_points(kplane, rotations)
    values = torch.where(flip, values.conj(), values)
    idx, w = scatter_indices(q, n)
    nx = n // 2 + 1
    acc_re = torch.zeros(n * n * nx, dtype=torch.float64)
    acc_im = torch.zeros(n * n * nx, dtype=torch.float64)
    contrib = w * values[..., None]
    acc_re.index_add_(0, idx.reshape(-1), contrib.real.reshape(-1))
    acc_im.index_add_(0, idx.reshape(-1), contrib.imag.reshape(-1))
    half = torch.complex(acc_re, acc_im).reshape(n, n, nx)
    full = torch.zeros(n, n, n, dtype=torch.complex128)
    full[:, :, :nx] = half
    # Adjoint of x -> rfftn(x) under Re<.,.>: Re(N^3 ifftn(half zero-filled)).
    vol = (torch.fft.ifftn(full, dim=(0, 1, 2)) * n**3).real
    vol = crop_center(torch.fft.fftshift(vol, dim=(0, 1, 2)), (d, d, d))
    if gridding_correction:
        vol = vol / gridding_kernel(d, n)
    return vol.contiguous()


class FourierAccumulator:
    """Sums of CTF-weighted particle spectra and of CTF^2 on a padded 3D half-spectrum.

    Args:
        box: ``D``, edge of the particle images and of the reconstructed volume.
        padding: the 3D grid has edge ``N = padded_size(box, padding)``; particle images are
            zero-padded to ``N`` before their FFT.
        max_frequency: insert coefficients with ``|k| <= max_frequency`` cycles per pixel of
            the box (0.5: the Nyquist sphere).
        device: where the sums live.
    """

    def __init__(self, box: int, padding: float = 2.0, max_frequency: float = 0.5,
                 device: torch.device | str | None = None) -> None:
        if int(box) != box or box < 4:
            raise ValueError(f"box must be an integer >= 4, got {box}")
        if not 0.0 < max_frequency <= 0.5:
            raise ValueError(f"max_frequency must be in (0, 0.5] cycles/px, got {max_frequency}")
        self.box = int(box)
        self.grid_size = n = padded_size(self.box, padding)
        self.max_frequency = float(max_frequency)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        size = n * n * (n // 2 + 1)
        self.data_re = torch.zeros(size, dtype=torch.float64, device=self.device)
        self.data_im = torch.zeros(size, dtype=torch.float64, device=self.device)
        self.weight = torch.zeros(size, dtype=torch.float64, device=self.device)
        # The padded images' points: max_frequency of the box = max_frequency * N/N cycles/px
        # of the padded image (same physical frequency).
        index, kplane, phase = plane_coordinates(n, n, self.max_frequency, self.device)
        self._index, self._kplane, self._phase = index, kplane, phase
        self.count = 0

    def insert(self, spectra: torch.Tensor, rotations: torch.Tensor,
               ctf: torch.Tensor | None = None) -> None:
        """Add a batch of particles.

        Args:
            spectra: complex ``(B, N, N//2+1)``: ``rfft2`` of the particle images zero-padded
                to ``N`` with their centre at pixel ``(N//2, N//2)``
                (:func:`difftm.reconstruct.extract.particle_spectra`).
            rotations: ``(B, 3, 3)`` RELION matrices of the particles (each may repeat with
                symmetry-related matrices).
            ctf: real ``(B, N, N//2+1)`` CTF of each particle on the same grid (None: 1).
        """
        n = self.grid_size
        spectra = spectra.to(device=self.device, dtype=torch.complex128)
        if spectra.shape[-2:] != (n, n // 2 + 1):
            raise ValueError(f"spectra must be (B, {n}, {n // 2 + 1}), got {tuple(spectra.shape)}")
        rotations = rotations.to(device=self.device, dtype=torch.float64).reshape(-1, 3, 3)
        b = spectra.shape[0]
        values = spectra.reshape(b, -1)[:, self._index] * self._phase
        if ctf is None:
            c = torch.ones(values.shape, dtype=torch.float64, device=self.device)
        else:
            c = ctf.to(device=self.device, dtype=torch.float64).reshape(b, -1)[:, self._index]
        values = values * c
        q, flip = _slice_points(self._kplane, rotations)
        values = torch.where(flip, values.conj(), values)
        idx, w = scatter_indices(q, n)
        idx = idx.reshape(-1)
        contrib = w * values[..., None]
        self.data_re.index_add_(0, idx, contrib.real.reshape(-1))
        self.data_im.index_add_(0, idx, contrib.imag.reshape(-1))
        self.weight.index_add_(0, idx, (w * (c * c)[..., None]).reshape(-1))
        self.count += b

    def add(self, other: FourierAccumulator) -> FourierAccumulator:
        """A new accumulator holding the sums of both (same box and grid)."""
        if (other.box, other.grid_size) != (self.box, self.grid_size):
            raise ValueError("can only add accumulators of the same box and padding")
        out = FourierAccumulator.__new__(FourierAccumulator)
        out.__dict__.update(self.__dict__)
        out.data_re = self.data_re + other.data_re
        out.data_im = self.data_im + other.data_im
        out.weight = self.weight + other.weight
        out.count = self.count + other.count
        return out

    def hermitian_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(data, weight)`` as ``(N, N, N//2+1)`` arrays with the ``x = 0`` and ``x = N/2``
        planes made Hermitian: each node there also receives what was inserted at its mirror
        ``(-y, -z)`` (conjugated), the contributions the stored half cannot hold."""
        n = self.grid_size
        data = torch.complex(self.data_re, self.data_im).reshape(n, n, n // 2 + 1).clone()
        weight = self.weight.reshape(n, n, n // 2 + 1).clone()
        mirror = (-torch.arange(n, device=self.device)) % n
        for x in (0, n // 2):
            plane, wplane = data[:, :, x], weight[:, :, x]
            data[:, :, x] = plane + plane[mirror][:, mirror].conj()
            weight[:, :, x] = wplane + wplane[mirror][:, mirror]
        return data, weight

    def radial_shells(self) -> torch.Tensor:
        """Shell index ``round(|q| * D / N)`` (shells of the box, 1/D cycles/px wide) of
        every node, ``(N, N, N//2+1)`` int64."""
        n = self.grid_size
        kz = torch.fft.fftfreq(n, device=self.device, dtype=torch.float64)
        kx = torch.fft.rfftfreq(n, device=self.device, dtype=torch.float64)
        r = torch.sqrt(kz[:, None, None] ** 2 + kz[None, :, None] ** 2 + kx[None, None, :] ** 2)
        return torch.round(r * self.box).to(torch.int64)

    def reconstruct(self, tau: torch.Tensor | float = 0.0) -> torch.Tensor:
        """``data / (weight + tau)``, inverse FFT, crop, gridding correction.

        Args:
            tau: regularisation added to the weight: a number or an ``(N, N, N//2+1)``
                array (e.g. per shell); nodes where ``weight + tau`` is 0 give 0.

        Returns:
            ``(D, D, D)`` float64 volume ``[z, y, x]``, centre at voxel ``D // 2``.
        """
        data, weight = self.hermitian_sums()
        denom = weight + tau
        spec = torch.where(denom > 0, data / torch.where(denom > 0, denom, 1.0), 0.0)
        return self.volume_from_spectrum(spec)

    def volume_from_spectrum(self, spec: torch.Tensor) -> torch.Tensor:
        """Inverse FFT of a half-spectrum on this grid, cropped and gridding-corrected."""
        n, d = self.grid_size, self.box
        vol = torch.fft.irfftn(spec, s=(n, n, n), dim=(0, 1, 2))
        vol = crop_center(torch.fft.fftshift(vol, dim=(0, 1, 2)), (d, d, d)).contiguous()
        return vol / gridding_kernel(d, n, device=self.device)

