"""Search configuration: a pydantic model that round-trips to YAML.

Every field can be given in a YAML file (``difftm search --config run.yaml``) and overridden
on the command line; the resolved configuration is written beside the results as
``config.yaml``. Units: Angstrom, kV, mm, degrees.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from difftm.physics.limits import plausible_range

#: Plausible ranges of the physical fields, from difftm.physics.limits (the one place they
#: are defined); values outside are typos or unit mistakes (defocus in metres, voltage in V)
#: and are refused before any work.
PLAUSIBLE = {name: plausible_range(name) for name in (
    "pixel_size", "voltage", "cs", "amplitude_contrast", "defocus_u", "defocus_v",
    "defocus_range", "defocus_step", "ctf_bfactor", "defocus_angle", "phase_shift",
    "highpass", "lowpass")}

#: Fields whose command-line option has another name (named in error messages).
CLI_OPTION = {"coarse_out_of_plane_step": "--coarse-step"}

#: Settings that only the accelerated strategy reads (not in exhaustive fingerprints).
ACCELERATED_FIELDS = ("strategy", "coarse_out_of_plane_step", "coarse_in_plane_step",
                      "coarse_lowpass", "candidate_miss_rate", "max_candidates")

#: Most defocus planes a search may have (range / step * 2 + 1).
MAX_DEFOCUS_PLANES = 1001


class SearchConfig(BaseModel):
    """Everything that defines one 2DTM search of one micrograph with one template."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    micrograph: Path = Field(description="Micrograph MRC file.")
    template: Path = Field(description="3D template MRC (potential), same pixel size.")
    output: Path = Field(description="Output folder for maps, tables and checkpoints.")
    pixel_size: float | None = Field(
        None, gt=0, description="Pixel size in Angstrom (default: the micrograph header).")
    voltage: float = Field(300.0, gt=0, description="Acceleration voltage in kV.")
    cs: float = Field(2.7, ge=0, description="Spherical aberration in mm.")
    amplitude_contrast: float = Field(0.07, ge=0, lt=1, description="Amplitude contrast.")
    defocus_u: float = Field(description="Defocus U in Angstrom (positive = underfocus).")
    defocus_v: float | None = Field(None, description="Defocus V in Angstrom (default: U).")
    defocus_angle: float = Field(0.0, description="Astigmatism angle in degrees.")
    phase_shift: float = Field(0.0, description="Phase-plate phase shift in degrees.")
    ctf_bfactor: float = Field(
        0.0, ge=0, description="CTF envelope B-factor (A^2) applied to the templates.")
    out_of_plane_step: float = Field(2.5, gt=0, le=90, description="Out-of-plane step, deg.")
    in_plane_step: float = Field(1.5, gt=0, le=180, description="In-plane step, degrees.")
    symmetry: str = Field("C1", description="Template point-group symmetry (Cn, Dn, T, O, I).")
    defocus_range: float = Field(1200.0, ge=0, description="Search defocus +- this, Angstrom.")
    defocus_step: float = Field(200.0, gt=0, description="Defocus step in Angstrom.")
    highpass: float | None = Field(None, gt=0, description="High-pass cutoff (Angstrom).")
    lowpass: float | None = Field(None, gt=0, description="Low-pass resolution limit (A).")
    whiten: bool = Field(True, description="Whiten image and templates by the image spectrum.")
    edge_taper: int | None = Field(
        None, ge=0, description="Raised-cosine taper of the micrograph's edges before the "
        "FFT, pixels (default: half the template box; 0: none).")
    outlier_sigma: float = Field(5.0, gt=0, description="Clamp pixels beyond this many sd.")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    batch_size: int | None = Field(
        None, ge=1, description="Correlations per batch (default: planned from free memory).")
    chunk_batches: int | None = Field(
        None, ge=1, description="Batches per checkpointed chunk (default: ~2% of the search).")
    checkpoint_minutes: float | None = Field(
        None, gt=0, description="Write the checkpoint at most every this many minutes "
        "(default: after every chunk); for many GPUs writing to one shared file system.")
    projector_oversampling: int = Field(2, ge=1, le=4, description="Fourier-slice padding.")
    gridding_correction: bool = Field(
        True, description="Divide the template by the sinc^2 kernel of trilinear interpolation.")
    orientations: Path | None = Field(
        None, description="Explicit orientations (text/CSV rot tilt psi, or STAR) instead of "
                          "the grid of out_of_plane_step, in_plane_step and symmetry.")
    threads: int | None = Field(
        None, ge=1, description="CPU threads of torch (default: free physical cores; see "
                                "difftm.threads).")
    template_padding: str = Field(
        "auto", description="Box in which templates are CTF-filtered: auto (template box + 2 x "
        "the CTF delocalisation), none (the template box, as other 2DTM tools) or an edge in "
        "pixels.")
    strategy: Literal["exhaustive", "accelerated"] = Field(
        "exhaustive", description="exhaustive: every orientation of the grid; accelerated: "
        "a coarse pass, candidates and gradient refinement (difftm.accelerate.search).")
    coarse_out_of_plane_step: float = Field(
        12.0, gt=0, le=90, description="Accelerated: out-of-plane step of the coarse pass.")
    coarse_in_plane_step: float | None = Field(
        None, gt=0, le=180, description="Accelerated: in-plane step of the coarse pass "
        "(default: 0.6 x the out-of-plane step, the fine grid's ratio).")
    coarse_lowpass: float | None = Field(
        None, gt=0, description="Accelerated: low-pass of the coarse pass, A (default: "
        "matched to the coarse grid and the template's radius).")
    candidate_miss_rate: float = Field(
        0.02, gt=0, lt=0.5, description="Accelerated: probability that a particle at the "
        "final threshold is not a candidate (sets the coarse threshold).")
    max_candidates: int = Field(
        20000, ge=1, description="Accelerated: most candidates refined per micrograph.")
    overwrite: bool = Field(False, description="Replace another run's results in --output.")
    scheduler: str | None = Field(
        None, description="Dask: 'local' (LocalCluster) or a scheduler address; None = "
                          "this process.")
    n_workers: int | None = Field(None, ge=1, description="Workers of a local Dask cluster.")
    n_parts: int | None = Field(None, ge=1, description="Parts of a distributed search.")

    @field_validator("*", mode="before")
    @classmethod
    def _finite_first(cls, v: Any) -> Any:
        """NaN and infinity are refused as such, before pydantic's bounds (NaN fails ``le``
        and would read "should be less than or equal to")."""
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"must be a finite number, got {v}")
        return v

    @field_validator("*", mode="after")
    @classmethod
    def _finite_and_plausible(cls, v: Any, info) -> Any:
        """Every float is finite (pydantic's gt=0 accepts inf) and within PLAUSIBLE."""
        if isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError(f"must be a finite number, got {v}")
            accepted = PLAUSIBLE.get(info.field_name)
            if accepted is not None and not accepted.contains(v):
                unit = f" {accepted.unit}" if accepted.unit else ""
                raise ValueError(f"{v:g}{unit} is outside the plausible range "
                                 f"{accepted.describe()}")
        return v

    @model_validator(mode="after")
    def _defocus_planes(self) -> SearchConfig:
        n = 2 * self.defocus_range / self.defocus_step + 1
        if n > MAX_DEFOCUS_PLANES:
            raise ValueError(f"defocus-range {self.defocus_range:g} with defocus-step "
                             f"{self.defocus_step:g} gives {n:.0f} defocus planes, more than "
                             f"{MAX_DEFOCUS_PLANES}; use a larger step")
        return self

    @model_validator(mode="after")
    def _accelerated_grid(self) -> SearchConfig:
        if self.strategy == "accelerated" and self.orientations is not None:
            raise ValueError("--strategy accelerated searches the whole orientation space; it "
                             "cannot take --orientations (use the exhaustive strategy)")
        return self

    @field_validator("symmetry")
    @classmethod
    def _symmetry_upper(cls, v: str) -> str:
        from difftm.geometry.symmetry import parse_symmetry

        parse_symmetry(v)
        return v.strip().upper()

    @field_validator("template_padding", mode="before")
    @classmethod
    def _padding_ok(cls, v: Any) -> str:
        text = str(v).strip().lower()
        if text in ("auto", "none") or (text.isdigit() and int(text) > 0):
            return text
        raise ValueError(f"must be auto, none or a size in pixels, got {v!r}")

    @field_validator("device")
    @classmethod
    def _device_ok(cls, v: str) -> str:
        v = v.strip().lower()
        if v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {v!r}")

    @property
    def coarse_in_plane_step_resolved(self) -> float:
        """In-plane step of the accelerated coarse pass (default 0.6 x out-of-plane)."""
        return (0.6 * self.coarse_out_of_plane_step if self.coarse_in_plane_step is None
                else self.coarse_in_plane_step)

    @property
    def defocus_v_resolved(self) -> float:
        """Defocus V, defaulting to defocus U (no astigmatism)."""
        return self.defocus_u if self.defocus_v is None else self.defocus_v

    def defocus_offsets(self) -> list[float]:
        """Defocus offsets searched, Angstrom, symmetric about 0 (0 alone if range is 0)."""
        n = int(round(self.defocus_range / self.defocus_step + 1e-9))
        return [i * self.defocus_step for i in range(-n, n + 1)]

    def fingerprint(self) -> str:
        """Hash of every field that changes the result (not output, device, batching)."""
        skip = {"output", "device", "batch_size", "chunk_batches", "checkpoint_minutes",
                "overwrite", "scheduler",
                "n_workers", "n_parts", "threads"}
        if self.strategy == "exhaustive":  # fingerprints of exhaustive runs stay as before
            skip |= set(ACCELERATED_FIELDS)
        data = {k: v for k, v in self.model_dump(mode="json").items() if k not in skip}
        for key in ("micrograph", "template"):
            path = Path(data[key])
            data[key + "_sha256"] = _file_digest(path) if path.exists() else None
            data[key] = path.name
        if data.get("orientations") is not None:
            path = Path(data["orientations"])
            data["orientations_sha256"] = _file_digest(path) if path.exists() else None
            data["orientations"] = path.name
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        """The configuration as YAML text (paths as strings)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def load_config(path: Path | None, overrides: dict[str, Any]) -> SearchConfig:
    """Merge a YAML file (optional) with command-line overrides (None values ignored).

    Raises:
        ValueError: one line naming the file or the field that is wrong.
    """
    data = merge_settings(path, overrides)
    try:
        return SearchConfig(**data)
    except ValidationError as err:
        raise ValueError(validation_message(err, path)) from err


def validation_message(err: ValidationError, path: Path | None = None) -> str:
    """One line for the first problem of a configuration (``file: field: problem``)."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "configuration"
    where = f"{path}: " if path is not None else ""
    message = first["msg"].removeprefix("Value error, ")
    accepted = PLAUSIBLE.get(str(first["loc"][0])) if first["loc"] else None
    if accepted is not None and "range" not in message:  # pydantic's own bound: the range
        message += f" (accepted range {accepted.describe()})"
    field = str(first["loc"][0]) if first["loc"] else ""
    option = f" ({CLI_OPTION[field]})" if field in CLI_OPTION else ""
    return f"{where}{loc.replace('_', '-')}{option}: {message}"


def merge_settings(path: Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """The settings of a YAML file (optional) updated with ``overrides`` (None ignored),
    not validated (a dataset completes them per micrograph before validating).

    Raises:
        FileNotFoundError, ValueError: missing or unreadable file (one line).
    """
    data: dict[str, Any] = {}
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: configuration file not found")
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at "
                             f"offset {err.start})") from None
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML ({err.__class__.__name__})") from err
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of option names to values")
        data.update({k.replace("-", "_"): v for k, v in loaded.items()})
    data.update({k: v for k, v in overrides.items() if v is not None})
    return data
