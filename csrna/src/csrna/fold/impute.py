"""Multiple imputation of missing chemical shifts by chained equations with predictive mean
matching (MICE-PMM), as used by CS-Fold.

The published method appends the RNA to the (complete) training table ``ss_table_0.txt`` and
runs MICE with PMM using the residue name and all 19 shifts as predictors (``id`` and
``resid`` dropped), m = 5 imputations, and takes the per-value median over the m completed
tables. This module reimplements that procedure:

for each imputation k (own random stream from ``seed``):
  1. fill every missing value with a random draw from the observed values of its column;
  2. for ``maxit`` sweeps, for each column j with missing values: fit ordinary least squares of
     column j on the other 18 columns plus the one-hot residue name over the rows where j is
     observed; draw coefficients from their Bayesian posterior (sigma^2 ~ SSE / chi^2_{n-p},
     beta* ~ N(beta_hat, sigma^2 (X'X)^-1)); predict the observed rows with beta_hat and the
     missing rows with beta*; for each missing row choose at random one of the ``donors``
     observed rows with the closest predicted mean and copy its observed value.

Imputed values are therefore always values really observed in the reference population.
"""

from __future__ import annotations

import numpy as np

from csrna.io.nuclei import RESIDUES


def _design(values: np.ndarray, onehot: np.ndarray, j: int) -> np.ndarray:
    others = np.delete(values, j, axis=1)
    return np.hstack([np.ones((values.shape[0], 1)), onehot[:, 1:], others])


def _match_donors(yhat_obs: np.ndarray, y_obs: np.ndarray, yhat_mis: np.ndarray, donors: int,
                  rng: np.random.Generator) -> np.ndarray:
    """For each missing row, the observed value of one of the ``donors`` nearest predictions."""
    order = np.argsort(yhat_obs, kind="stable")
    sorted_hat = yhat_obs[order]
    k = min(donors, len(order))
    pos = np.searchsorted(sorted_hat, yhat_mis)
    # the k nearest lie within k places either side of the insertion point
    window = pos[:, None] + np.arange(-k, k)[None, :]
    window = np.clip(window, 0, len(order) - 1)
    dist = np.abs(sorted_hat[window] - yhat_mis[:, None])
    dist[:, 1:][window[:, 1:] == window[:, :-1]] = np.inf  # clipped duplicates
    nearest = np.take_along_axis(window, np.argsort(dist, axis=1, kind="stable")[:, :k], axis=1)
    pick = nearest[np.arange(len(yhat_mis)), rng.integers(0, k, size=len(yhat_mis))]
    return y_obs[order[pick]]


def _one_imputation(values: np.ndarray, missing: np.ndarray, onehot: np.ndarray, maxit: int,
                    donors: int, rng: np.random.Generator) -> np.ndarray:
    x = values.copy()
    cols = [j for j in range(x.shape[1]) if missing[:, j].any()]
    for j in cols:
        obs = x[~missing[:, j], j]
        x[missing[:, j], j] = rng.choice(obs, size=int(missing[:, j].sum()))
    for _ in range(maxit):
        for j in cols:
            mis = missing[:, j]
            obs_rows = ~mis
            a = _design(x, onehot, j)
            a_obs, y_obs = a[obs_rows], x[obs_rows, j]
            # scale columns for a well-conditioned normal matrix; small ridge as in mice
            scale = np.maximum(a_obs.std(axis=0), 1e-8)
            scale[0] = 1.0
            a_obs_s, a_mis_s = a_obs / scale, a[mis] / scale
            xtx = a_obs_s.T @ a_obs_s
            xtx += 1e-5 * np.diag(np.diag(xtx)) + 1e-8 * np.eye(xtx.shape[0])
            beta = np.linalg.solve(xtx, a_obs_s.T @ y_obs)
            resid = y_obs - a_obs_s @ beta
            dof = max(len(y_obs) - a.shape[1], 1)
            sigma = np.sqrt(resid @ resid / rng.chisquare(dof))
            chol = np.linalg.cholesky(np.linalg.inv(xtx))
            beta_star = beta + sigma * chol @ rng.standard_normal(len(beta))
            yhat_obs = a_obs_s @ beta
            yhat_mis = a_mis_s @ beta_star
            x[mis, j] = _match_donors(yhat_obs, y_obs, yhat_mis, donors, rng)
    return x


def mice_pmm(values: np.ndarray, resnames: np.ndarray, m: int = 5, maxit: int = 10,
             donors: int = 5, seed: int = 500) -> np.ndarray:
    """Multiply impute the NaN entries of a residue-by-nucleus shift matrix.

    Args:
        values: (n, p) float array of shifts (ppm), NaN where missing; rows are residues of the
            target RNA followed by the reference population.
        resnames: (n,) one-letter residue names (A/C/G/U), used as predictors.
        m: number of imputations.
        maxit: chained-equation sweeps per imputation (published: 100 'slow', 50 'fast').
        donors: candidate donors per missing value (mice default 5).
        seed: random seed; the result is a deterministic function of inputs and seed.

    Returns:
        (m, n, p) array of completed matrices (observed entries unchanged).

    Raises:
        ValueError: a column with no observed value, or shape mismatch.
    """
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    if len(resnames) != values.shape[0]:
        raise ValueError("resnames and values have different numbers of rows")
    empty = np.where(missing.all(axis=0))[0]
    if len(empty):
        raise ValueError(f"column {int(empty[0])} has no observed value to impute from")
    onehot = np.array([[r == c for c in RESIDUES] for r in resnames], dtype=np.float64)
    streams = np.random.SeedSequence(seed).spawn(m)
    return np.stack([
        _one_imputation(values, missing, onehot, maxit, donors, np.random.default_rng(s))
        for s in streams
    ])


def impute_with_reference(target: np.ndarray, target_resnames: np.ndarray,
                          reference: np.ndarray, reference_resnames: np.ndarray, m: int = 5,
                          maxit: int = 10, donors: int = 5, seed: int = 500,
                          combine: str = "median") -> np.ndarray:
    """Impute one RNA's missing shifts using a reference population (the training table).

    Args:
        target: (n, 19) shifts of the RNA, NaN where unmeasured.
        target_resnames: (n,) one-letter residue names.
        reference: (N, 19) complete shifts of the reference population (``ss_table_0``).
        reference_resnames: (N,) residue names of the reference rows.
        m, maxit, donors, seed: see :func:`mice_pmm`.
        combine: ``"median"`` (published) or ``"mean"`` over the m imputations, or
            ``"none"`` for all of them.

    Returns:
        (n, 19) completed shifts of the target (observed values untouched); (m, n, 19) with
        ``combine="none"`` (one copy of the target when nothing is missing).
    """
    if combine not in ("median", "mean", "none"):
        raise ValueError(f"combine must be 'median', 'mean' or 'none', not {combine!r}")
    target = np.asarray(target, float)
    if not np.isnan(target).any():
        return target[None].copy() if combine == "none" else target.copy()
    stacked = np.vstack([target, np.asarray(reference, float)])
    names = np.concatenate([np.asarray(target_resnames), np.asarray(reference_resnames)])
    imps = mice_pmm(stacked, names, m=m, maxit=maxit, donors=donors, seed=seed)[:, : len(target)]
    if combine == "median":
        return np.median(imps, axis=0)
    return imps.mean(axis=0) if combine == "mean" else imps
