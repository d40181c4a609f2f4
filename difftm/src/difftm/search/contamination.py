"""Contamination and carbon edges: where a micrograph's local mean departs from its own.

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
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

#: Default largest contamination statistic of a called particle (robust sigmas): twice the
#: largest value a planted particle reached on its own (shot-noise cells of the detection
#: matrix, docs/STATISTICS.md section 6).
MAX_CONTAMINATION = 8.0


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


def searched_micrograph(metadata: dict, shape: tuple[int, int],
                        folder: Path | None = None) -> np.ndarray | None:
    """The micrograph a search read (``metadata["micrograph"]``), or None where it is no
    longer readable or no longer has the maps' shape.

    A relative path is tried as it is (from the working directory), then from the search's
    output ``folder`` and each folder above it (the search may have been run elsewhere).
    """
    from difftm.io.mrc import read_mrc

    recorded = metadata.get("micrograph")
    if not recorded:
        return None
    path = Path(recorded)
    tries = [path]
    if not path.is_absolute() and folder is not None:
        tries += [base / path for base in (Path(folder), *Path(folder).parents)]
    for candidate in tries:
        if not candidate.is_file():
            continue
        try:
            data = read_mrc(candidate).data
        except (OSError, ValueError):
            continue
        if data.ndim == 3 and data.shape[0] == 1:
            data = data[0]
        if data.shape == tuple(shape):
            return data
    return None
