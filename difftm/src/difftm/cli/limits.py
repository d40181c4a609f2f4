"""Resource limits of ``difftm search``: sizes checked from the MRC headers, before any
image or volume is read or any memory is allocated.

A search holds several float copies of the micrograph (image, its spectrum, the running
maximum, sum and sum of squares, best-pose maps...) and the template's padded 3D Fourier
transform, so a micrograph of 10^6 x 10^6 pixels or a 4096^3 template would exhaust the
memory long after the command started. The defaults accept every real detector (K3: 5760 x
4092; Falcon 4: 4096 x 4096, super-resolution 2x) and templates up to 1024^3; the options
``--max-shape`` and ``--max-box`` raise them deliberately.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

#: Largest micrograph edge accepted by default, pixels (a super-resolution K3 frame is 11520).
DEFAULT_MAX_SHAPE = 16384
#: Largest template edge accepted by default, voxels (a 1024^3 float volume is 4 GiB).
DEFAULT_MAX_BOX = 1024

MAX_SHAPE_HELP = ("Largest micrograph edge accepted, pixels, checked from the header before "
                  "anything is read [16384]; raise it deliberately.")
MAX_BOX_HELP = ("Largest template edge accepted, voxels, checked from the header before "
                "anything is read [1024]; raise it deliberately.")


def check_limit(option: str, value: int) -> None:
    """Refuse a limit that is not a positive integer.

    Raises:
        ValueError: one line naming ``option``.
    """
    if value < 1:
        raise ValueError(f"{option} must be a positive number of pixels, got {value}")


def check_search_sizes(micrographs: Iterable[str | Path], template: str | Path | None,
                       max_shape: int = DEFAULT_MAX_SHAPE,
                       max_box: int = DEFAULT_MAX_BOX) -> None:
    """Check the micrographs' and the template's sizes from their headers.

    Args:
        micrographs: micrograph MRC files (2D images; each edge at most ``max_shape``).
        template: template MRC file (3D volume; each edge at most ``max_box``), or None.
        max_shape: largest micrograph edge, pixels (``--max-shape``).
        max_box: largest template edge, voxels (``--max-box``).

    Raises:
        ValueError: one line naming the file, its size and the option that raises the limit
            (or a file that is not an MRC file, from the header reader).
    """
    from difftm.io.mrc import read_mrc_header

    check_limit("--max-shape", max_shape)
    check_limit("--max-box", max_box)
    if template is not None:
        shape = read_mrc_header(template)["shape"]
        if len(shape) == 3 and max(shape) > max_box:
            gib = 4 * shape[0] * shape[1] * shape[2] / 2**30
            raise ValueError(f"{template}: template of {' x '.join(map(str, shape))} voxels "
                             f"({gib:.1f} GiB as float32, more for its padded transform) is "
                             f"larger than --max-box {max_box}; raise --max-box to search "
                             "with it")
    for mic in micrographs:
        shape = read_mrc_header(mic)["shape"]
        if len(shape) == 2 and max(shape) > max_shape:
            raise ValueError(f"{mic}: micrograph of {shape[0]} x {shape[1]} pixels is larger "
                             f"than --max-shape {max_shape}; raise --max-shape to search it")
