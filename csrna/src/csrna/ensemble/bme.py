"""Bayesian/maximum-entropy (BME) reweighting of a conformer ensemble.

Given ``n`` conformers with calculated observables ``F`` (shape ``(n, m)``), experimental
values ``F_exp`` (``m``) with uncertainties ``sigma`` (``m``) and prior weights ``w0``, the
posterior weights are ``w_j ∝ w0_j exp(-sum_i lambda_i F_ij)`` where ``lambda`` minimises the
dual (Bottaro, Bengtsen & Lindorff-Larsen 2020)::

    Gamma(lambda) = ln Z(lambda) + sum_i lambda_i F_exp_i + theta/2 sum_i lambda_i^2 sigma_i^2

with gradient ``dGamma/dlambda_i = F_exp_i - <F_i>_w + theta lambda_i sigma_i^2``.

As in the reference implementation every observable is standardised with the prior
weights before fitting: ``m_i = sum_j w0_j F_ij``, ``s_i`` the prior standard deviation,
``v_i = (s_i + sigma_i) / 2``; ``F``, ``F_exp`` and ``sigma`` are replaced by
``(F - m)/v``, ``(F_exp - m)/v`` and ``sigma / v``. ``chi^2`` is the mean over observables of
``((<F_i> - F_exp_i) / sigma_i)^2`` (unit-free, so identical in original and standardised
units). The effective fraction of the ensemble is ``phi = exp(-S_KL)`` with
``S_KL = sum_j w_j ln(w_j / w0_j)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

from csrna.threads import single_thread

#: Default log-spaced theta grid searched by ``theta="auto"`` (standardised units).
THETA_GRID: tuple[float, ...] = tuple(float(t) for t in np.logspace(-2, 4, 13))


@dataclass(frozen=True)
class Standardised:
    """Observables in standardised units.

    Attributes:
        calc: (n_conformers, n_obs) standardised calculated observables.
        exp: (n_obs,) standardised experimental values.
        sigma: (n_obs,) standardised uncertainties.
        mean: (n_obs,) prior mean m_i (original units).
        scale: (n_obs,) v_i = (s_i + sigma_i) / 2 (original units).
    """

    calc: np.ndarray
    exp: np.ndarray
    sigma: np.ndarray
    mean: np.ndarray
    scale: np.ndarray


@dataclass
class BMEResult:
    """Outcome of a BME fit.

    Attributes:
        weights: (n_conformers,) posterior weights (non-negative, sum 1).
        prior: (n_conformers,) prior weights.
        theta: regularisation strength used.
        lambdas: (n_obs,) Lagrange multipliers (standardised units).
        chi2_before: chi^2 with the prior weights.
        chi2_after: chi^2 with the posterior weights.
        phi: effective fraction exp(-S_KL).
        converged: whether L-BFGS reported success.
        cv_scores: {theta: mean held-out chi^2} when theta was chosen by cross-validation.
    """

    weights: np.ndarray
    prior: np.ndarray
    theta: float
    lambdas: np.ndarray
    chi2_before: float
    chi2_after: float
    phi: float
    converged: bool
    cv_scores: dict[float, float] = field(default_factory=dict)


def _check_inputs(
    calc: np.ndarray, exp: np.ndarray, sigma: np.ndarray, prior: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    calc = np.asarray(calc, dtype=np.float64)
    exp = np.asarray(exp, dtype=np.float64).ravel()
    sigma = np.asarray(sigma, dtype=np.float64).ravel()
    if calc.ndim != 2:
        raise ValueError(
            f"calculated observables must be 2-D (conformers, observables), got {calc.shape}"
        )
    n, m = calc.shape
    if n < 1 or m < 1:
        raise ValueError("need at least one conformer and one observable")
    if exp.shape != (m,) or sigma.shape != (m,):
        raise ValueError(
            f"{m} calculated observables per conformer but {exp.size} experimental values "
            f"and {sigma.size} uncertainties"
        )
    if not (np.all(np.isfinite(calc)) and np.all(np.isfinite(exp)) and np.all(np.isfinite(sigma))):
        raise ValueError("observables, experimental values and uncertainties must be finite")
    if np.any(sigma <= 0):
        raise ValueError("experimental uncertainties must be positive")
    if prior is None:
        w0 = np.full(n, 1.0 / n)
    else:
        w0 = np.asarray(prior, dtype=np.float64).ravel()
        if w0.shape != (n,) or np.any(w0 < 0) or not np.isfinite(w0).all() or w0.sum() <= 0:
            raise ValueError("prior weights must be n_conformers non-negative finite numbers")
        w0 = w0 / w0.sum()
    return calc, exp, sigma, w0


def standardise(
    calc: np.ndarray, exp: np.ndarray, sigma: np.ndarray, prior: np.ndarray | None = None
) -> Standardised:
    """Standardise observables with the prior weights (reference BME convention).

    Args:
        calc: (n_conformers, n_obs) calculated observables (e.g. shifts in ppm).
        exp: (n_obs,) experimental values, same units.
        sigma: (n_obs,) experimental uncertainties (> 0), same units.
        prior: (n_conformers,) prior weights; uniform when None.

    Returns:
        :class:`Standardised` with ``(F - m)/v``, ``(F_exp - m)/v``, ``sigma/v``, ``m`` and ``v``.
    """
    calc, exp, sigma, w0 = _check_inputs(calc, exp, sigma, prior)
    mean = w0 @ calc
    sd = np.sqrt(w0 @ (calc - mean) ** 2)
    scale = 0.5 * (sd + sigma)
    return Standardised(
        calc=(calc - mean) / scale,
        exp=(exp - mean) / scale,
        sigma=sigma / scale,
        mean=mean,
        scale=scale,
    )


def weights_from_lambdas(calc: np.ndarray, lambdas: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Posterior weights ``w_j ∝ w0_j exp(-sum_i lambda_i F_ij)`` (stable log-sum-exp).

    Args:
        calc: (n_conformers, n_obs) observables.
        lambdas: (n_obs,) multipliers.
        prior: (n_conformers,) prior weights (sum 1).

    Returns:
        (n_conformers,) weights summing to 1.
    """
    with np.errstate(divide="ignore"):
        logw = np.log(prior) - calc @ lambdas
    return np.exp(logw - logsumexp(logw))


