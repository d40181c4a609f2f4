"""Micrographs and their CTF: RELION ``micrographs_ctf.star``, CTFFIND4/5 output, or a glob.

Three ways to name a dataset (:func:`read_micrographs` picks by the argument):

* a RELION STAR file (``*.star``) with ``data_micrographs`` (``rlnMicrographName``,
  ``rlnDefocusU``, ``rlnDefocusV``, ``rlnDefocusAngle``, optional ``rlnPhaseShift`` and
  ``rlnCtfBfactor``, ``rlnOpticsGroup``) and ``data_optics`` (per group ``rlnVoltage``,
  ``rlnSphericalAberration``, ``rlnAmplitudeContrast``, ``rlnMicrographPixelSize``). RELION
  3.0 files without an optics block may carry those columns per micrograph. Relative
  micrograph names are resolved as RELION does, against the project folder: ``project_dir``
  when given, else the first of the STAR file's folder, its parent, its grandparent (a RELION
  job folder ``<project>/CtfFind/job003/``) and the current folder where the file exists.
* a glob of micrographs (``"mics/*.mrc"``, quoted) or one micrograph, with one CTF for all
  (``ctf`` given, e.g. from ``--defocus-u``), or
* the same glob without a CTF: the CTFFIND4/5 output text file beside each micrograph
  (``<stem>.txt``, ``<stem>_ctf.txt``, ``<stem>_diag.txt``, ``<stem>_ctffind4.txt`` ...) is
  read: its header gives pixel size, voltage, Cs and amplitude contrast, its one result line
  ``micrograph_number defocus_1 defocus_2 astigmatism_azimuth phase_shift_rad ...`` the CTF.

Units as everywhere in difftm: Angstrom, degrees (CTFFIND's phase shift in radians is
converted), kV, mm.
"""

from __future__ import annotations

import glob as _glob
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

__all__ = ["CTFFIND_SUFFIXES", "MicrographEntry", "find_ctffind_output", "read_ctffind",
           "read_micrographs", "read_micrographs_star", "resolve_relion_path"]

#: File names tried beside ``<stem>.mrc`` for CTFFIND output, in order.
CTFFIND_SUFFIXES = (".txt", "_ctf.txt", "_diag.txt", "_ctffind.txt", "_ctffind4.txt",
                    "_ctffind5.txt", "_output.txt")


@dataclass
class MicrographEntry:
    """One micrograph of a dataset and its CTF (None: not given by the input).

    Attributes:
        name: the micrograph as named by the input (``rlnMicrographName`` of the STAR file,
            kept verbatim for the particle tables), or the path for a glob.
        path: the resolved file.
        defocus_u, defocus_v: Angstrom, positive = underfocus.
        defocus_angle: astigmatism angle, degrees.
        phase_shift: phase-plate shift, degrees.
        ctf_bfactor: CTF envelope B-factor, A^2.
        voltage: kV; cs: mm; amplitude_contrast: fraction; pixel_size: Angstrom.
        optics_group: ``rlnOpticsGroup`` (1 without optics).
        ctf_source: where the CTF came from (for the manifest and messages).
    """

    name: str
    path: Path
    defocus_u: float
    defocus_v: float
    defocus_angle: float = 0.0
    phase_shift: float | None = None
    ctf_bfactor: float | None = None
    voltage: float | None = None
    cs: float | None = None
    amplitude_contrast: float | None = None
    pixel_size: float | None = None
    optics_group: int = 1
    ctf_source: str = ""

    def ctf_fields(self) -> dict:
        """The search configuration fields this entry sets (None values left out)."""
        fields = {k: getattr(self, k) for k in (
            "defocus_u", "defocus_v", "defocus_angle", "phase_shift", "ctf_bfactor",
            "voltage", "cs", "amplitude_contrast", "pixel_size")}
        return {k: v for k, v in fields.items() if v is not None}

    def to_dict(self) -> dict:
        """Plain (YAML/JSON-able) form."""
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def resolve_relion_path(name: str, star: Path, project_dir: Path | None = None) -> Path:
    """The file a RELION micrograph name refers to (see the module docstring).

    Raises:
        FileNotFoundError: no such file in any of the folders tried (one line naming them).
    """
    name = re.sub(r":mrcs?$", "", str(name).strip())
    path = Path(name)
    if path.is_absolute():
        if path.is_file():
            return path
        raise FileNotFoundError(f"{star}: micrograph {name} not found")
    if project_dir is not None:
        bases = [Path(project_dir)]
    else:
        star_dir = Path(star).resolve().parent
        bases = [star_dir, star_dir.parent, star_dir.parent.parent, Path.cwd()]
    seen: list[Path] = []
    for base in bases:
        if base in seen:
            continue
        seen.append(base)
        if (base / path).is_file():
            return (base / path).absolute()  # symbolic links kept, as RELION projects use
    where = ", ".join(str(b) for b in seen)
    hint = "" if project_dir is not None else "; give --project-dir (the RELION project folder)"
    raise FileNotFoundError(f"{star}: micrograph {name} not found (looked in {where}){hint}")


