"""Background features that are not particles: contamination, carbon edges, dark blobs.

Ice contamination, carbon edges and aggregates are much larger and darker (or brighter)
than a particle. Whitening cannot flatten them (it equalises the average spectrum, not a
local object), and their edges correlate with a template in many poses: on the detection
matrix's real-background crops they held most of the false positives that pass the erfc
threshold (docs/STATISTICS.md section 6). Pickers exclude such regions; so does the default
call here.

The statistic of a pixel is the largest robust z-score, within about half a template
diameter, of the micrograph smoothed by a Gaussian of one template diameter:
``|g(x) - median(g)| / (1.4826 * MAD(g))``. A particle changes the local mean of the image by
little after that smoothing (at most 3.98 robust sigmas for every planted particle of the
matrix's shot-noise cells, 8 kDa to 2.3 MDa, 30-60 e/A^2); the default limit is twice that.

Particle-sized blobs (dark objects of the background about as large as the template, much
stronger than a particle of it could be) pass that statistic, which smooths over a whole
diameter. The second statistic, :func:`excess_contrast`, looks at the particle's own scale in
the whitened micrograph the search correlated: the correlation with a Gaussian blob of
sigma :data:`BLOB_SIGMA_DIAMETERS` template diameters, less the part of it that the called
template explains (a particle of SNR ``s`` at pose ``t`` contributes ``s <t, b> / <t, t>``),
in robust sigmas of the micrograph's own blob-correlation map. Under the model "template
plus noise" it is the blob correlation's noise, of order 1 robust sigma wherever the
candidate is a particle, however strong; a blob that the template matches only in part
leaves a large remainder.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

#: Default largest contamination statistic of a called particle (robust sigmas): twice the
#: largest value a planted particle reached on its own (shot-noise cells of the detection
#: matrix, docs/STATISTICS.md section 6).
MAX_CONTAMINATION = 8.0
#: Gaussian sigma of the particle-scale blob of :func:`excess_contrast`, in template diameters.
BLOB_SIGMA_DIAMETERS = 0.25
#: Default largest ``|excess contrast|`` of a called particle (robust sigmas): chosen on the
#: detection matrix (leave-one-target-out folds, docs/STATISTICS.md section 6); planted
#: particles off contamination reached at most 4.1 there.
MAX_EXCESS_CONTRAST = 6.75


def contamination_map(image: np.ndarray, diameter_px: float) -> np.ndarray:
    """Per pixel, the largest robust z-score of the smoothed micrograph within about half a
    template diameter (float64, the image's shape).

    The smoothing (a Gaussian of one diameter) is computed on the micrograph binned by a
    quarter diameter (block means; a K3 micrograph then takes well under a second) and the
    result is expanded back to the micrograph's pixels.

    Args:
        image: the micrograph, [y, x].
        diameter_px: the template's diameter in pixels (smoothing scale and window).
    """
    from scipy import ndimage

    from difftm.stats.robust import median_sigma

    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"micrograph must be 2D, got shape {img.shape}")
    if not (diameter_px > 0 and math.isfinite(diameter_px)):
        raise ValueError(f"template diameter must be a positive number, got {diameter_px}")
    f = max(1, int(diameter_px // 4))
    h, w = img.shape
    hb, wb = -(-h // f), -(-w // f)
    padded = np.pad(img, ((0, hb * f - h), (0, wb * f - w)), mode="edge")
    binned = padded.reshape(hb, f, wb, f).mean(axis=(1, 3))
    smooth = ndimage.gaussian_filter(binned, float(diameter_px) / f, mode="reflect")
    med, sigma = median_sigma(smooth)
    z = np.abs(smooth - med) / max(sigma, 1e-12 * max(abs(med), 1.0))
    window = 2 * int(round(0.5 * diameter_px / f)) + 1
    zmax = ndimage.maximum_filter(z, size=window, mode="nearest")
    return np.repeat(np.repeat(zmax, f, axis=0), f, axis=1)[:h, :w]


def recorded_file(recorded: str | Path | None, folder: Path | None = None) -> Path | None:
    """The file a search recorded (``metadata["micrograph"]``, ``config.yaml``'s paths), or
    None where it is no longer there.

    A relative path is tried as it is (from the working directory), then from the search's
    output ``folder`` and each folder above it (the search may have been run elsewhere).
    """
    if not recorded:
        return None
    path = Path(recorded)
    tries = [path]
    if not path.is_absolute() and folder is not None:
        tries += [base / path for base in (Path(folder), *Path(folder).parents)]
    return next((c for c in tries if c.is_file()), None)


def searched_micrograph(metadata: dict, shape: tuple[int, int],
                        folder: Path | None = None) -> np.ndarray | None:
    """The micrograph a search read (``metadata["micrograph"]``, found by
    :func:`recorded_file`), or None where it is no longer readable or no longer has the
    maps' shape."""
    from difftm.io.mrc import read_mrc

    path = recorded_file(metadata.get("micrograph"), folder)
    if path is None:
        return None
    try:
        data = read_mrc(path).data
    except (OSError, ValueError):
        return None
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    return data if data.shape == tuple(shape) else None


def searched_scorer(folder: Path | None, shape: tuple[int, int],
                    projector_oversampling: int | None = 1):
    """The scorer (:class:`difftm.refine.scorer.ParticleScorer`, on the CPU) of the search
    whose output ``folder`` holds ``config.yaml``: the micrograph prepared exactly as the
    search prepared it and the template's projector (by default oversampling 1:
    :func:`excess_contrast` needs the templates' low frequencies only; None: the search's
    own). None where the folder, its configuration, the micrograph (with the maps'
    ``shape``) or the template is no longer readable."""
    from difftm.refine.scorer import ParticleScorer
    from difftm.search.config import load_config
    from difftm.search.engine import _load_inputs, resolve_pixel_size

    if folder is None or not (Path(folder) / "config.yaml").is_file():
        return None
    try:
        cfg = load_config(Path(folder) / "config.yaml", {})
        found = {name: recorded_file(getattr(cfg, name), Path(folder))
                 for name in ("micrograph", "template")}
        if None in found.values():
            return None
        if projector_oversampling is not None:
            found["projector_oversampling"] = projector_oversampling
        cfg = resolve_pixel_size(cfg.model_copy(update=found))
        image, volume = _load_inputs(cfg)
    except (OSError, ValueError):
        return None
    if image.shape != tuple(shape):
        return None
    return ParticleScorer.from_search(cfg, image, volume, device="cpu")


def excess_contrast(scorer, valid: np.ndarray, diameter_px: float, y: np.ndarray,
                    x: np.ndarray, snr: np.ndarray, angles: np.ndarray,
                    defocus_offsets: np.ndarray, batch: int = 32) -> np.ndarray:
    """Particle-scale contrast at candidates that their templates do not explain, in robust
    sigmas (module docstring): ``(m(p) - s <t, b> / <t, t> - median(m)) / (1.4826 MAD(m))``.

    ``m`` is the correlation of the search's whitened micrograph with ``b``, a Gaussian of
    sigma :data:`BLOB_SIGMA_DIAMETERS` diameters in the template box (mean removed, unit
    norm); ``t`` the candidate's template (its pose and defocus, the search's filters); ``s``
    its SNR; median and MAD over the searched (``valid``) pixels.

    Args:
        scorer: :func:`searched_scorer` of the search.
        valid: (H, W) searched pixels of the maps.
        diameter_px: the template's diameter in pixels.
        y, x: candidate pixels; snr: their SNR; angles: (n, 3) RELION Euler angles in
            degrees; defocus_offsets: (n,) Angstrom.
        batch: templates built at a time.

    Returns:
        (n,) float64, signed (negative: darker than the template explains).
    """
    import torch

    from difftm.geometry.euler import euler_to_matrix
    from difftm.stats.robust import median_sigma

    b = blob_kernel(int(scorer.size), BLOB_SIGMA_DIAMETERS * float(diameter_px))
    h, w = np.asarray(valid).shape
    m = blob_correlation(scorer.image.detach().cpu().numpy(), b, (h, w))
    med, spread = median_sigma(m[np.asarray(valid, dtype=bool)])
    n = len(y)
    explained = np.zeros(n)
    bt = torch.as_tensor(b, dtype=torch.float32)
    with torch.no_grad():
        for i in range(0, n, batch):
            rot = euler_to_matrix(torch.tensor(np.array(angles[i:i + batch], float)))
            dz = torch.tensor(np.array(defocus_offsets[i:i + batch], float),
                              dtype=torch.float32)
            t = scorer.templates(rot.float(), dz).cpu()
            tb = (t * bt).sum(dim=(1, 2)).double().numpy()
            tt = (t * t).sum(dim=(1, 2)).double().numpy()
            explained[i:i + batch] = np.asarray(snr[i:i + batch], float) * tb / tt
    y = np.asarray(y, dtype=int)
    x = np.asarray(x, dtype=int)
    return (m[y, x] - explained - med) / max(spread, 1e-12)


def blob_kernel(size: int, sigma: float) -> np.ndarray:
    """A Gaussian of ``sigma`` pixels centred at ``size // 2`` of a ``size`` x ``size`` box
    (the scorer's template box), mean removed, unit L2 norm (float64)."""
    c = size // 2
    yy, xx = np.mgrid[0:size, 0:size] - c
    b = np.exp(-(yy**2 + xx**2) / (2.0 * sigma * sigma))
    b -= b.mean()
    return b / np.sqrt((b**2).sum())


def blob_correlation(image: np.ndarray, kernel: np.ndarray,
                     shape: tuple[int, int]) -> np.ndarray:
    """``m(q) = sum_u kernel(u) image(q + u - c)``, c = ``kernel.shape[0] // 2`` (the scorer's
    correlation of a centred template with the micrograph; zero beyond the image), for q in
    the top-left ``shape`` block (float64)."""
    from scipy.signal import fftconvolve

    p = kernel.shape[0]
    c = p // 2
    h, w = shape
    # a full convolution with the flipped kernel, read from offset p - 1 - c
    full = fftconvolve(np.asarray(image, dtype=np.float64), kernel[::-1, ::-1], mode="full")
    return full[p - 1 - c:p - 1 - c + h, p - 1 - c:p - 1 - c + w]
