"""Score detections against a ground-truth particle table (simulated micrographs).

Matching is greedy by distance: each detection (strongest first) takes the nearest unmatched
true particle within ``max_distance`` pixels. Reported: precision, recall, position errors
(pixels) and angular errors (the angle of the rotation taking the detected pose to the true
one, degrees, minimised over the template's symmetry group).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch


@dataclass
class DetectionScore:
    """Agreement of detections with the truth."""

    n_true: int
    n_detected: int
    n_matched: int
    precision: float
    recall: float
    median_position_error_px: float
    max_position_error_px: float
    median_angle_error_deg: float
    max_angle_error_deg: float
    median_defocus_error_angstrom: float

    def as_dict(self) -> dict:
        """Plain dict for JSON/HTML."""
        return asdict(self)

    def line(self) -> str:
        """One human-readable line."""
        return (
            f"precision {self.precision:.3f}, recall {self.recall:.3f} "
            f"({self.n_matched}/{self.n_true} found, {self.n_detected} called); position error "
            f"median {self.median_position_error_px:.2f} px (max "
            f"{self.max_position_error_px:.2f}); angle error median "
            f"{self.median_angle_error_deg:.2f} deg (max {self.max_angle_error_deg:.2f})")


def match_detections(
    detections: pd.DataFrame, truth: pd.DataFrame, max_distance: float
) -> list[tuple[int, int, float]]:
    """Greedy matching; returns (detection row, truth row, distance) triples.

    Both tables need columns ``x`` and ``y`` (pixels); detections are taken in their order.
    """
    tx = truth["x"].to_numpy(dtype=float)
    ty = truth["y"].to_numpy(dtype=float)
    taken = np.zeros(len(truth), dtype=bool)
    pairs = []
    for i, (x, y) in enumerate(zip(detections["x"].to_numpy(dtype=float),
                                   detections["y"].to_numpy(dtype=float), strict=True)):
        d = np.hypot(tx - x, ty - y)
        d[taken] = np.inf
        if len(d) == 0:
            break
        j = int(np.argmin(d))
        if d[j] <= max_distance:
            taken[j] = True
            pairs.append((i, j, float(d[j])))
    return pairs


def angular_errors(
    det_angles: np.ndarray, true_angles: np.ndarray, symmetry: str = "C1"
) -> np.ndarray:
    """Rotation angle (deg) between pose pairs given as (K, 3) RELION Euler angles."""
    from difftm.geometry.euler import euler_to_matrix, rotation_angle_deg
    from difftm.geometry.symmetry import symmetry_matrices

    if len(det_angles) == 0:
        return np.zeros(0)
    r_det = euler_to_matrix(torch.tensor(np.array(det_angles, dtype=np.float64)))
    r_true = euler_to_matrix(torch.tensor(np.array(true_angles, dtype=np.float64)))
    sym = symmetry_matrices(symmetry).to(torch.float64)
    best = None
    for g in sym:
        err = rotation_angle_deg(r_det @ g, r_true)
        best = err if best is None else torch.minimum(best, err)
    return best.numpy()


def score_detections(
    detections: pd.DataFrame,
    truth: pd.DataFrame,
    max_distance: float = 5.0,
    symmetry: str = "C1",
) -> DetectionScore:
    """Precision, recall, position/angle/defocus errors of ``detections`` against ``truth``.

    Args:
        detections: columns x, y, rot, tilt, psi (and optionally defocus_u), strongest first.
        truth: columns x, y, rot, tilt, psi (and optionally defocus_u).
        max_distance: a detection within this many pixels of a true centre is a match.
        symmetry: template point group for angular errors.
    """
    pairs = match_detections(detections, truth, max_distance)
    n_match = len(pairs)
    di = [p[0] for p in pairs]
    tj = [p[1] for p in pairs]
    dist = np.array([p[2] for p in pairs])
    cols = ["rot", "tilt", "psi"]
    ang = angular_errors(detections.iloc[di][cols].to_numpy(float),
                         truth.iloc[tj][cols].to_numpy(float), symmetry)
    if "defocus_u" in detections and "defocus_u" in truth and n_match:
        dz = np.abs(detections.iloc[di]["defocus_u"].to_numpy(float)
                    - truth.iloc[tj]["defocus_u"].to_numpy(float))
        dz_med = float(np.median(dz))
    else:
        dz_med = float("nan")

    def _med(a):
        return float(np.median(a)) if len(a) else float("nan")

    def _max(a):
        return float(np.max(a)) if len(a) else float("nan")

    return DetectionScore(
        n_true=len(truth),
        n_detected=len(detections),
        n_matched=n_match,
        precision=n_match / len(detections) if len(detections) else 1.0,
        recall=n_match / len(truth) if len(truth) else 1.0,
        median_position_error_px=_med(dist),
        max_position_error_px=_max(dist),
        median_angle_error_deg=_med(ang),
        max_angle_error_deg=_max(ang),
        median_defocus_error_angstrom=dz_med,
    )