def dual(
    lambdas: np.ndarray,
    calc: np.ndarray,
    exp: np.ndarray,
    sigma: np.ndarray,
    prior: np.ndarray,
    theta: float,
) -> tuple[float, np.ndarray]:
    """The BME dual ``Gamma(lambda)`` and its analytic gradient.

    Args:
        lambdas: (n_obs,) multipliers.
        calc: (n_conformers, n_obs) observables.
        exp: (n_obs,) experimental values.
        sigma: (n_obs,) uncertainties.
        prior: (n_conformers,) prior weights (sum 1).
        theta: regularisation strength (> 0).

    Returns:
        (value, gradient) with gradient shape (n_obs,).
    """
    with np.errstate(divide="ignore"):
        logw = np.log(prior) - calc @ lambdas
    log_z = logsumexp(logw)
    w = np.exp(logw - log_z)
    value = log_z + lambdas @ exp + 0.5 * theta * np.sum(lambdas**2 * sigma**2)
    grad = exp - w @ calc + theta * lambdas * sigma**2
    return float(value), grad


def chi2(calc: np.ndarray, exp: np.ndarray, sigma: np.ndarray, weights: np.ndarray) -> float:
    """Mean over observables of ``((<F_i>_w - F_exp_i) / sigma_i)^2``."""
    avg = np.asarray(weights, dtype=np.float64) @ np.asarray(calc, dtype=np.float64)
    return float(np.mean(((avg - exp) / sigma) ** 2))


def kl_divergence(weights: np.ndarray, prior: np.ndarray) -> float:
    """Relative entropy ``S_KL = sum_j w_j ln(w_j / w0_j)`` (0 ln 0 = 0)."""
    w = np.asarray(weights, dtype=np.float64)
    w0 = np.asarray(prior, dtype=np.float64)
    mask = w > 0
    return float(np.sum(w[mask] * np.log(w[mask] / w0[mask])))


def _solve(std_calc: np.ndarray, std_exp: np.ndarray, std_sigma: np.ndarray, w0: np.ndarray,
           theta: float, x0: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    with single_thread():
        res = minimize(
            dual,
            np.zeros(std_exp.size) if x0 is None else x0,
            args=(std_calc, std_exp, std_sigma, w0, theta),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 5000, "maxfun": 20000, "gtol": 1e-10, "ftol": 1e-14},
        )
    return np.asarray(res.x, dtype=np.float64), bool(res.success)