def _float(row: pd.Series, label: str) -> float | None:
    if label not in row.index:
        return None
    value = float(row[label])
    return value if math.isfinite(value) else None


def read_micrographs_star(star: str | Path, project_dir: Path | None = None
                          ) -> tuple[list[MicrographEntry], pd.DataFrame]:
    """Read a RELION ``micrographs_ctf.star``.

    Returns:
        ``(entries, optics)``: one entry per row of ``data_micrographs`` (in file order) and
        the ``data_optics`` table (empty for RELION 3.0 files).

    Raises:
        FileNotFoundError: the STAR file or a micrograph is missing.
        ValueError: no micrograph table, a missing CTF column, an unknown optics group.
    """
    from difftm.io.star import read_star_blocks

    star = Path(star)
    blocks = read_star_blocks(star)
    tables = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}
    mics = tables.get("micrographs")
    if mics is None:
        mics = next((t for k, t in tables.items() if k != "optics"
                     and "rlnMicrographName" in t.columns), None)
    if mics is None or "rlnMicrographName" not in mics.columns:
        names = ", ".join(f"data_{k}" for k in blocks)
        raise ValueError(f"{star}: no micrograph table with rlnMicrographName (found {names})")
    for label in ("rlnDefocusU", "rlnDefocusV"):
        if label not in mics.columns:
            raise ValueError(f"{star}: data_micrographs has no {label} column (run CTF "
                             "estimation first, e.g. RELION's CtfFind job)")
    optics = tables.get("optics", pd.DataFrame())
    groups: dict[int, pd.Series] = {}
    if len(optics) and "rlnOpticsGroup" in optics.columns:
        groups = {int(r["rlnOpticsGroup"]): r for _, r in optics.iterrows()}
    entries = []
    for i, row in mics.iterrows():
        group = int(row["rlnOpticsGroup"]) if "rlnOpticsGroup" in row.index else 1
        if groups and group not in groups:
            raise ValueError(f"{star}: micrograph {row['rlnMicrographName']} refers to optics "
                             f"group {group}, which data_optics does not define")
        source = groups.get(group, row)

        def pick(label: str, src: pd.Series = source, r: pd.Series = row) -> float | None:
            value = _float(r, label)  # a per-micrograph column wins over the optics group
            return value if value is not None else _float(src, label)

        name = str(row["rlnMicrographName"])
        du, dv = _float(row, "rlnDefocusU"), _float(row, "rlnDefocusV")
        if du is None or dv is None:
            raise ValueError(f"{star}: micrograph {name} has no finite defocus")
        entries.append(MicrographEntry(
            name=name, path=resolve_relion_path(name, star, project_dir),
            defocus_u=du, defocus_v=dv, defocus_angle=_float(row, "rlnDefocusAngle") or 0.0,
            phase_shift=_float(row, "rlnPhaseShift"),
            ctf_bfactor=_float(row, "rlnCtfBfactor"),
            voltage=pick("rlnVoltage"), cs=pick("rlnSphericalAberration"),
            amplitude_contrast=pick("rlnAmplitudeContrast"),
            pixel_size=pick("rlnMicrographPixelSize"), optics_group=group,
            ctf_source=f"{star.name} row {int(i) + 1}"))
    if not entries:
        raise ValueError(f"{star}: the micrograph table is empty")
    return entries, optics


_HEADER_FIELDS = {
    "pixel_size": r"pixel size:\s*([-+0-9.eE]+)",
    "voltage": r"acceleration voltage:\s*([-+0-9.eE]+)",
    "cs": r"spherical aberration:\s*([-+0-9.eE]+)",
    "amplitude_contrast": r"amplitude contrast:\s*([-+0-9.eE]+)",
}


