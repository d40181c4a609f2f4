"""The exhaustive 2DTM search: plan, correlate in batches, checkpoint chunks, finalise.

The search positions are the flat indices ``p = orientation * n_defocus + plane`` of the
orientation grid times the defocus planes. They are processed in batches (planned from free
memory) grouped into chunks; after every chunk the merged accumulator is checkpointed
atomically, so ``kill -9`` loses at most one chunk and the same command resumes. Chunk
boundaries fall on batch boundaries and batches are fixed by the batch size, so a resumed
run is bit-identical to an uninterrupted one; other batch sizes agree to float tolerance.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from difftm.geometry.euler import euler_to_matrix
from difftm.geometry.grids import orientation_grid, read_orientations
from difftm.search.accumulator import Accumulator, aligned_span
from difftm.search.checkpoint import (
    CHECKPOINT_NAME,
    checkpoint_fingerprint,
    checkpoint_seconds,
    checkpoint_threads,
    load_checkpoint,
    save_checkpoint,
)
from difftm.search.config import SearchConfig, load_config
from difftm.search.device import plan_batch_size, resolve_device
from difftm.search.particles import PEAKS_RECORD
from difftm.search.preprocess import prepare_micrograph, template_filter
from difftm.search.results import (
    BUNDLE_NAME,
    MAP_NAMES,
    SearchResult,
    load_results,
    result_fingerprint,
)
from difftm.simulate.micrograph import template_diameter

#: Companion of ``config.yaml``: what the search did (strategy, counts, timings).
SUMMARY_NAME = "search_summary.json"

#: Files a search owns in its output folder (others are never touched).
OWNED_FILES = (CHECKPOINT_NAME, BUNDLE_NAME, "config.yaml", SUMMARY_NAME,
               PEAKS_RECORD) + tuple(
    f"{n}.mrc" for n in MAP_NAMES)

ProgressCallback = Callable[[int, int, float], None]


class SearchInterrupted(RuntimeError):
    """Raised when a search stops early on purpose (tests simulate crashes with it)."""


@dataclass
class SearchPlan:
    """What a search will do, for display before it starts."""

    n_orientations: int
    n_defocus: int
    batch_size: int
    chunk_size: int
    device: torch.device
    box: int
    shape: tuple[int, int]
    threads: int = 0  #: CPU threads of torch (a resumed search keeps its checkpoint's)
    #: "search" (correlations of the whole micrograph, exhaustive or the accelerated coarse
    #: pass) or "refine" (the accelerated search's candidates: n_orientations of them)
    stage: str = "search"

    @property
    def n_search(self) -> int:
        """Search positions per pixel."""
        return self.n_orientations * self.n_defocus


def _load_inputs(cfg: SearchConfig) -> tuple[np.ndarray, np.ndarray]:
    from difftm.io.mrc import read_mrc

    mic = read_mrc(cfg.micrograph)
    tpl = read_mrc(cfg.template)
    if mic.data.ndim != 2:
        raise ValueError(f"{cfg.micrograph}: expected a 2D micrograph, got shape {mic.data.shape}")
    if tpl.data.ndim != 3 or len(set(tpl.data.shape)) != 1:
        raise ValueError(f"{cfg.template}: expected a cubic 3D template, got {tpl.data.shape}")
    for path, img in ((cfg.micrograph, mic), (cfg.template, tpl)):
        if not np.isfinite(img.data).all():
            raise ValueError(f"{path}: contains NaN or infinite values")
        if img.data.size and float(img.data.max()) == float(img.data.min()):
            raise ValueError(f"{path}: every value is {float(img.data.flat[0]):g} (a constant "
                             "image has nothing to match)")
    if tpl.data.shape[0] > min(mic.data.shape):
        raise ValueError(
            f"{cfg.micrograph}: micrograph {mic.data.shape[0]}x{mic.data.shape[1]} px is smaller "
            f"than the template box {tpl.data.shape[0]} px")
    return mic.data, tpl.data


#: Relative difference of pixel sizes that counts as a mismatch.
PIXEL_SIZE_TOLERANCE = 0.005


def resolve_pixel_size(cfg: SearchConfig) -> SearchConfig:
    """The configuration with its pixel size taken from the headers where it is not given.

    Without ``pixel_size`` the micrograph header's calibrated pixel size is used; with it, a
    calibrated header of the micrograph or the template that differs by more than 0.5% is
    refused (uncalibrated headers, see :func:`difftm.io.mrc.read_mrc_header`, are ignored).

    Raises:
        FileNotFoundError: an input file is missing.
        ValueError: no pixel size anywhere, or a header disagrees (one line).
    """
    from difftm.io.mrc import read_mrc_header

    headers = {}
    for path in (cfg.micrograph, cfg.template):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: file not found")
        headers[path] = read_mrc_header(path)
    pixel_size, source = cfg.pixel_size, "--pixel-size"
    if pixel_size is None:
        mic = headers[cfg.micrograph]
        if not mic["pixel_size_calibrated"]:
            raise ValueError(f"{cfg.micrograph}: the header has no pixel size; give "
                             "--pixel-size (Angstrom)")
        pixel_size, source = float(mic["pixel_size"]), f"the header of {cfg.micrograph}"
    for path, head in headers.items():
        px = float(head["pixel_size"])
        if head["pixel_size_calibrated"] and abs(px - pixel_size) > PIXEL_SIZE_TOLERANCE * max(
                px, pixel_size):
            raise ValueError(
                f"{path}: pixel size {px:.4g} A in the header does not match {pixel_size:.4g} "
                f"A from {source} (resample the file or fix the header)")
    return cfg if cfg.pixel_size == pixel_size else cfg.model_copy(
        update={"pixel_size": pixel_size})


def prepare_output(cfg: SearchConfig, fingerprint: str) -> None:
    """Create the output folder or check that it holds this run (or nothing of ours).

    Raises:
        FileExistsError: the folder holds another run's results and ``overwrite`` is off.
    """
    out = Path(cfg.output)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    theirs = _folder_fingerprint(out)
    if theirs is not None and theirs != fingerprint:
        if not cfg.overwrite:
            raise FileExistsError(
                f"{out}: holds the results of another search (different inputs or settings); "
                "choose another --output or pass --overwrite")
        for name in OWNED_FILES:
            (out / name).unlink(missing_ok=True)
        for part in (out / "parts").glob("part_*.npz"):
            part.unlink()
    # temporaries of writers killed mid-write (callers hold the folder's lock)
    from difftm.search.lock import remove_stale_temporaries

    remove_stale_temporaries(out, OWNED_FILES)


def _folder_fingerprint(out: Path) -> str | None:
    for theirs in (result_fingerprint(out), checkpoint_fingerprint(out)):
        if theirs is not None:
            return theirs
    if (out / "config.yaml").exists():
        try:
            return load_config(out / "config.yaml", {}).fingerprint()
        except (ValueError, FileNotFoundError):
            return "unknown"
    if any((out / n).exists() for n in OWNED_FILES):
        return "unknown"
    return None


def run_search(
    cfg: SearchConfig,
    progress: ProgressCallback | None = None,
    stop_after_chunks: int | None = None,
    on_plan: Callable[[SearchPlan], None] | None = None,
) -> SearchResult:
    """Run (or resume, or just reload) the search described by ``cfg``.

    The output folder is locked for the whole run (:class:`~difftm.search.lock.OutputLock`):
    a second search into the same folder is refused in one line while this one runs.
    Arguments and return value: see :func:`_run_search_locked`.

    Raises:
        FileExistsError: another live search holds the folder, or it holds another run's
            results (without ``overwrite``).
    """
    from difftm.search.lock import OutputLock

    with OutputLock(cfg.output, "search"):
        return _run_search_locked(cfg, progress, stop_after_chunks, on_plan)


def _run_search_locked(
    cfg: SearchConfig,
    progress: ProgressCallback | None = None,
    stop_after_chunks: int | None = None,
    on_plan: Callable[[SearchPlan], None] | None = None,
) -> SearchResult:
    """Run (or resume, or just reload) the search described by ``cfg`` (folder locked).

    Args:
        cfg: the validated configuration.
        progress: called as ``progress(done, total, seconds_elapsed)`` after every batch.
        stop_after_chunks: raise :class:`SearchInterrupted` after this many new chunks
            (tests use it to simulate a crash between checkpoints).
        on_plan: called once with the :class:`SearchPlan` before correlating.

    Returns:
        The finished :class:`SearchResult` (also written to ``cfg.output``).
    """
    cfg = resolve_pixel_size(cfg)
    fingerprint = cfg.fingerprint()
    prepare_output(cfg, fingerprint)
    out = Path(cfg.output)
    if (out / BUNDLE_NAME).exists():
        return load_results(out)  # finished earlier with the same fingerprint
    image, volume = _load_inputs(cfg)
    # Thread count: as configured, else that of the checkpoint being resumed (torch's CPU
    # FFTs round differently for different thread counts: same count, bit-identical
    # results), else whatever this process uses (the CLI applies the default).
    threads = cfg.threads
    if threads is None and checkpoint_fingerprint(out) == fingerprint:
        threads = checkpoint_threads(out)
    if threads is not None:
        from difftm.threads import apply_threads

        apply_threads(threads)
    device = resolve_device(cfg.device)
    if cfg.strategy == "accelerated":
        from difftm.accelerate.run import run_accelerated

        result = run_accelerated(cfg, image, volume, device, fingerprint, progress,
                                 stop_after_chunks, on_plan)
    else:
        angles, offsets = search_grid(cfg)
        correlator = build_correlator(cfg, image, volume, angles, offsets, device)
        write_config(out, cfg)  # inputs and grid are valid: this folder is this run's
        acc, timings = correlate_all(cfg, correlator, angles, offsets, device, fingerprint,
                                     progress, stop_after_chunks, on_plan)
        result = finalize(acc, cfg, angles, offsets, correlator.box, fingerprint,
                          template_size=correlator.template_size,
                          template_diameter_px=template_diameter(torch.as_tensor(volume)),
                          image_shape=correlator.image_shape, timings=timings)
        result.metadata.update(correlation_counts(
            correlator.n_search, projections_computed(correlator.n_search, int(offsets.numel()),
                                                      timings["batch_size"])))
    result.metadata.update(run_metadata(cfg, torch.get_num_threads()))
    check_still_ours(out, fingerprint)
    result.save(out)
    write_summary(out, result.metadata)
    (out / CHECKPOINT_NAME).unlink(missing_ok=True)
    return result


def correlate_all(
    cfg: SearchConfig,
    correlator,
    angles: torch.Tensor,
    offsets: torch.Tensor,
    device: torch.device,
    fingerprint: str,
    progress: ProgressCallback | None = None,
    stop_after_chunks: int | None = None,
    on_plan: Callable[[SearchPlan], None] | None = None,
) -> tuple[Accumulator, dict]:
    """Correlate every search index of ``correlator`` in checkpointed chunks (resuming the
    checkpoint of ``fingerprint`` in ``cfg.output``); returns the accumulator and timings.

    Raises:
        SearchInterrupted: after ``stop_after_chunks`` new chunks (tests).
    """
    out = Path(cfg.output)
    n_search = correlator.n_search
    batch = cfg.batch_size or plan_batch_size(correlator.shape, correlator.template_size,
                                              device)
    chunk_batches = cfg.chunk_batches or max(1, math.ceil(n_search / batch / 50))
    # chunks start on accumulator block boundaries: bit-identical for any batch or resume
    chunk = aligned_span(batch, batch * chunk_batches)
    plan = SearchPlan(int(angles.shape[0]), int(offsets.numel()), batch, chunk, device,
                      correlator.box, correlator.shape, torch.get_num_threads())
    if on_plan is not None:
        on_plan(plan)

    state = load_checkpoint(out)
    if state is not None and state[2] == fingerprint:
        acc, start, _ = state
        acc = acc.to(device)
        earlier = checkpoint_seconds(out)  # correlation time of the sessions before this one
    else:
        acc, start, earlier = Accumulator.empty(correlator.shape, device), 0, 0.0
    t0 = time.perf_counter()
    chunks_done = 0
    on_batch = None if progress is None else (
        lambda done: progress(done, n_search, time.perf_counter() - t0))
    pos = start
    last_save = t0
    while pos < n_search:
        chunk_end = min(n_search, pos + chunk)
        correlate_range(correlator, acc, pos, chunk_end, batch, on_batch)
        pos = chunk_end
        now = time.perf_counter()
        if (cfg.checkpoint_minutes is None or pos >= n_search
                or now - last_save >= 60.0 * cfg.checkpoint_minutes):
            save_checkpoint(out, acc, pos, fingerprint, seconds=earlier + now - t0,
                            threads=torch.get_num_threads())
            last_save = now
        chunks_done += 1
        stop = stop_after_chunks is not None and chunks_done >= stop_after_chunks
        if stop and pos < n_search:
            raise SearchInterrupted(f"stopped after {chunks_done} chunks at index {pos}")
    elapsed = time.perf_counter() - t0
    timings = {"seconds": earlier + elapsed, "seconds_this_run": elapsed,
               "resumed_from": start, "batch_size": batch, "device": str(device),
               "threads": torch.get_num_threads()}
    return acc, timings


def projections_computed(n_search: int, n_defocus: int, batch: int) -> int:
    """Fourier-slice projections a search of ``n_search`` indices computes: batches are
    ``[k batch, (k + 1) batch)`` (chunks and parts are multiples of the batch) and each
    projects its distinct orientations (index // ``n_defocus``) once."""
    total = 0
    n_batches = -(-int(n_search) // int(batch))
    for k0 in range(0, n_batches, 1 << 20):  # blocks of batches: bounded memory
        k = np.arange(k0, min(n_batches, k0 + (1 << 20)), dtype=np.int64)
        first = (k * batch) // n_defocus
        last = (np.minimum((k + 1) * batch, n_search) - 1) // n_defocus
        total += int((last - first + 1).sum())
    return total


def correlation_counts(n_correlations: int, n_projections: int,
                       n_local_scores: int = 0) -> dict:
    """The work a search did, recorded in its metadata: full-micrograph correlations,
    template evaluations on single-particle crops (accelerated search) and Fourier-slice
    projections."""
    return {"n_correlations": int(n_correlations), "n_local_scores": int(n_local_scores),
            "n_projections": int(n_projections)}


def write_summary(out: Path, metadata: dict) -> None:
    """Write ``search_summary.json`` beside ``config.yaml``: the strategy, the numbers of
    correlations, local scores and projections computed, the search space of the
    statistics and the timings (atomically)."""
    from difftm.io.atomic import atomic_output

    keys = ("strategy", "n_correlations", "n_local_scores", "n_projections", "n_search",
            "n_orientations", "n_defocus", "accelerated", "timings", "fingerprint")
    summary = {k: metadata.get(k) for k in keys if k in metadata}
    with atomic_output(Path(out) / SUMMARY_NAME, overwrite=True) as tmp:
        tmp.write_text(json.dumps(summary, indent=1) + "\n")


def check_still_ours(out: Path, fingerprint: str) -> None:
    """Refuse to write results over a folder that now holds another run's files.

    The lock keeps difftm searches out; this catches anything else that replaced the
    configuration or checkpoint while the search ran.

    Raises:
        FileExistsError: the folder's fingerprint is no longer ``fingerprint``.
    """
    theirs = _folder_fingerprint(Path(out))
    if theirs is not None and theirs != fingerprint:
        raise FileExistsError(
            f"{out}: another run's files appeared in this folder during the search; results "
            "not written (run the command again, with another --output)")


def write_config(out: Path, cfg: SearchConfig) -> None:
    """Write the resolved configuration as ``config.yaml`` in ``out`` (atomically)."""
    from difftm.io.atomic import atomic_output

    with atomic_output(Path(out) / "config.yaml", overwrite=True) as tmp:
        tmp.write_text(cfg.to_yaml())


def run_metadata(cfg: SearchConfig, threads: int) -> dict:
    """Metadata of a finished search beyond :func:`finalize`'s: the CPU threads used, the
    orientation file (None for the grid) and the template centre recorded by
    ``difftm simulate template`` (model coordinates in A at the template's centre voxel,
    which particle coordinates refer to; None when the template does not record it)."""
    from difftm.simulate.template import recorded_template_centre

    try:
        centre = recorded_template_centre(cfg.template)
    except (OSError, ValueError):
        centre = None
    return {
        "threads": int(threads),
        "orientations": None if cfg.orientations is None else str(cfg.orientations),
        "template_centre_angstrom": centre,
    }


def search_grid(cfg: SearchConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The orientations (N, 3) and defocus offsets (N_def,) of a search, float64.

    The orientations are ``cfg.orientations`` (an explicit list, see
    :func:`~difftm.geometry.grids.read_orientations`) when given, else the grid of
    ``out_of_plane_step``, ``in_plane_step`` and ``symmetry``.

    Raises:
        ValueError: the orientation grid is empty, or the orientation file is unreadable.
    """
    if cfg.orientations is not None:
        return (read_orientations(cfg.orientations),
                torch.tensor(cfg.defocus_offsets(), dtype=torch.float64))
    angles = orientation_grid(cfg.out_of_plane_step, cfg.in_plane_step, cfg.symmetry)
    if angles.shape[0] == 0:
        raise ValueError("the orientation grid is empty: check the steps and symmetry")
    return angles, torch.tensor(cfg.defocus_offsets(), dtype=torch.float64)


def correlate_range(
    correlator,
    acc: Accumulator,
    start: int,
    stop: int,
    batch: int,
    on_batch: Callable[[int], None] | None = None,
) -> None:
    """Fold the correlations of search indices ``[start, stop)`` into ``acc`` in batches.

    Args:
        correlator: a :class:`~difftm.search.correlate.Correlator`.
        acc: accumulator on the correlator's device.
        start, stop: index range.
        batch: correlations per batch.
        on_batch: called with the number of indices done (absolute) after every batch.
    """
    with torch.inference_mode():
        for b0 in range(start, stop, batch):
            b1 = min(stop, b0 + batch)
            idx = torch.arange(b0, b1, dtype=torch.int64)
            acc.update(correlator.correlate(idx), idx)
            if on_batch is not None:
                on_batch(b1)


def template_size(
    cfg: SearchConfig, box: int, shape: tuple[int, int], offsets: torch.Tensor
) -> int:
    """Edge of the box in which a search's templates are CTF-filtered and correlated."""
    from difftm.search.correlate import padded_template_size

    max_defocus = max(abs(cfg.defocus_u), abs(cfg.defocus_v_resolved)) + float(
        offsets.abs().max())
    return padded_template_size(cfg.template_padding, box, shape, cfg.pixel_size, max_defocus,
                                cfg.voltage, cfg.cs, cfg.lowpass)


@dataclass
class SearchSetup:
    """The prepared micrograph, projector, padded template box and CTF of a search: what the
    exhaustive correlator and the local scorer (:mod:`difftm.refine.scorer`) share."""

    prepared: object  # PreparedMicrograph
    projector: object  # FourierSliceProjector
    template_size: int
    ctf_params: dict


def search_setup(
    cfg: SearchConfig,
    image: np.ndarray,
    volume: np.ndarray,
    offsets: torch.Tensor,
    device: torch.device,
) -> SearchSetup:
    """Prepare the micrograph and the projector of a search and choose its template box."""
    from difftm.fourier.projector import FourierSliceProjector

    if cfg.pixel_size is None:
        raise ValueError("the pixel size is not known yet: resolve_pixel_size(cfg) first")
    taper = int(volume.shape[0]) // 2 if cfg.edge_taper is None else int(cfg.edge_taper)
    prepared = prepare_micrograph(image, cfg.pixel_size, device=device,
                                  outlier_sigma=cfg.outlier_sigma, whiten=cfg.whiten,
                                  edge_taper=taper)
    vol = torch.as_tensor(volume, dtype=torch.float32, device=device)
    projector = FourierSliceProjector(vol, oversampling=cfg.projector_oversampling,
                                      device=device,
                                      gridding_correction=cfg.gridding_correction)
    size = template_size(cfg, int(vol.shape[0]), prepared.shape, offsets)
    ctf_params = dict(
        defocus_angle=cfg.defocus_angle, voltage_kv=cfg.voltage, cs_mm=cfg.cs,
        amplitude_contrast=cfg.amplitude_contrast, phase_shift_deg=cfg.phase_shift,
        b_factor=cfg.ctf_bfactor,
    )
    return SearchSetup(prepared, projector, size, ctf_params)


def build_correlator(
    cfg: SearchConfig,
    image: np.ndarray,
    volume: np.ndarray,
    angles: torch.Tensor,
    offsets: torch.Tensor,
    device: torch.device,
):
    """Prepare the micrograph, projector and filters of a search (see :class:`Correlator`)."""
    from difftm.search.correlate import Correlator

    setup = search_setup(cfg, image, volume, offsets, device)
    filt = template_filter(setup.prepared, setup.template_size, cfg.highpass, cfg.lowpass)
    rotations = euler_to_matrix(angles.to(torch.float64)).to(torch.float32)
    return Correlator(setup.prepared, setup.projector, rotations, offsets, filt,
                      setup.ctf_params, cfg.defocus_u, cfg.defocus_v_resolved)


def finalize(
    acc: Accumulator,
    cfg: SearchConfig,
    angles: torch.Tensor,
    offsets: torch.Tensor,
    box: int,
    fingerprint: str,
    timings: dict | None = None,
    template_size: int | None = None,
    template_diameter_px: float | None = None,
    image_shape: tuple[int, int] | None = None,
) -> SearchResult:
    """Turn an accumulator into SNR, flat-field SNR, mean, sigma, z-score and pose maps.

    ``image_shape`` is the micrograph's own shape when the search ran on a copy padded to
    fast FFT sizes (:func:`difftm.search.preprocess.fast_shape`): the maps are cropped to it.
    """
    n_def = int(offsets.numel())
    h, w = image_shape or acc.shape
    mean, sigma = (m[:h, :w] for m in acc.mean_sigma())
    best = acc.best.double()[:h, :w]
    best_index_all = acc.best_index[:h, :w]
    lo, hi = box // 2, box - 1 - box // 2
    valid = torch.zeros((h, w), dtype=torch.bool, device=best.device)
    valid[lo : h - hi, lo : w - hi] = True
    n_valid = int(valid.sum())
    total, total_sq = (m[:h, :w] for m in acc.sums())
    g_mean = float(total[valid].sum() / (acc.count * n_valid))
    g_var = float(total_sq[valid].sum() / (acc.count * n_valid)) - g_mean**2
    g_sd = math.sqrt(max(g_var, 1e-30))
    zscore = (best - mean) / sigma.clamp_min(1e-12)
    idx = best_index_all.clamp_min(0).cpu()
    orient = torch.div(idx, n_def, rounding_mode="floor")
    plane = idx - orient * n_def
    eul = angles.to(torch.float64)[orient]
    maps_t = {
        "snr": best,
        "snr_flatfield": (best - g_mean) / g_sd,
        "zscore": zscore,
        "mean": mean,
        "sigma": sigma,
        "rot": eul[..., 0],
        "tilt": eul[..., 1],
        "psi": eul[..., 2],
        "defocus_offset": offsets.to(torch.float64)[plane],
    }
    valid_cpu = valid.cpu()
    maps = {}
    for name, m in maps_t.items():
        m = m.cpu().to(torch.float64)
        maps[name] = torch.where(valid_cpu, m, torch.zeros_like(m)).numpy().astype(np.float32)
    best_index = torch.where(valid_cpu, best_index_all.cpu(), -1).numpy()
    metadata = {
        "pixel_size": cfg.pixel_size,
        "n_search": acc.count,
        "n_orientations": int(angles.shape[0]),
        "n_defocus": n_def,
        "defocus_offsets": [float(x) for x in offsets],
        "box": box,
        "template_padded_box": int(template_size or box),
        # extent of the template's support (sets the default peak suppression radius)
        "template_diameter_px": float(template_diameter_px or box),
        "border_low": lo,
        "border_high": hi,
        "valid_pixels": n_valid,
        "global_mean": g_mean,
        "global_sd": g_sd,
        "defocus_u": cfg.defocus_u,
        "defocus_v": cfg.defocus_v_resolved,
        "defocus_angle": cfg.defocus_angle,
        "voltage": cfg.voltage,
        "cs": cfg.cs,
        "amplitude_contrast": cfg.amplitude_contrast,
        "phase_shift": cfg.phase_shift,
        "ctf_bfactor": cfg.ctf_bfactor,
        "symmetry": cfg.symmetry,
        "out_of_plane_step": cfg.out_of_plane_step,
        "in_plane_step": cfg.in_plane_step,
        "micrograph": str(cfg.micrograph),
        "template": str(cfg.template),
        "fingerprint": fingerprint,
        "strategy": cfg.strategy,
        "timings": timings or {},
    }
    json.dumps(metadata)  # fail early if something is not serialisable
    return SearchResult(maps=maps, best_index=best_index, metadata=metadata)
