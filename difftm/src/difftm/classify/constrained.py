"""Constrained search: a second template scored only near detected partners.

Given detections of a large partner (centre ``x_p`` in pixels, RELION rotation ``A_p``,
defocus), a small partner rigidly bound to it sits at ``x_p + (A_p d)_xy / pixel size``,
where ``d`` (A) is the vector from the partner template's centre to the small template's
centre in the model frame (both templates made from one model frame: for templates written
by ``difftm simulate template`` it is the difference of the centres recorded in their
headers), with a rotation close to ``A_p``. For every partner this module scores the small
template exhaustively on

* positions: every integer pixel within ``radius`` (A) of the predicted centre, inside
  the micrograph (``Q_p`` positions);
* orientations: ``exp([v]) A_p`` for rotation vectors ``v`` on a cubic grid of step
  ``angle_step`` with ``|v| <= cone`` (``M`` orientations; the angle between ``exp([v])A``
  and ``A`` is ``|v|``);
* defocus: the partner's (one plane),

with the one scorer of difftm (:class:`difftm.refine.scorer.ParticleScorer`: the search's
whitened micrograph, template, CTF and normalisation, so scores are in the search's SNR
units), and keeps the best trial per partner.

Threshold for the reduced search space: the number of trials is
``N = sum_p Q_p * M * 1``, each modelled as a unit Gaussian under noise, and the threshold
is the project's erfc threshold for ``n_fp`` expected false positives over the whole
constrained search, ``t = -ndtri(n_fp / N)``
(:func:`difftm.stats.threshold.erfc_threshold` with ``n_pixels = sum_p Q_p`` and
``n_search = M``). Correlated neighbouring trials make the union bound conservative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from difftm.refine.scorer import ParticleScorer, rotation_update
from difftm.stats.threshold import erfc_threshold


@dataclass
class ConstrainedSearch:
    """Result of :func:`constrained_search`.

    Attributes:
        table: one row per partner: ``partner`` (0-based row), ``x_pred``, ``y_pred``
            (predicted centre, px), ``x``, ``y`` (best centre, px), ``rot``, ``tilt``,
            ``psi`` (best orientation), ``defocus_u``, ``defocus_v``, ``snr`` (best score),
            ``angle_from_partner`` (deg), ``n_positions``, ``called`` (``snr >= threshold``).
        threshold: the score threshold of the reduced search space.
        n_orientations: orientations per partner (M).
        n_positions: positions over all partners (sum of Q_p).
        n_trials: ``n_positions * n_orientations`` (one defocus plane per partner).
        n_false_positives: expected false positives the threshold allows.
    """

    table: pd.DataFrame
    threshold: float
    n_orientations: int
    n_positions: int
    n_trials: int
    n_false_positives: float

    @property
    def called(self) -> pd.DataFrame:
        """The partners whose best score passes the threshold."""
        return self.table[self.table["called"]].reset_index(drop=True)


def cone_vectors(cone_deg: float, step_deg: float) -> torch.Tensor:
    """Rotation vectors (M, 3) in radians on a cubic grid of ``step_deg`` with norm at most
    ``cone_deg`` (the zero vector first).

    Raises:
        ValueError: non-positive or non-finite values, a step above the cone, or more than
            200,000 orientations.
    """
    if not (math.isfinite(cone_deg) and math.isfinite(step_deg) and cone_deg >= 0
            and step_deg > 0):
        raise ValueError(f"--cone and --angle-step must be finite, cone >= 0 and step > 0, "
                         f"got {cone_deg:g} and {step_deg:g}")
    n = int(math.floor(cone_deg / step_deg + 1e-9))
    if (2 * n + 1) ** 3 > 8_000_000 or (4 / 3) * math.pi * n**3 > 200_000:
        raise ValueError(f"--cone {cone_deg:g} at --angle-step {step_deg:g} deg is more than "
                         "200,000 orientations per partner; use a larger step")
    ax = torch.arange(-n, n + 1, dtype=torch.float64) * step_deg
    g = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    g = g[g.norm(dim=1) <= cone_deg + 1e-9]
    order = torch.argsort(g.norm(dim=1), stable=True)
    return torch.deg2rad(g[order])


def disc_offsets(radius_px: float) -> torch.Tensor:
    """Integer (dx, dy) offsets (Q, 2) with ``dx^2 + dy^2 <= radius_px^2``, (0, 0) first."""
    r = int(math.floor(radius_px + 1e-9))
    ax = torch.arange(-r, r + 1)
    g = torch.stack(torch.meshgrid(ax, ax, indexing="xy"), -1).reshape(-1, 2)
    d2 = (g.double() ** 2).sum(1)
    g = g[d2 <= radius_px**2 + 1e-9]
    return g[torch.argsort((g.double() ** 2).sum(1), stable=True)]


def predicted_centres(xy: np.ndarray, rotations: torch.Tensor, offset_angstrom: np.ndarray,
                      pixel_size: float) -> np.ndarray:
    """Centres (N, 2) of the small partner: ``x_p + (A_p d)_xy / pixel_size`` (module
    docstring); ``A_p`` maps the model frame onto the image frame as the projector and the
    simulator do (atoms at ``A (r - c)``)."""
    d = torch.as_tensor(np.asarray(offset_angstrom, dtype=np.float64)).reshape(3)
    moved = rotations.double() @ d
    return np.asarray(xy, dtype=np.float64) + moved[:, :2].numpy() / float(pixel_size)


@torch.no_grad()
def constrained_search(
    scorer: ParticleScorer,
    partners: pd.DataFrame,
    radius_angstrom: float,
    cone_deg: float,
    angle_step_deg: float,
    offset_angstrom: np.ndarray | None = None,
    defocus_u: float | None = None,
    defocus_v: float | None = None,
    n_false_positives: float = 1.0,
    batch_size: int = 256,
    progress=None,
) -> ConstrainedSearch:
    """Score ``scorer``'s template near every partner (module docstring).

    Args:
        scorer: scorer of the small template on the micrograph.
        partners: plain-named table with ``x``, ``y``, ``rot``, ``tilt``, ``psi`` and
            optionally ``defocus_u``, ``defocus_v`` (A).
        radius_angstrom: search radius around the predicted centre, A.
        cone_deg: largest rotation from the partner's orientation, degrees.
        angle_step_deg: step of the cubic rotation-vector grid, degrees.
        offset_angstrom: ``d`` (A, model frame); default zero.
        defocus_u, defocus_v: the micrograph's defocus (the scorer's), A; a partner without
            its own defocus uses them.
        n_false_positives: expected false positives over the whole constrained search.
        batch_size: orientations scored together.
        progress: ``progress(done, total)`` over partners.

    Returns:
        :class:`ConstrainedSearch`.
    """
    from difftm.geometry.euler import euler_to_matrix, matrix_to_euler

    if not (math.isfinite(radius_angstrom) and radius_angstrom >= 0):
        raise ValueError(f"--radius must be finite and >= 0 A, got {radius_angstrom:g}")
    if len(partners) == 0:
        raise ValueError("no partners to search near")
    px = scorer.pixel_size
    vectors = cone_vectors(cone_deg, angle_step_deg).float().to(scorer.device)
    offsets = disc_offsets(radius_angstrom / px)
    if len(offsets) > 100_000:
        raise ValueError(f"--radius {radius_angstrom:g} A is {len(offsets)} positions per "
                         "partner (> 100,000); search the whole micrograph instead")
    m = len(vectors)
    offset = np.zeros(3) if offset_angstrom is None else np.asarray(offset_angstrom, float)
    du0 = scorer.defocus_u if defocus_u is None else float(defocus_u)
    dv0 = scorer.defocus_v if defocus_v is None else float(defocus_v)
    rot_p = euler_to_matrix(torch.tensor(partners[["rot", "tilt", "psi"]].to_numpy(float)))
    pred = predicted_centres(partners[["x", "y"]].to_numpy(float), rot_p, offset, px)
    h, w = scorer.image.shape
    hi, wi = scorer.image_shape[-2:]
    du = partners["defocus_u"].to_numpy(float) if "defocus_u" in partners else np.full(
        len(partners), du0)
    rows = []
    total_positions = 0
    for p in range(len(partners)):
        centre = np.rint(pred[p]).astype(np.int64)
        pos = offsets + torch.as_tensor(centre)
        inside = (pos[:, 0] >= 0) & (pos[:, 0] < wi) & (pos[:, 1] >= 0) & (pos[:, 1] < hi)
        pos = pos[inside]
        q = len(pos)
        total_positions += q
        best = (-math.inf, 0, 0)
        if q:
            patches = scorer.crops(pos.to(scorer.device)).reshape(q, -1)
            base = rot_p[p : p + 1].float().to(scorer.device)
            dz = torch.full((1,), float(du[p] - scorer.defocus_u), device=scorer.device)
            for b0 in range(0, m, batch_size):
                v = vectors[b0 : b0 + batch_size]
                rots = rotation_update(v, base.expand(len(v), 3, 3))
                t = scorer.templates(rots, dz.expand(len(v))).reshape(len(v), -1)
                s = t @ patches.T  # (orientations, positions)
                k = int(s.argmax())
                val = float(s.reshape(-1)[k])
                if val > best[0]:
                    best = (val, b0 + k // q, k % q)
        val, j, i = best
        rot = rotation_update(vectors[j : j + 1], rot_p[p : p + 1].float().to(scorer.device))
        eul = matrix_to_euler(rot.double().cpu())[0].numpy()
        ddz = float(du[p]) - du0
        rows.append({"partner": p, "x_pred": pred[p, 0], "y_pred": pred[p, 1],
                     "x": float(pos[i, 0]) if q else np.nan,
                     "y": float(pos[i, 1]) if q else np.nan,
                     "rot": eul[0], "tilt": eul[1], "psi": eul[2],
                     "defocus_u": du0 + ddz, "defocus_v": dv0 + ddz, "snr": val,
                     "angle_from_partner": float(torch.rad2deg(vectors[j].norm())),
                     "n_positions": q})
        if progress is not None:
            progress(p + 1, len(partners))
    if total_positions == 0:
        raise ValueError("every predicted position lies outside the micrograph")
    threshold = erfc_threshold(total_positions, m, n_false_positives)
    table = pd.DataFrame(rows)
    table["called"] = table["snr"] >= threshold
    return ConstrainedSearch(table, threshold, m, total_positions, total_positions * m,
                             float(n_false_positives))