def read_ctffind(path: str | Path) -> dict:
    """Parse a CTFFIND4/5 output text file (one micrograph).

    Returns:
        ``defocus_u``, ``defocus_v`` (Angstrom), ``defocus_angle`` (degrees),
        ``phase_shift`` (degrees) and, where the header gives them, ``pixel_size``,
        ``voltage``, ``cs``, ``amplitude_contrast``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not CTFFIND output, no or several result lines (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    header: dict[str, float] = {}
    rows = []
    saw_columns = False
    for line in path.read_text(errors="replace").splitlines():
        text = line.strip()
        if not text:
            continue
        if text.startswith("#"):
            low = text.lower()
            if low.startswith("# columns"):
                saw_columns = "defocus" in low
            for key, pattern in _HEADER_FIELDS.items():
                m = re.search(pattern, low)
                if m:
                    header[key] = float(m.group(1))
            continue
        try:
            rows.append([float(v) for v in text.split()])
        except ValueError:
            raise ValueError(f"{path}: not CTFFIND output (line {text[:40]!r})") from None
    if not saw_columns:
        raise ValueError(f"{path}: not CTFFIND output (no '# Columns: ... defocus' header)")
    if len(rows) != 1:
        raise ValueError(f"{path}: expected one CTFFIND result line, found {len(rows)} "
                         "(one output file per micrograph)")
    row = rows[0]
    if len(row) < 5:
        raise ValueError(f"{path}: CTFFIND result line has {len(row)} columns, expected >= 5")
    if header.get("pixel_size") is not None and header["pixel_size"] <= 0:
        header.pop("pixel_size")
    return {"defocus_u": row[1], "defocus_v": row[2], "defocus_angle": row[3],
            "phase_shift": math.degrees(row[4]), **header}


def find_ctffind_output(micrograph: Path) -> Path | None:
    """The CTFFIND output file beside ``micrograph`` (see :data:`CTFFIND_SUFFIXES`)."""
    for suffix in CTFFIND_SUFFIXES:
        candidate = micrograph.with_name(micrograph.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def _display_name(path: Path) -> str:
    """``rlnMicrographName`` of a globbed micrograph: relative to the current folder (the
    RELION project folder when run there) where possible."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _glob_micrographs(pattern: str) -> list[Path]:
    if any(ch in pattern for ch in "*?["):
        found = sorted(Path(p) for p in _glob.glob(pattern, recursive=True))
        found = [p.absolute() for p in found if p.is_file()]
        if not found:
            raise FileNotFoundError(f"{pattern}: no micrograph matches this pattern")
        return found
    path = Path(pattern)
    if not path.is_file():
        raise FileNotFoundError(f"{pattern}: micrograph not found")
    return [path.absolute()]


def read_micrographs(
    spec: str | Path,
    ctf: dict | None = None,
    project_dir: Path | None = None,
) -> tuple[list[MicrographEntry], pd.DataFrame]:
    """The micrographs of a dataset with their CTF (see the module docstring).

    Args:
        spec: a ``.star`` file, a glob pattern or one micrograph.
        ctf: for a glob: one CTF for every micrograph (``defocus_u`` required, plus any of
            ``defocus_v``, ``defocus_angle``, ``phase_shift``, ``ctf_bfactor``); None to
            read the CTFFIND output beside each micrograph. Must be None for a STAR file.
        project_dir: RELION project folder for relative names in a STAR file.

    Returns:
        ``(entries, optics)`` (optics empty unless the STAR file has a ``data_optics``).

    Raises:
        FileNotFoundError, ValueError: one line naming the file and the problem.
    """
    text = str(spec)
    if text.endswith(".star"):
        if ctf:
            raise ValueError(f"{text}: the CTF of every micrograph comes from this STAR file; "
                             "drop --defocus-u/--defocus-v/--defocus-angle")
        entries, optics = read_micrographs_star(Path(text), project_dir)
        check_entries(entries)
        return entries, optics
    entries = []
    for path in _glob_micrographs(text):
        if ctf and ctf.get("defocus_u") is not None:
            du = float(ctf["defocus_u"])
            dv = ctf.get("defocus_v")
            entries.append(MicrographEntry(
                name=_display_name(path), path=path, defocus_u=du,
                defocus_v=du if dv is None else float(dv),
                defocus_angle=float(ctf.get("defocus_angle") or 0.0),
                phase_shift=ctf.get("phase_shift"), ctf_bfactor=ctf.get("ctf_bfactor"),
                ctf_source="command line"))
            continue
        found = find_ctffind_output(path)
        if found is None:
            names = ", ".join(path.stem + s for s in CTFFIND_SUFFIXES[:3])
            raise FileNotFoundError(
                f"{path}: no CTF: no CTFFIND output ({names}, ...) beside it; give "
                "--defocus-u (one CTF for all) or a micrographs_ctf.star")
        values = read_ctffind(found)
        entries.append(MicrographEntry(name=_display_name(path), path=path,
                                       ctf_source=found.name,
                                       **values))
    check_entries(entries)
    return entries, pd.DataFrame()


def check_entries(entries: list[MicrographEntry]) -> None:
    """Refuse a CTF or optics value outside its plausible range
    (:mod:`difftm.physics.limits`) in one line naming where it came from (the STAR row or
    the CTFFIND file), the micrograph and the value."""
    from difftm.physics.limits import check_plausible

    for e in entries:
        for name in ("defocus_u", "defocus_v", "defocus_angle", "phase_shift", "ctf_bfactor",
                     "voltage", "cs", "amplitude_contrast", "pixel_size"):
            where = f"{e.ctf_source}: micrograph {e.name}: {name.replace('_', ' ')}"
            check_plausible(name, getattr(e, name), where)