def fit(
    calc: np.ndarray,
    exp: np.ndarray,
    sigma: np.ndarray,
    theta: float | str = "auto",
    prior: np.ndarray | None = None,
    n_folds: int = 5,
    theta_grid: tuple[float, ...] = THETA_GRID,
    seed: int = 0,
) -> BMEResult:
    """Reweight an ensemble by Bayesian/maximum entropy.

    Args:
        calc: (n_conformers, n_obs) calculated observables (original units).
        exp: (n_obs,) experimental values.
        sigma: (n_obs,) experimental uncertainties (> 0).
        theta: regularisation strength in standardised units (> 0; large = trust the
            prior), or ``"auto"`` to pick it from ``theta_grid`` by ``n_folds``-fold
            cross-validation over observables (minimum mean held-out chi^2).
        prior: (n_conformers,) prior weights; uniform when None.
        n_folds: folds for ``theta="auto"`` (capped at the number of observables).
        theta_grid: candidate thetas for ``theta="auto"``.
        seed: seed of the fold assignment (deterministic).

    Returns:
        :class:`BMEResult`.
    """
    calc, exp, sigma, w0 = _check_inputs(calc, exp, sigma, prior)
    std = standardise(calc, exp, sigma, w0)
    cv_scores: dict[float, float] = {}
    if isinstance(theta, str):
        if theta != "auto":
            raise ValueError(f"theta must be a positive number or 'auto', got {theta!r}")
        cv_scores = cross_validate_theta(calc, exp, sigma, w0, n_folds, theta_grid, seed)
        theta_value = min(cv_scores, key=lambda t: (cv_scores[t], -t))
    else:
        theta_value = float(theta)
        if not np.isfinite(theta_value) or theta_value <= 0:
            raise ValueError(f"theta must be positive, got {theta}")
    lambdas, ok = _solve(std.calc, std.exp, std.sigma, w0, theta_value)
    w = weights_from_lambdas(std.calc, lambdas, w0)
    return BMEResult(
        weights=w,
        prior=w0,
        theta=theta_value,
        lambdas=lambdas,
        chi2_before=chi2(calc, exp, sigma, w0),
        chi2_after=chi2(calc, exp, sigma, w),
        phi=float(np.exp(-kl_divergence(w, w0))),
        converged=ok,
        cv_scores=cv_scores,
    )


def cross_validate_theta(
    calc: np.ndarray,
    exp: np.ndarray,
    sigma: np.ndarray,
    prior: np.ndarray | None = None,
    n_folds: int = 5,
    theta_grid: tuple[float, ...] = THETA_GRID,
    seed: int = 0,
) -> dict[float, float]:
    """Mean held-out chi^2 for each theta (k-fold over observables).

    Observables are assigned to ``n_folds`` folds by a seeded permutation; for each fold
    the weights are fitted on the other observables (each training set standardised on
    its own) and chi^2 is evaluated on the held-out ones. Within a fold the thetas are
    solved from the largest to the smallest, each warm-started from the previous solution.

    Returns:
        {theta: mean held-out chi^2 over folds}.
    """
    calc, exp, sigma, w0 = _check_inputs(calc, exp, sigma, prior)
    m = exp.size
    k = max(2, min(int(n_folds), m))
    if m < 2:
        raise ValueError("theta='auto' needs at least two observables")
    folds = np.random.default_rng(seed).permutation(m) % k
    held: dict[float, list[float]] = {float(t): [] for t in theta_grid}
    for f in range(k):
        test = folds == f
        train = ~test
        std = standardise(calc[:, train], exp[train], sigma[train], w0)
        lam = None
        # warm start: from the strongest regularisation (lambda ~ 0) towards the weakest
        for t in sorted(held, reverse=True):
            lam, _ = _solve(std.calc, std.exp, std.sigma, w0, t, x0=lam)
            w = weights_from_lambdas(std.calc, lam, w0)
            held[t].append(chi2(calc[:, test], exp[test], sigma[test], w))
    scores = {t: float(np.mean(v)) for t, v in held.items()}
    return scores
