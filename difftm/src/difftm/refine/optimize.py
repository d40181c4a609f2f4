"""Local refinement of particle poses, sub-pixel shifts and defocus: gradient and grid.

Both optimisers work on the scores of :class:`difftm.refine.scorer.ParticleScorer` (the
search's SNR units) for a batch of particles, each independent of the others, and never
return a worse score than the start: a particle whose refined score does not beat its
starting score keeps the start.

Gradient (:func:`refine_gradient`), the DiffTM idea: the parameters of every particle
(a rotation vector applied on the left of the starting matrix, so no gimbal lock; the shift
of the centre in pixels; a defocus offset) follow Adam steps on ``-score`` computed by
autograd through the projector, the CTF and the shift's phase ramp. The landscape narrows as
resolution rises, so a schedule releases a Gaussian low-pass over the stages (coarse to
fine), steps are bounded per iteration and in total, and several starts around the given
pose (rotation offsets within the coarse grid's covering radius) run side by side; the best
final score of each particle wins. Adam's update is elementwise and the particles'
objectives are separate, so the result does not depend on how particles are batched.

Grid (:func:`refine_grid`), the baseline (cisTEM's local search): the scores of a local
grid of rotations (out-of-plane about the image x and y axes, in-plane about z), then of
defocus offsets, then of sub-pixel shifts, each stage keeping the best.

Pixel size (:func:`pixel_size_scan`): the mean score of all particles of a run, at their
refined poses, for a range of template voxel sizes (the template magnified by the ratio to
the micrograph's pixel size): the peak says which voxel size the template really has
relative to the micrograph (a mis-calibrated magnification costs SNR on every particle).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from difftm.refine.scorer import ParticleScorer, rotation_update


@dataclass
class Refined:
    """Refined parameters of a batch of particles (all tensors on the CPU, float64).

    Attributes:
        rotations: (B, 3, 3) RELION matrices.
        shifts: (B, 2) sub-pixel shifts (x, y) of the centres from the integer start, px.
        defocus_offsets: (B,) Angstrom, relative to the micrograph's defocus.
        score: (B,) final scores (search SNR units, no extra low-pass).
        start_score: (B,) scores of the starting parameters.
        trace: (n_steps, B) score of the best start at each step (gradient) or stage (grid).
    """

    rotations: torch.Tensor
    shifts: torch.Tensor
    defocus_offsets: torch.Tensor
    score: torch.Tensor
    start_score: torch.Tensor
    trace: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


@dataclass
class GradientSchedule:
    """Settings of :func:`refine_gradient` (defaults suit 1-2 A/px; see module docstring).

    Attributes:
        lowpass_angstrom: Gaussian low-pass of each stage (None = the search's band only).
        steps: Adam steps per stage.
        learning_rate: first step size in degrees, pixels and 100 A (the parameters'
            natural units); it decays by ``decay`` per stage.
        decay: step size factor from one stage to the next.
        start_offsets_deg: rotation vectors (degrees) of the starts added to the given pose.
        max_angle_deg, max_shift_px, max_defocus: bounds of the total change.
    """

    lowpass_angstrom: tuple[float | None, ...] = (12.0, 6.0, None)
    steps: int = 30
    learning_rate: float = 0.25
    decay: float = 0.5
    start_offsets_deg: tuple[tuple[float, float, float], ...] = (
        (0.0, 0.0, 0.0), (2.0, 0.0, 0.0), (-2.0, 0.0, 0.0), (0.0, 2.0, 0.0), (0.0, -2.0, 0.0))
    max_angle_deg: float = 8.0
    max_shift_px: float = 3.0
    max_defocus: float = 600.0


def _as(t, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(t).to(dtype)


def refine_gradient(
    scorer: ParticleScorer,
    centres: torch.Tensor,
    rotations: torch.Tensor,
    defocus_offsets: torch.Tensor | None = None,
    schedule: GradientSchedule | None = None,
    refine_defocus: bool = True,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> Refined:
    """Refine every particle by gradient ascent of its score (module docstring).

    Args:
        scorer: the micrograph's scorer.
        centres: (B, 2) integer centres (x, y), pixels.
        rotations: (B, 3, 3) starting matrices.
        defocus_offsets: (B,) starting offsets (Angstrom), default 0.
        schedule: the optimisation schedule.
        refine_defocus: also optimise the defocus offset.
        batch_size: particles optimised together (results do not depend on it).
        progress: called as ``progress(done, total)`` after each batch of particles.

    Returns:
        :class:`Refined`.
    """
    schedule = schedule or GradientSchedule()
    n = int(rotations.shape[0])
    if defocus_offsets is None:
        defocus_offsets = torch.zeros(n)
    parts = []
    for b0 in range(0, n, batch_size):
        sl = slice(b0, min(n, b0 + batch_size))
        parts.append(_refine_gradient_batch(scorer, _as(centres[sl], torch.int64),
                                            _as(rotations[sl]), _as(defocus_offsets[sl]),
                                            schedule, refine_defocus))
        if progress is not None:
            progress(sl.stop, n)
    return _concat(parts)


def _refine_gradient_batch(scorer, centres, rot0, dz0, schedule, refine_defocus) -> Refined:
    dev = scorer.device
    b = rot0.shape[0]
    starts = torch.tensor(schedule.start_offsets_deg, dtype=torch.float32)
    k = starts.shape[0]
    # every particle once per start: (k * b) rows, start-major
    cen = centres.repeat(k, 1).to(dev)
    base = rot0.repeat(k, 1, 1).to(dev)
    start_vec = torch.deg2rad(starts).repeat_interleave(b, 0).to(dev)
    base = rotation_update(start_vec, base)
    patches = scorer.crops(cen)
    with torch.no_grad():
        start_score = scorer.score(cen[:b], rot0.to(dev), None, dz0.to(dev),
                                   patches=patches[:b]).double().cpu()
    # parameters in natural units: degrees, pixels, 100 A
    angle = torch.zeros(k * b, 3, device=dev, requires_grad=True)
    shift = torch.zeros(k * b, 2, device=dev, requires_grad=True)
    dz = (dz0.repeat(k).to(dev) / 100.0).clone().requires_grad_(refine_defocus)
    dz_start = dz.detach().clone()
    params = [angle, shift] + ([dz] if refine_defocus else [])
    trace = []
    lr = schedule.learning_rate
    for lowpass in schedule.lowpass_angstrom:
        opt = torch.optim.Adam(params, lr=lr)
        for _ in range(schedule.steps):
            opt.zero_grad()
            rot = rotation_update(torch.deg2rad(angle), base)
            s = scorer.score(cen, rot, shift, dz * 100.0,
                             lowpass=None if lowpass is None else 1.0 / lowpass,
                             patches=patches)
            (-s.sum()).backward()
            opt.step()
            with torch.no_grad():  # bounded total change
                norm = angle.norm(dim=1, keepdim=True).clamp_min(1e-12)
                angle.mul_(torch.clamp(schedule.max_angle_deg / norm, max=1.0))
                shift.clamp_(-schedule.max_shift_px, schedule.max_shift_px)
                lim = schedule.max_defocus / 100.0
                dz.copy_(torch.maximum(torch.minimum(dz, dz_start + lim), dz_start - lim))
            trace.append(s.detach().reshape(k, b).max(dim=0).values.double().cpu().numpy())
        lr *= schedule.decay
    with torch.no_grad():
        rot = rotation_update(torch.deg2rad(angle), base)
        final = scorer.score(cen, rot, shift, dz * 100.0, patches=patches).reshape(k, b)
        best = final.argmax(dim=0)
        pick = best * b + torch.arange(b, device=dev)
        out = Refined(rotations=rot[pick].double().cpu(), shifts=shift[pick].double().cpu(),
                      defocus_offsets=(dz[pick] * 100.0).double().cpu(),
                      score=final.max(dim=0).values.double().cpu(),
                      start_score=start_score, trace=np.asarray(trace))
    return _keep_start_if_worse(out, rot0, dz0)


def _keep_start_if_worse(out: Refined, rot0: torch.Tensor, dz0: torch.Tensor) -> Refined:
    worse = out.score < out.start_score
    if bool(worse.any()):
        out.rotations[worse] = rot0[worse].double()
        out.shifts[worse] = 0.0
        out.defocus_offsets[worse] = dz0[worse].double()
        out.score[worse] = out.start_score[worse]
    return out


def _concat(parts: list[Refined]) -> Refined:
    steps = max((p.trace.shape[0] for p in parts), default=0)
    trace = np.concatenate([p.trace for p in parts], axis=1) if steps else np.zeros((0, 0))
    return Refined(
        rotations=torch.cat([p.rotations for p in parts]),
        shifts=torch.cat([p.shifts for p in parts]),
        defocus_offsets=torch.cat([p.defocus_offsets for p in parts]),
        score=torch.cat([p.score for p in parts]),
        start_score=torch.cat([p.start_score for p in parts]),
        trace=trace,
    )


def _axis_grid(half_range: float, step: float) -> torch.Tensor:
    n = int(math.floor(half_range / step + 1e-9))
    return torch.arange(-n, n + 1, dtype=torch.float32) * step


@torch.no_grad()
def refine_grid(
    scorer: ParticleScorer,
    centres: torch.Tensor,
    rotations: torch.Tensor,
    defocus_offsets: torch.Tensor | None = None,
    out_of_plane_range: float = 3.75,
    out_of_plane_step: float = 0.2,
    in_plane_range: float = 2.25,
    in_plane_step: float = 0.1,
    defocus_range: float = 200.0,
    defocus_step: float = 10.0,
    shift_range: float = 1.0,
    shift_step: float = 0.1,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> Refined:
    """Local grid refinement (module docstring); defaults are cisTEM's local search around
    a 2.5/1.5 deg grid (+-1.5 steps at 0.2 deg out of plane, 0.1 deg in plane; defocus +-200
    A in 10 A steps; shifts +-1 px at 0.1 px). Stages: shift, rotation, defocus, shift; each
    keeps the best score of its grid. Coarser steps trade accuracy for time."""
    n = int(rotations.shape[0])
    if defocus_offsets is None:
        defocus_offsets = torch.zeros(n)
    dev = scorer.device
    cen = _as(centres, torch.int64).to(dev)
    rot = _as(rotations).to(dev).clone()  # updated in place below: never the caller's
    dz = _as(defocus_offsets).to(dev).clone()
    shift = torch.zeros(n, 2, device=dev)
    patches = scorer.crops(cen)
    start = scorer.score(cen, rot, None, dz, patches=patches).double().cpu()
    op = _axis_grid(out_of_plane_range, out_of_plane_step)
    ip = _axis_grid(in_plane_range, in_plane_step)
    ax, ay, az = torch.meshgrid(op, op, ip, indexing="ij")
    vectors = torch.deg2rad(torch.stack([ax, ay, az], -1).reshape(-1, 3)).to(dev)
    sg = _axis_grid(shift_range, shift_step)
    sx, sy = torch.meshgrid(sg, sg, indexing="xy")
    shift_grid = torch.stack([sx.reshape(-1), sy.reshape(-1)], -1).to(dev)
    dgrid = _axis_grid(defocus_range, defocus_step).to(dev)

    def best_of(i: int, m: int, make) -> int:
        """Index of the best of m candidates of particle i; make(a, b) -> (rot, shift, dz)."""
        best, arg = -math.inf, 0
        for c0 in range(0, m, batch_size):
            c1 = min(m, c0 + batch_size)
            r, sh, d = make(c0, c1)
            s = scorer.score(cen[i : i + 1].expand(c1 - c0, 2), r, sh, d,
                             patches=patches[i : i + 1].expand(c1 - c0, -1, -1))
            j = int(s.argmax())
            if float(s[j]) > best:
                best, arg = float(s[j]), c0 + j
        return arg

    trace = [start.numpy()]
    for stage in ("shift", "rotation", "defocus", "shift"):
        for i in range(n):
            if stage == "shift":
                j = best_of(i, len(shift_grid), lambda a, b, i=i: (
                    rot[i : i + 1].expand(b - a, 3, 3), shift_grid[a:b], dz[i].expand(b - a)))
                shift[i] = shift_grid[j]
            elif stage == "rotation":
                j = best_of(i, len(vectors), lambda a, b, i=i: (
                    rotation_update(vectors[a:b], rot[i : i + 1].expand(b - a, 3, 3)),
                    shift[i : i + 1].expand(b - a, 2), dz[i].expand(b - a)))
                rot[i] = rotation_update(vectors[j : j + 1], rot[i : i + 1])[0]
            else:
                j = best_of(i, len(dgrid), lambda a, b, i=i: (
                    rot[i : i + 1].expand(b - a, 3, 3), shift[i : i + 1].expand(b - a, 2),
                    dz[i] + dgrid[a:b]))
                dz[i] = dz[i] + dgrid[j]
        trace.append(scorer.score(cen, rot, shift, dz, patches=patches).double().cpu().numpy())
        if progress is not None:
            progress(len(trace) - 1, 4)
    final = torch.as_tensor(trace[-1])
    out = Refined(rotations=rot.double().cpu(), shifts=shift.double().cpu(),
                  defocus_offsets=dz.double().cpu(), score=final, start_score=start,
                  trace=np.asarray(trace))
    return _keep_start_if_worse(out, _as(rotations), _as(defocus_offsets))


@torch.no_grad()
def pixel_size_scan(
    scorer: ParticleScorer,
    centres: torch.Tensor,
    rotations: torch.Tensor,
    shifts: torch.Tensor,
    defocus_offsets: torch.Tensor,
    pixel_sizes: np.ndarray,
) -> np.ndarray:
    """Mean score of all particles for each candidate template voxel size (Angstrom).

    Args:
        scorer: the micrograph's scorer (its pixel size is the micrograph's).
        centres, rotations, shifts, defocus_offsets: the particles (e.g. refined).
        pixel_sizes: candidate voxel sizes of the template, Angstrom.

    Returns:
        (len(pixel_sizes),) mean scores.
    """
    dev = scorer.device
    cen = _as(centres, torch.int64).to(dev)
    rot = _as(rotations).to(dev)
    sh = _as(shifts).to(dev)
    dz = _as(defocus_offsets).to(dev)
    patches = scorer.crops(cen)
    out = []
    for px in np.asarray(pixel_sizes, dtype=float):
        m = torch.full((len(cen),), px / scorer.pixel_size, device=dev)
        out.append(float(scorer.score(cen, rot, sh, dz, patches=patches,
                                      magnification=m).mean()))
    return np.asarray(out)
