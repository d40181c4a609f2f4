"""MRC/CCP4 images and volumes (the cryo-EM file format), read and written through mrcfile.

Reading is permissive (old headers, e.g. pre-MRC2014 files from motion-correction programs,
are common) and then validated here, so that a bad file gives one line that names it:
missing, truncated, not an MRC file, complex data, NaN/inf values. Data come back as float32
arrays indexed [y, x] (2D) or [z, y, x] (3D); a single section (nz = 1) is returned as 2D.
Files whose header assigns the columns, rows and sections to other axes (mapc/mapr/maps not
1, 2, 3) are reordered to that convention; an impossible assignment is refused.

Pixel size: the header voxel size (cell / grid) in Angstrom, x axis. A header that carries no
calibration (voxel size 0, or exactly 1.0 with the cell equal to the grid, which is what many
programs write when they do not know it) is flagged with ``pixel_size_calibrated = False``
and a message in ``warnings``; commands then ask the user for ``--pixel-size``.

Writing produces MRC2014 files (mode 2, float32) with header statistics (min, max, mean,
rms), atomically, and never replaces an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

import os
import warnings as _warnings
from dataclasses import dataclass, field
from pathlib import Path

import mrcfile
import numpy as np

from difftm.io.atomic import atomic_output

__all__ = ["MrcImage", "read_mrc", "read_mrc_header", "write_mrc"]

_HEADER_BYTES = 1024
_REAL_MODES = {0: np.int8, 1: np.int16, 2: np.float32, 6: np.uint16, 12: np.float16}


@dataclass
class MrcImage:
    """An image or volume read from an MRC file.

    Attributes:
        data: float32 array, [y, x] for images, [z, y, x] for volumes and stacks.
        pixel_size: Angstrom per pixel (x axis of the header voxel size; 1.0 when the header
            has none).
        pixel_size_calibrated: False when the header carries no real calibration.
        is_stack: True when the header says image stack (ispg 0 with nz > 1).
        path: the file read.
        warnings: header problems found while reading (one line each).
        nversion: header format version (20140 for MRC2014, 0 for older headers).
    """

    data: np.ndarray
    pixel_size: float
    pixel_size_calibrated: bool = True
    is_stack: bool = False
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    nversion: int = 0

    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape, [y, x] or [z, y, x]."""
        return tuple(self.data.shape)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected an MRC file")
    if path.stat().st_size < _HEADER_BYTES:
        raise ValueError(
            f"{path}: not an MRC file (only {path.stat().st_size} bytes, "
            f"an MRC header alone is {_HEADER_BYTES})"
        )


def _open_permissive(path: Path, header_only: bool):
    """Check the file, then open it with mrcfile in permissive mode, collecting its warnings
    as strings."""
    _check_file(path)
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        try:
            mrc = mrcfile.open(path, mode="r", permissive=True, header_only=header_only)
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(f"{path}: not a readable MRC file ({err})") from None
    return mrc, [str(w.message).splitlines()[0] for w in caught]


def _grid_size(header, path: Path) -> tuple[int, int, int]:
    """(nx, ny, nz) of a header; a non-positive size means the file is not an MRC file."""
    nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
    if min(nx, ny, nz) <= 0:
        raise ValueError(f"{path}: not an MRC file (grid size {nx} x {ny} x {nz})")
    return nx, ny, nz


def _pixel_size(header, path: Path) -> tuple[float, bool, list[str]]:
    """Pixel size (A) from the header, whether it is a real calibration, and warnings."""
    notes: list[str] = []
    nx, ny = int(header.nx), int(header.ny)
    mx, my = int(header.mx), int(header.my)
    cx, cy = float(header.cella.x), float(header.cella.y)
    sx = cx / mx if mx > 0 else 0.0
    sy = cy / my if my > 0 else 0.0
    if not np.isfinite(sx) or sx <= 0:
        notes.append(f"{path.name}: header has no pixel size (cell or grid is 0); using 1.0 A")
        return 1.0, False, notes
    if np.isfinite(sy) and sy > 0 and abs(sx - sy) > 1e-3 * sx:
        notes.append(f"{path.name}: anisotropic pixel size x={sx:.4f} y={sy:.4f} A; using x")
    if sx == 1.0 and cx == float(nx) and cy == float(ny):
        notes.append(
            f"{path.name}: header pixel size 1.0 A with cell = grid size, i.e. no calibration "
            "recorded; give the pixel size explicitly"
        )
        return 1.0, False, notes
    return float(sx), True, notes


def _standard_axis_order(data: np.ndarray, header, shape: tuple[int, int, int],
                         path: Path) -> np.ndarray:
    """Reorder data stored with other axis assignments (mapc/mapr/maps) to [z, y, x].

    The file's columns, rows and sections run along the axes ``mapc``, ``mapr`` and ``maps``
    (1 = x, 2 = y, 3 = z). Most files use 1, 2, 3; some programs write volumes in another
    order. An unset order (0, 0, 0; old headers) is taken as 1, 2, 3.

    Raises:
        ValueError: the three values are not a permutation of 1, 2, 3 (one line).
    """
    order = (int(header.mapc), int(header.mapr), int(header.maps))
    if order in ((1, 2, 3), (0, 0, 0)):
        return data
    if sorted(order) != [1, 2, 3]:
        raise ValueError(f"{path}: invalid axis order mapc/mapr/maps = {order} in the header "
                         "(expected a permutation of 1, 2, 3)")
    cube = data.reshape(shape)  # [sections, rows, columns]
    along = (order[2], order[1], order[0])  # axis number of array axes 0, 1, 2
    perm = [along.index(a) for a in (3, 2, 1)]
    return np.ascontiguousarray(cube.transpose(perm))


