"""Run the accelerated strategy (:mod:`difftm.accelerate.search`) inside ``run_search``."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from difftm.accelerate.search import (
    CANDIDATE_SUPPRESSION,
    accelerated_schedule,
    candidate_threshold,
    grid_matched_lowpass,
    local_score_count,
    merge_refined,
    refine_candidates,
    retained_fraction,
    select_candidates,
)
from difftm.search.config import SearchConfig
from difftm.search.results import SearchResult


def coarse_config(cfg: SearchConfig, diameter_px: float) -> SearchConfig:
    """The configuration of the coarse pass: the coarse grid, the nominal defocus only and
    the grid-matched low-pass (never finer than the search's own low-pass)."""
    radius = 0.5 * diameter_px * float(cfg.pixel_size)
    lp = cfg.coarse_lowpass or grid_matched_lowpass(radius, cfg.coarse_out_of_plane_step,
                                                    float(cfg.pixel_size))
    if cfg.lowpass is not None:
        lp = max(lp, cfg.lowpass)
    return cfg.model_copy(update={
        "out_of_plane_step": cfg.coarse_out_of_plane_step,
        "in_plane_step": cfg.coarse_in_plane_step_resolved,
        "defocus_range": 0.0,
        "lowpass": lp,
    })


def run_accelerated(
    cfg: SearchConfig,
    image: np.ndarray,
    volume: np.ndarray,
    device: torch.device,
    fingerprint: str,
    progress: Callable[[int, int, float], None] | None = None,
    stop_after_chunks: int | None = None,
    on_plan: Callable | None = None,
) -> SearchResult:
    """Coarse pass (checkpointed like an exhaustive search), candidates, refinement, maps.

    Returns the finished result (not yet saved), with the exhaustive grid's ``n_search``,
    the work done (``n_correlations``, ``n_local_scores``, ``n_projections``) and the
    accelerated settings under ``metadata["accelerated"]``.
    """
    from difftm.geometry.euler import euler_to_matrix
    from difftm.geometry.grids import grid_size
    from difftm.refine.scorer import ParticleScorer
    from difftm.search.engine import (
        SearchPlan,
        build_correlator,
        correlate_all,
        correlation_counts,
        finalize,
        search_grid,
        search_setup,
        write_config,
    )
    from difftm.simulate.micrograph import template_diameter
    from difftm.stats.threshold import erfc_threshold

    if cfg.orientations is not None:
        raise ValueError("--strategy accelerated searches the whole orientation space; it "
                         "cannot take --orientations (use the exhaustive strategy)")
    diameter = template_diameter(torch.as_tensor(volume))
    coarse = coarse_config(cfg, diameter)
    angles_c, offsets_c = search_grid(coarse)
    correlator = build_correlator(coarse, image, volume, angles_c, offsets_c, device)
    write_config(cfg.output, cfg)  # the full configuration, not the coarse pass's
    acc, timings = correlate_all(coarse, correlator, angles_c, offsets_c, device, fingerprint,
                                 progress, stop_after_chunks, on_plan)
    coarse_result = finalize(acc, coarse, angles_c, offsets_c, correlator.box, fingerprint,
                             template_size=correlator.template_size,
                             template_diameter_px=diameter,
                             image_shape=correlator.image_shape)

    t0 = time.perf_counter()
    offsets = torch.tensor(cfg.defocus_offsets(), dtype=torch.float64)
    setup = search_setup(cfg, image, volume, offsets, device)
    args = (setup.prepared, setup.projector, setup.template_size, setup.ctf_params,
            cfg.defocus_u, cfg.defocus_v_resolved, cfg.highpass)
    scorer = ParticleScorer(*args, cfg.lowpass)
    coarse_scorer = ParticleScorer(*args, coarse.lowpass)
    n_orient = grid_size(cfg.out_of_plane_step, cfg.in_plane_step, cfg.symmetry)
    n_search = n_orient * int(offsets.numel())
    n_valid = int(coarse_result.metadata["valid_pixels"])
    final_threshold = erfc_threshold(n_valid, n_search, 1.0)
    fractions = retained_fraction(scorer, coarse_scorer, euler_to_matrix(angles_c),
                                  symmetry=cfg.symmetry)
    t_c = candidate_threshold(final_threshold, fractions, cfg.candidate_miss_rate)
    cands = select_candidates(coarse_result, t_c, CANDIDATE_SUPPRESSION * diameter,
                              cfg.max_candidates)
    n_cand = int(cands.centres.shape[0])
    schedule = accelerated_schedule(float(coarse.lowpass), cfg.coarse_out_of_plane_step,
                                    cfg.defocus_range)
    if on_plan is not None:
        on_plan(SearchPlan(n_cand, 1, 64, n_cand, device, correlator.box, correlator.shape,
                           torch.get_num_threads(), stage="refine"))
    t1 = time.perf_counter()
    on_done = None if progress is None else (
        lambda done, total: progress(done, total, time.perf_counter() - t1))
    refined = refine_candidates(scorer, cands, schedule, cfg.defocus_range > 0, on_done)
    refine_seconds = time.perf_counter() - t0

    # the maps: the coarse pass's, with the refined candidates written in
    result = coarse_result
    result.maps = merge_refined(coarse_result, cands, refined)
    n_local = local_score_count(n_cand, schedule)
    md = result.metadata
    md.update({
        "strategy": "accelerated",
        "out_of_plane_step": cfg.out_of_plane_step,
        "in_plane_step": cfg.in_plane_step,
        "defocus_offsets": [float(x) for x in offsets],
        "template_padded_box": int(setup.template_size),
        "n_search": n_search,
        "n_orientations": n_orient,
        "n_defocus": int(offsets.numel()),
        "timings": {**timings, "coarse_seconds": timings["seconds"],
                    "refine_seconds": refine_seconds,
                    "seconds": timings["seconds"] + refine_seconds},
        "accelerated": {
            "coarse_out_of_plane_step": coarse.out_of_plane_step,
            "coarse_in_plane_step": coarse.in_plane_step,
            "coarse_orientations": int(angles_c.shape[0]),
            "coarse_lowpass": float(coarse.lowpass),
            "final_threshold": float(final_threshold),
            "retained_fraction_quantile": float(np.quantile(fractions,
                                                            cfg.candidate_miss_rate)),
            "retained_fraction_median": float(np.median(fractions)),
            "candidate_threshold": float(t_c),
            "candidate_miss_rate": cfg.candidate_miss_rate,
            "n_candidates": n_cand,
            "schedule_lowpass": [None if x is None else float(x)
                                 for x in schedule.lowpass_angstrom],
            "schedule_steps": schedule.steps,
            "schedule_starts": len(schedule.start_offsets_deg),
        },
    })
    # projections: one per coarse orientation, one per local template evaluation
    md.update(correlation_counts(correlator.n_search, int(angles_c.shape[0]) + n_local,
                                 n_local))
    return result
