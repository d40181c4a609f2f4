"""Readers and writers for BME-format files and weight tables.

Experimental file (reference BME format)::

    # DATA=CS PRIOR=GAUSS
    0 92.177 0.86          <- index, value, uncertainty
    ...

Simulated file: one row per conformer, first column the conformer label (row index), then
one column per experimental datum, in the order of the experimental file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from csrna.io.files import read_utf8


def read_bme_experimental(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a BME experimental file.

    Args:
        path: file with a ``# DATA=... PRIOR=...`` header and rows ``index value error``.

    Returns:
        (index (m,) int, values (m,) float64, errors (m,) float64).

    Raises:
        FileNotFoundError: missing file.
        ValueError: malformed header or rows (one line naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: BME experimental file not found")
    lines = read_utf8(path).splitlines()
    header = next((ln for ln in lines if ln.strip()), "")
    if not header.startswith("#") or "DATA=" not in header:
        raise ValueError(
            f"{path}: not a BME experimental file (first line must be '# DATA=CS PRIOR=GAUSS')"
        )
    rows = []
    for k, ln in enumerate(lines, start=1):
        s = ln.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split()
        if len(parts) != 3:
            raise ValueError(
                f"{path}: line {k} must have 3 columns (index value error), got {len(parts)}"
            )
        try:
            rows.append((int(float(parts[0])), float(parts[1]), float(parts[2])))
        except ValueError:
            raise ValueError(f"{path}: line {k} is not numeric: {s!r}") from None
    if not rows:
        raise ValueError(f"{path}: no data rows")
    arr = np.array(rows, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: non-finite values")
    if np.any(arr[:, 2] <= 0):
        raise ValueError(f"{path}: uncertainties (third column) must be positive")
    return arr[:, 0].astype(int), arr[:, 1], arr[:, 2]


def read_bme_simulated(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read a BME simulated file (one row per conformer: label then observables).

    Args:
        path: whitespace-separated table; ``#`` lines are comments.

    Returns:
        (labels, calc (n_conformers, n_obs) float64).

    Raises:
        FileNotFoundError: missing file.
        ValueError: ragged or non-numeric rows (one line naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: BME simulated file not found")
    labels: list[str] = []
    rows: list[list[float]] = []
    for k, ln in enumerate(read_utf8(path).splitlines(), start=1):
        s = ln.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split()
        if len(parts) < 2:
            raise ValueError(f"{path}: line {k} has no observables")
        try:
            vals = [float(x) for x in parts[1:]]
        except ValueError:
            raise ValueError(f"{path}: line {k} is not numeric") from None
        if rows and len(vals) != len(rows[0]):
            raise ValueError(
                f"{path}: line {k} has {len(vals)} observables, expected {len(rows[0])}"
            )
        labels.append(parts[0])
        rows.append(vals)
    if not rows:
        raise ValueError(f"{path}: no conformer rows")
    calc = np.array(rows, dtype=np.float64)
    if not np.isfinite(calc).all():
        raise ValueError(f"{path}: non-finite values")
    return labels, calc


def write_weights(path: str | Path, names: list[str], weights: np.ndarray) -> None:
    """Write a ``structure,weight`` CSV, one row per conformer in input order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from csrna.io import atomic_write_text

    rows = [f"{name},{w:.10g}\n"
            for name, w in zip(names, np.asarray(weights, dtype=np.float64), strict=True)]
    atomic_write_text(path, "structure,weight\n" + "".join(rows))