def _expected_data_bytes(header) -> int:
    mode = int(header.mode)
    if mode not in _REAL_MODES:
        return -1
    itemsize = np.dtype(_REAL_MODES[mode]).itemsize
    return int(header.nx) * int(header.ny) * int(header.nz) * itemsize


def read_mrc_header(path: str | os.PathLike) -> dict:
    """Read only the header of an MRC file (fast, no data).

    Args:
        path: MRC file.

    Returns:
        Dict with ``shape`` ([z,] y, x, as the data would come back), ``mode``, ``pixel_size``
        (A), ``pixel_size_calibrated``, ``nversion``, ``header_stats`` (min, max, mean, rms as
        stored), ``is_stack`` and ``warnings``.

    Raises:
        FileNotFoundError, ValueError: missing file or not an MRC file (one line).
    """
    path = Path(path)
    mrc, notes = _open_permissive(path, header_only=True)
    with mrc:
        header = mrc.header
        nx, ny, nz = _grid_size(header, path)
        pixel_size, calibrated, more = _pixel_size(header, path)
        shape = (ny, nx) if nz == 1 else (nz, ny, nx)
        return {
            "shape": shape,
            "mode": int(header.mode),
            "pixel_size": pixel_size,
            "pixel_size_calibrated": calibrated,
            "nversion": int(header.nversion),
            "header_stats": {
                "min": float(header.dmin),
                "max": float(header.dmax),
                "mean": float(header.dmean),
                "rms": float(header.rms),
            },
            "is_stack": bool(nz > 1 and int(header.ispg) == 0),
            "warnings": notes + more,
        }


def read_mrc(path: str | os.PathLike, allow_nonfinite: bool = False) -> MrcImage:
    """Read an MRC image or volume as float32.

    Args:
        path: ``.mrc``/``.mrcs``/``.map``/``.ccp4`` file (gzip or bzip2 compressed also works).
        allow_nonfinite: keep NaN/inf values (and report them in ``warnings``) instead of
            raising.

    Returns:
        :class:`MrcImage` with data [y, x] (nz = 1) or [z, y, x].

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an MRC file, truncated, complex or unknown data mode, or NaN/inf
            values (unless ``allow_nonfinite``); the message is one line naming the file.
    """
    path = Path(path)
    mrc, notes = _open_permissive(path, header_only=False)
    with mrc:
        header = mrc.header
        nx, ny, nz = _grid_size(header, path)
        mode = int(header.mode)
        if mode not in _REAL_MODES:
            kind = "complex" if mode in (3, 4) else f"unknown mode {mode}"
            raise ValueError(f"{path}: unsupported MRC data ({kind}); expected real values")
        if mrc.data is None:
            expected = _expected_data_bytes(header)
            have = path.stat().st_size - _HEADER_BYTES - int(header.nsymbt)
            if 0 <= have < expected:
                raise ValueError(
                    f"{path}: truncated MRC file ({have} of {expected} data bytes present)"
                )
            reason = notes[0] if notes else "no data block"
            raise ValueError(f"{path}: not a readable MRC file ({reason})")
        data = np.asarray(mrc.data, dtype=np.float32).copy()
        data = _standard_axis_order(data, header, (nz, ny, nx), path)
        pixel_size, calibrated, more = _pixel_size(header, path)
        is_stack = bool(nz > 1 and int(header.ispg) == 0)
        nversion = int(header.nversion)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    notes = [n for n in notes if n] + more
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        message = f"{path}: {bad} of {data.size} values are NaN or infinite"
        if not allow_nonfinite:
            raise ValueError(message)
        notes.append(message)
    return MrcImage(
        data=data,
        pixel_size=pixel_size,
        pixel_size_calibrated=calibrated,
        is_stack=is_stack,
        path=path,
        warnings=notes,
        nversion=nversion,
    )


def write_mrc(
    path: str | os.PathLike,
    data,
    pixel_size: float,
    overwrite: bool = False,
    is_stack: bool = False,
) -> Path:
    """Write an image or volume as an MRC2014 float32 file, atomically.

    Args:
        path: output file (its folder must exist).
        data: array-like or torch tensor, [y, x] or [z, y, x]; converted to float32.
        pixel_size: Angstrom per pixel (> 0), stored as the voxel size on every axis.
        overwrite: replace an existing file; otherwise :class:`FileExistsError`.
        is_stack: mark a 3D array as an image stack (ispg 0) instead of a volume.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: bad pixel size, dimensionality, or NaN/inf values in ``data``.
    """
    path = Path(path)
    if hasattr(data, "detach"):  # torch tensor
        data = data.detach().cpu().numpy()
    array = np.ascontiguousarray(np.asarray(data, dtype=np.float32))
    if array.ndim not in (2, 3):
        raise ValueError(f"{path}: can only write 2D or 3D data, got shape {array.shape}")
    if min(array.shape) == 0:
        raise ValueError(f"{path}: refusing to write empty data of shape {array.shape}")
    if not (np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"{path}: pixel size must be positive, got {pixel_size}")
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise ValueError(f"{path}: refusing to write {bad} NaN or infinite values")
    with atomic_output(path, overwrite=overwrite) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(array)  # also updates header statistics (dmin, dmax, dmean, rms)
            if array.ndim == 3:
                if is_stack:
                    mrc.set_image_stack()
                else:
                    mrc.set_volume()
            mrc.voxel_size = float(pixel_size)
            mrc.update_header_stats()
    return path
