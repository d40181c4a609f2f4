"""Planted-particle and pure-noise search cases built through the physics path.

A case simulates a template from a real atomic model (:func:`simulate_template`), plants
copies of the model into a micrograph (:func:`simulate_micrograph`: exact projections of the
atoms with the displaced solvent, per-particle CTF in a padded box, Poisson counts), writes
both as MRC files, runs the search engine with its own Fourier-slice templates, calls
particles and scores them against the truth. The search never sees the simulator's
projections, so the test covers the whole chain.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from difftm.evaluate import DetectionScore, score_detections
from difftm.io.mrc import read_mrc, write_mrc
from difftm.search.config import SearchConfig
from difftm.search.engine import run_search
from difftm.search.particles import CallSummary, call_particles
from difftm.search.results import SearchResult
from difftm.simulate.micrograph import SimulatedMicrograph, simulate_micrograph
from difftm.simulate.template import simulate_template

from model_files import model_path, shared_data_dir


@dataclass(frozen=True)
class Target:
    """A model and the sampling it is searched at."""

    model: str  # file name in shared/data/pdb
    pixel_size: float  # A/px
    box: int  # template box, px
    lowpass: float  # search low-pass, A
    step: float  # out-of-plane and in-plane grid step, degrees


@dataclass
class CaseResult:
    """Everything one planted or noise case produced."""

    sim: SimulatedMicrograph
    result: SearchResult
    table: pd.DataFrame
    called: pd.DataFrame
    summary: CallSummary
    score: DetectionScore
    cpu_seconds: float


@functools.lru_cache(maxsize=4)
def template(target: Target) -> np.ndarray:
    """The target's template (Volts), cached per process (6ZU5 takes ~15 s to build)."""
    vol = simulate_template(model_path(target.model), pixel_size=target.pixel_size,
                            box=target.box)
    return vol.cpu().numpy().astype(np.float32)


@functools.lru_cache(maxsize=4)
def atoms(target: Target):
    """The target's atomic model (the simulator projects its atoms exactly)."""
    from difftm.io.models import load_model

    return load_model(model_path(target.model))


def background_image() -> np.ndarray:
    """The real micrograph background (Ucsf_stack_1142_DW.mrc) or skip with the reason."""
    path = shared_data_dir() / "micrographs" / "Ucsf_stack_1142_DW.mrc"
    if not path.is_file():
        pytest.skip(f"real background micrograph {path} not available (set DIFFTM_SHARED_DATA)")
    return read_mrc(path).data


def run_case(
    folder: Path,
    target: Target,
    shape: tuple[int, int],
    n_particles: int,
    seed: int,
    defocus: float = 15000.0,
    fluence: float = 40.0,
    defocus_spread: float = 0.0,
    defocus_range: float = 0.0,
    defocus_step: float = 200.0,
    background: np.ndarray | None = None,
    match_distance: float = 2.0,
    metric: str = "snr",
    min_distance: float | None = None,
) -> CaseResult:
    """Simulate, search (one defocus plane unless ``defocus_range`` > 0), call and score.

    Particles are called with ``metric`` (default: the 2DTM SNR) at the erfc threshold for
    one expected false positive per micrograph, peaks at least ``min_distance`` px apart
    (default: 3/4 of the template diameter, because a strong particle's correlation
    footprint has side maxima above the threshold out to about half its diameter: measured
    up to 18 px for 6MSM and 6ZU5 at SNR ~20 with diameters of 31-33 px; the simulator keeps
    particles a full diameter apart, so true neighbours are never suppressed); detections
    match a true particle within ``match_distance`` pixels.
    """
    vol = template(target)
    sim = simulate_micrograph(torch.from_numpy(vol), target.pixel_size, shape, n_particles,
                              defocus, fluence=fluence, defocus_spread=defocus_spread,
                              background=background, seed=seed, atoms=atoms(target))
    folder.mkdir(parents=True, exist_ok=True)
    mic, tpl = folder / "mic.mrc", folder / "tpl.mrc"
    write_mrc(mic, sim.image, target.pixel_size, overwrite=True)
    write_mrc(tpl, vol, target.pixel_size, overwrite=True)
    cfg = SearchConfig(
        micrograph=mic, template=tpl, output=folder / "search", pixel_size=target.pixel_size,
        defocus_u=defocus, defocus_range=defocus_range, defocus_step=defocus_step,
        out_of_plane_step=target.step, in_plane_step=target.step, lowpass=target.lowpass,
        device="cpu", overwrite=True)
    if min_distance is None:
        min_distance = 0.75 * float(sim.params["template_diameter_px"])
    t0 = time.process_time()
    result = run_search(cfg)
    cpu = time.process_time() - t0
    table, summary = call_particles(result, metric=metric, n_false_positives=1.0,
                                    min_distance=min_distance)
    called = table[table["called"]].reset_index(drop=True)
    score = score_detections(called, sim.truth, max_distance=match_distance)
    return CaseResult(sim, result, table, called, summary, score, cpu)
