"""RELION 3.1+ particle tables (STAR files with ``data_optics`` and ``data_particles``).

Files are read and written through ``starfile``; tables are pandas DataFrames whose columns
are the STAR labels without the leading underscore.

Columns written by difftm
-------------------------
``data_optics`` (one row per optics group):

=========================== ==================================================
rlnOpticsGroup              integer id, 1, 2, ...
rlnOpticsGroupName          e.g. ``opticsGroup1``
rlnVoltage                  kV
rlnSphericalAberration      mm
rlnAmplitudeContrast        fraction (0.07 for cryo samples)
rlnMicrographPixelSize      Angstrom per pixel of the micrograph
rlnImagePixelSize           Angstrom per pixel of (future) extracted particles
=========================== ==================================================

``data_particles`` (one row per particle). RELION labels, read by RELION and cisTEM tools:

=========================== ==================================================
rlnCoordinateX, Y           particle centre in micrograph pixels, x = column,
                            y = row of the [y, x] array, counted from 0 at the
                            first pixel (difftm's position convention)
rlnAngleRot, Tilt, Psi      ZYZ Euler angles, degrees, RELION convention
rlnDefocusU, V              Angstrom, positive = underfocus
rlnDefocusAngle             degrees, astigmatism angle from the x axis
rlnPhaseShift               degrees, phase-plate phase shift of the CTF
rlnCtfBfactor               A^2, envelope B-factor of the CTF
rlnOpticsGroup              row of ``data_optics``
rlnMicrographName           micrograph file the particle was found in
rlnAutopickFigureOfMerit    the score used to select the particle (a copy of
                            one of the difftm score columns below)
=========================== ==================================================

difftm's own columns all start with the prefix ``difftm`` (RELION 3.1+ keeps unknown
labels, with a warning, so the files still open there):

=========================== ==================================================
difftmSNR                   2DTM SNR (maximum of the normalised cross-
                            correlation over the search, noise sigma units)
difftmZScore                (SNR - difftmMean) / difftmSigma at that pixel
difftmMean, difftmSigma     per-pixel mean and standard deviation of the
                            cross-correlation over all searched poses
difftmNegLogP               -ln p of the 2DTM p-value (Zhang et al. 2025)
difftmDefocusOffset         Angstrom, the best defocus plane relative to the
                            micrograph defocus
difftmCoordinateXAngst, Y   the centre in Angstrom (coordinate x pixel size)
difftmSNRBefore             ``difftm refine``: SNR of the starting pose
difftmAngleChange           ``difftm refine``: rotation from start to refined, deg
difftmShiftChange           ``difftm refine``: centre moved by, pixels
difftmDefocusChange         ``difftm refine``: defocus changed by, Angstrom
=========================== ==================================================

:func:`make_particles_table` builds the particles table from plain names (``x``, ``y``,
``rot``, ``tilt``, ``psi``, ``defocus_u``, ``defocus_v``, ``defocus_angle``, ``snr``,
``zscore``, ...; see :data:`PLAIN_TO_STAR`) and :func:`particles_to_plain` goes back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from difftm.io.atomic import atomic_output

__all__ = [
    "DIFFTM_PREFIX",
    "OPTICS_COLUMNS",
    "PLAIN_TO_STAR",
    "SCORE_COLUMNS",
    "make_optics_table",
    "make_particles_table",
    "particles_to_plain",
    "read_particles_star",
    "read_star_blocks",
    "write_particles_star",
]

DIFFTM_PREFIX = "difftm"
"""Prefix of difftm's own STAR labels."""

SCORE_COLUMNS: dict[str, str] = {
    "snr": "difftmSNR",
    "zscore": "difftmZScore",
    "mean": "difftmMean",
    "sigma": "difftmSigma",
    "neg_log_p": "difftmNegLogP",
    "defocus_offset": "difftmDefocusOffset",
    "snr_before": "difftmSNRBefore",
    "angle_change": "difftmAngleChange",
    "shift_change": "difftmShiftChange",
    "defocus_change": "difftmDefocusChange",
}
"""Plain score names -> difftm STAR labels."""

