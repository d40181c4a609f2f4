"""Chemical-shift referencing check.

A mis-referenced spectrum shifts every nucleus of a class (for example all carbons) by about
the same amount. For each nucleus class (sugar carbons, base carbons, sugar protons, base
protons) the offset of an RNA is estimated as the median, over its measured shifts of that
class, of (shift - training mean for the residue type and nucleus). The same estimate on every
RNA of the training population (the shipped copy of ``ss_table_0``, which was reference-
corrected by its authors) gives the distribution of offsets that structure alone produces;
an input whose offset lies further than ``4`` robust standard deviations (and at least
``FLOOR`` ppm) from that distribution's median is flagged, with the estimated correction
(offset minus the training median). Applying the correction subtracts it from every shift of
the class.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from csrna.io.nuclei import NUCLEI

#: Nucleus classes checked, each referenced together in practice.
CLASSES: dict[str, tuple[str, ...]] = {
    "sugar carbons": ("C1'", "C2'", "C3'", "C4'", "C5'"),
    "base carbons": ("C2", "C5", "C6", "C8"),
    "sugar protons": ("H1'", "H2'", "H3'", "H4'", "H5'", "H5''"),
    "base protons": ("H2", "H5", "H6", "H8"),
}
_SUGAR = ("C1'", "C2'", "C3'", "C4'", "C5'", "H1'", "H2'", "H3'", "H4'", "H5'", "H5''")
#: Nuclei that exist in each residue type.
RESIDUE_NUCLEI: dict[str, tuple[str, ...]] = {
    "A": (*_SUGAR, "C2", "C8", "H2", "H8"),
    "G": (*_SUGAR, "C8", "H8"),
    "C": (*_SUGAR, "C5", "C6", "H5", "H6"),
    "U": (*_SUGAR, "C5", "C6", "H5", "H6"),
}
#: Smallest flagged deviation from the training median (ppm): carbons, protons.
FLOOR = {"C": 0.6, "H": 0.1}
N_SD = 4.0
MIN_SHIFTS = 5


@dataclass(frozen=True)
class ClassOffset:
    """Referencing estimate of one nucleus class.

    Attributes:
        name: class name (a key of :data:`CLASSES`).
        n: measured shifts used.
        offset: median deviation from the training means (ppm).
        expected: median of the same estimate over the training RNAs (ppm).
        limit: flagged when ``|offset - expected| > limit`` (ppm).
        flagged: the offset is outside the training distribution.
    """

    name: str
    n: int
    offset: float
    expected: float
    limit: float
    flagged: bool

    @property
    def correction(self) -> float:
        """The estimated referencing error (ppm) that ``--reference-correct`` subtracts."""
        return self.offset - self.expected


def _long_training() -> pd.DataFrame:
    from csrna.fold.classifier import load_reference

    shifts, names, ids = load_reference()
    df = pd.DataFrame(shifts, columns=list(NUCLEI))
    df["resname"], df["id"] = names, ids
    long = df.melt(id_vars=["id", "resname"], var_name="nucleus", value_name="shift")
    ok = [n in RESIDUE_NUCLEI[r] for r, n in zip(long["resname"], long["nucleus"], strict=True)]
    return long[np.asarray(ok)].dropna(subset=["shift"])


@lru_cache(maxsize=1)
def training_statistics() -> tuple[dict[tuple[str, str], float], dict[str, tuple[float, float]]]:
    """Mean shift per (residue type, nucleus) and the per-RNA offset distribution per class.

    Returns:
        ({(resname, nucleus): mean ppm}, {class: (median offset, robust sd)}); the robust sd
        is 1.4826 x the median absolute deviation of the per-RNA offsets.
    """
    long = _long_training()
    means = long.groupby(["resname", "nucleus"])["shift"].mean().to_dict()
    stats = {}
    for name in CLASSES:
        offs = [o for _, grp in long.groupby("id")
                if np.isfinite(o := _class_offset(grp, name, means)[1])]
        arr = np.asarray(offs)
        med = float(np.median(arr))
        stats[name] = (med, float(1.4826 * np.median(np.abs(arr - med))))
    return means, stats


def _class_offset(shifts: pd.DataFrame, name: str,
                  means: dict[tuple[str, str], float]) -> tuple[int, float]:
    sub = shifts[shifts["nucleus"].isin(CLASSES[name])]
    ref = np.array([means.get((r, n), np.nan)
                    for r, n in zip(sub["resname"], sub["nucleus"], strict=True)])
    dev = sub["shift"].to_numpy(dtype=np.float64) - ref
    dev = dev[np.isfinite(dev)]
    return len(dev), float(np.median(dev)) if len(dev) else float("nan")


def check_referencing(shifts: pd.DataFrame) -> list[ClassOffset]:
    """Estimate each nucleus class's referencing offset and compare with the training set.

    Args:
        shifts: long table from :func:`csrna.io.read_shifts` (one RNA).

    Returns:
        One :class:`ClassOffset` per class with at least :data:`MIN_SHIFTS` measured shifts.
    """
    means, stats = training_statistics()
    out = []
    for name, nuclei in CLASSES.items():
        n, off = _class_offset(shifts, name, means)
        if n < MIN_SHIFTS:
            continue
        med, sd = stats[name]
        limit = max(N_SD * sd, FLOOR[nuclei[0][0]])
        out.append(ClassOffset(name, n, off, med, limit, abs(off - med) > limit))
    return out


def apply_correction(shifts: pd.DataFrame, offsets: list[ClassOffset]) -> pd.DataFrame:
    """Subtract the estimated correction of every flagged class from its shifts.

    Args:
        shifts: long shift table.
        offsets: from :func:`check_referencing`.

    Returns:
        A corrected copy (unflagged classes unchanged).
    """
    out = shifts.copy()
    for c in offsets:
        if c.flagged:
            rows = out["nucleus"].isin(CLASSES[c.name])
            out.loc[rows, "shift"] = out.loc[rows, "shift"] - c.correction
    return out


def describe(offsets: list[ClassOffset], source: str) -> list[str]:
    """Warning lines for the flagged classes (empty when none is flagged)."""
    return [f"{source}: {c.name} look mis-referenced: median offset {c.offset:+.2f} ppm against "
            f"{c.expected:+.2f} ppm in the training set (n={c.n}, tolerance {c.limit:.2f}); "
            f"estimated correction {-c.correction:+.2f} ppm "
            "(--reference-correct applies it)" for c in offsets if c.flagged]