PLAIN_TO_STAR: dict[str, str] = {
    "x": "rlnCoordinateX",
    "y": "rlnCoordinateY",
    "rot": "rlnAngleRot",
    "tilt": "rlnAngleTilt",
    "psi": "rlnAnglePsi",
    "defocus_u": "rlnDefocusU",
    "defocus_v": "rlnDefocusV",
    "defocus_angle": "rlnDefocusAngle",
    "phase_shift": "rlnPhaseShift",
    "ctf_bfactor": "rlnCtfBfactor",
    "optics_group": "rlnOpticsGroup",
    "micrograph": "rlnMicrographName",
    "figure_of_merit": "rlnAutopickFigureOfMerit",
    "x_angst": "difftmCoordinateXAngst",
    "y_angst": "difftmCoordinateYAngst",
    **SCORE_COLUMNS,
}
"""Plain column names used in difftm tables -> STAR labels."""

OPTICS_COLUMNS = (
    "rlnOpticsGroup",
    "rlnOpticsGroupName",
    "rlnVoltage",
    "rlnSphericalAberration",
    "rlnAmplitudeContrast",
    "rlnImagePixelSize",
    "rlnMicrographPixelSize",
)
"""Columns every ``data_optics`` row written by difftm carries."""

_REQUIRED_PARTICLE_COLUMNS = ("rlnCoordinateX", "rlnCoordinateY")


def make_optics_table(
    pixel_size: float,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    image_pixel_size: float | None = None,
    group_name: str = "opticsGroup1",
    optics_group: int = 1,
) -> pd.DataFrame:
    """Build a one-row ``data_optics`` table.

    Args:
        pixel_size: micrograph pixel size, Angstrom (> 0).
        voltage_kv: acceleration voltage, kV.
        cs_mm: spherical aberration, mm.
        amplitude_contrast: amplitude contrast fraction in [0, 1).
        image_pixel_size: pixel size of extracted particle images (defaults to
            ``pixel_size``).
        group_name: ``rlnOpticsGroupName``.
        optics_group: ``rlnOpticsGroup`` id (>= 1).

    Returns:
        DataFrame with the columns of :data:`OPTICS_COLUMNS`.
    """
    if not (np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel size must be positive, got {pixel_size}")
    if voltage_kv <= 0:
        raise ValueError(f"voltage must be positive (kV), got {voltage_kv}")
    if not 0.0 <= amplitude_contrast < 1.0:
        raise ValueError(f"amplitude contrast must be in [0, 1), got {amplitude_contrast}")
    if optics_group < 1:
        raise ValueError(f"optics group ids start at 1, got {optics_group}")
    return pd.DataFrame(
        {
            "rlnOpticsGroup": [int(optics_group)],
            "rlnOpticsGroupName": [str(group_name)],
            "rlnVoltage": [float(voltage_kv)],
            "rlnSphericalAberration": [float(cs_mm)],
            "rlnAmplitudeContrast": [float(amplitude_contrast)],
            "rlnImagePixelSize": [float(image_pixel_size or pixel_size)],
            "rlnMicrographPixelSize": [float(pixel_size)],
        }
    )


def make_particles_table(
    columns: Mapping[str, object] | pd.DataFrame,
    micrograph_name: str | None = None,
    pixel_size: float | None = None,
    optics_group: int = 1,
    figure_of_merit: str | None = None,
) -> pd.DataFrame:
    """Build a ``data_particles`` table from plain arrays.

    Args:
        columns: mapping (or DataFrame) of plain names (keys of :data:`PLAIN_TO_STAR`, e.g.
            ``x``, ``y``, ``rot``, ``snr``) or STAR labels (``rln...``/``difftm...``) to
            1D arrays of equal length. ``x`` and ``y`` (pixels, particle centre) are required.
        micrograph_name: written as ``rlnMicrographName`` unless a column gives it.
        pixel_size: micrograph pixel size (A); adds ``difftmCoordinateXAngst``/``YAngst``.
        optics_group: ``rlnOpticsGroup`` for every particle unless a column gives it.
        figure_of_merit: plain or STAR name of the column copied to
            ``rlnAutopickFigureOfMerit`` (e.g. ``"zscore"``).

    Returns:
        DataFrame with STAR labels, RELION columns first.

    Raises:
        ValueError: unknown column name, unequal lengths, missing coordinates.
    """
    data = dict(columns.items()) if not isinstance(columns, pd.DataFrame) else {
        c: columns[c].to_numpy() for c in columns.columns
    }
    table: dict[str, np.ndarray] = {}
    n = None
    for name, values in data.items():
        label = PLAIN_TO_STAR.get(name, name)
        if not (label.startswith("rln") or label.startswith(DIFFTM_PREFIX)):
            known = ", ".join(PLAIN_TO_STAR)
            raise ValueError(
                f"unknown particle column {name!r}: use one of {known} or a rln*/difftm* label"
            )
        if hasattr(values, "detach"):
            values = values.detach().cpu().numpy()
        array = np.asarray(values)
        if array.ndim != 1:
            raise ValueError(f"particle column {name!r} must be 1D, got shape {array.shape}")
        if n is None:
            n = len(array)
        elif len(array) != n:
            raise ValueError(f"particle column {name!r} has {len(array)} rows, expected {n}")
        table[label] = array
    for label in _REQUIRED_PARTICLE_COLUMNS:
        if label not in table:
            raise ValueError(f"particle table needs {label} (plain name 'x'/'y')")
    n = n or 0
    if "rlnOpticsGroup" not in table:
        table["rlnOpticsGroup"] = np.full(n, int(optics_group), dtype=np.int64)
    if micrograph_name is not None and "rlnMicrographName" not in table:
        table["rlnMicrographName"] = np.full(n, str(micrograph_name), dtype=object)
    if pixel_size is not None:
        if not (np.isfinite(pixel_size) and pixel_size > 0):
            raise ValueError(f"pixel size must be positive, got {pixel_size}")
        table["difftmCoordinateXAngst"] = table["rlnCoordinateX"].astype(float) * pixel_size
        table["difftmCoordinateYAngst"] = table["rlnCoordinateY"].astype(float) * pixel_size
    if figure_of_merit is not None:
        label = PLAIN_TO_STAR.get(figure_of_merit, figure_of_merit)
        if label not in table:
            raise ValueError(f"figure of merit column {figure_of_merit!r} is not in the table")
        table["rlnAutopickFigureOfMerit"] = table[label].astype(float)
    order = [v for v in PLAIN_TO_STAR.values() if v in table and v.startswith("rln")]
    order += sorted(k for k in table if k.startswith("rln") and k not in order)
    order += [k for k in table if k not in order]
    return pd.DataFrame({k: table[k] for k in order})


def particles_to_plain(particles: pd.DataFrame) -> pd.DataFrame:
    """Rename STAR labels of a particles table back to plain names (inverse of the above).

    Labels without a plain name are kept as they are.
    """
    star_to_plain = {v: k for k, v in PLAIN_TO_STAR.items()}
    return particles.rename(columns=star_to_plain)


def _validate_tables(path: Path, particles: pd.DataFrame, optics: pd.DataFrame) -> None:
    for label in _REQUIRED_PARTICLE_COLUMNS:
        if label not in particles.columns:
            raise ValueError(f"{path}: particle table has no {label} column")
    if "rlnOpticsGroup" not in optics.columns or len(optics) == 0:
        raise ValueError(f"{path}: optics table needs at least one rlnOpticsGroup row")
    if "rlnOpticsGroup" not in particles.columns:
        raise ValueError(f"{path}: particle table has no rlnOpticsGroup column")
    unknown = set(particles["rlnOpticsGroup"].astype(int)) - set(
        optics["rlnOpticsGroup"].astype(int)
    )
    if unknown:
        groups = sorted(unknown)
        raise ValueError(f"{path}: particles refer to optics groups {groups} not in optics")
    for name, table in (("particle", particles), ("optics", optics)):
        numeric = table.select_dtypes(include="number")
        mask = ~np.isfinite(numeric.to_numpy(dtype=float)) if numeric.size else None
        if mask is not None and mask.any():
            row, col = (int(k[0]) for k in np.nonzero(mask))
            raise ValueError(f"{path}: {name} table has {int(mask.sum())} NaN or infinite "
                             f"values (first: row {row + 1}, {numeric.columns[col]} "
                             f"{numeric.iloc[row, col]})")


def write_particles_star(
    path: str | os.PathLike,
    particles: pd.DataFrame,
    optics: pd.DataFrame,
    overwrite: bool = False,
) -> Path:
    """Write a RELION 3.1+ particle STAR file (``data_optics`` then ``data_particles``).

    Args:
        path: output ``.star`` file (folder must exist).
        particles: table with STAR labels (see :func:`make_particles_table`); needs
            rlnCoordinateX/Y; rlnOpticsGroup is filled in when optics has one group.
        optics: table with STAR labels (see :func:`make_optics_table`).
        overwrite: replace an existing file; otherwise :class:`FileExistsError`.

    Returns:
        The path written. The file is written atomically.

    Raises:
        FileExistsError, ValueError: existing file, missing columns, unknown optics groups,
        NaN values.
    """
    path = Path(path)
    particles = particles.copy()
    if "rlnOpticsGroup" not in particles.columns and len(optics) == 1:
        particles["rlnOpticsGroup"] = int(optics["rlnOpticsGroup"].iloc[0])
    _validate_tables(path, particles, optics)
    with atomic_output(path, overwrite=overwrite) as tmp:
        starfile.write({"optics": optics, "particles": particles}, tmp, overwrite=True)
        text = tmp.read_text()
        lines = text.splitlines(keepends=True)
        if lines and lines[0].startswith("# Created by the starfile"):
            lines = lines[1:]
        tmp.write_text("# written by difftm\n\n# version 30001\n" + "".join(lines))
    return path


def read_star_blocks(path: str | os.PathLike) -> dict[str, pd.DataFrame | dict]:
    """Read every data block of a STAR file.

    Args:
        path: ``.star`` file.

    Returns:
        Block name (without ``data_``) -> DataFrame for loops, dict for simple blocks.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable STAR file (one line naming the file).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a STAR file")
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as err:  # starfile raises assorted parser errors
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path}: not a readable STAR file ({first})") from None
    if not blocks:
        raise ValueError(f"{path}: not a STAR file (no data blocks)")
    return dict(blocks)


def read_particles_star(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a particle STAR file.

    RELION 3.1+ files give their ``optics`` and ``particles`` blocks; an older (RELION 3.0)
    file with one particle block gives an empty optics table.

    Args:
        path: ``.star`` file.

    Returns:
        ``(optics, particles)`` DataFrames with STAR labels as column names.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable STAR, or no particle table (one line naming the file).
    """
    path = Path(path)
    blocks = read_star_blocks(path)
    tables = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}
    if "particles" in tables:
        particles = tables["particles"]
        optics = tables.get("optics", pd.DataFrame())
    else:
        legacy = [t for t in tables.values() if "rlnCoordinateX" in t.columns]
        if len(legacy) != 1:
            names = ", ".join(f"data_{k}" for k in blocks) or "no data blocks"
            raise ValueError(f"{path}: no particle table (found {names})")
        particles, optics = legacy[0], pd.DataFrame()
    return optics, particles
