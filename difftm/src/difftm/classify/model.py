"""The likelihood of a target's SNR vector under K templates, and EM over class weights.

Derivation (docs/CLASSIFY.md). Target ``j`` is scored under templates ``t_1..t_K`` (each
refined locally, unit norm over the micrograph's grid, so noise gives unit variance):
``s_jk = <t_k, i>``. If the target is of class ``c`` its signal in the whitened image is
``alpha_j * t_c`` plus whatever no template explains (``alpha_j >= 0``: the target's own
scale, for ice thickness, defocus, damage and the mass of state ``c``). With the Gram matrix
``G_j[k, l] = <t_k, t_l>`` of the templates at the target's refined poses:

    E[s_j | c] = alpha_j * mu_jc,   mu_jc = G_j[:, c]   (expected relative SNRs)
    Cov[s_j]   = sigma^2 * G_j                          (white noise seen by K templates)

``sigma = 1`` is the search's unit-variance noise; ``sigma`` may also be fitted (the noise
seen in the direction between templates, which local refinement and model error inflate).
With a flat prior on ``alpha_j >= 0``, integrating it out in closed form gives

    log p(s_j | c) = -1/2 s^T S^-1 s - 1/2 log det(2 pi S)
                     + 1/2 log(2 pi / b) + a^2 / (2 b) + log Phi(a / sqrt b),
    a = mu_c^T S^-1 s,  b = mu_c^T S^-1 mu_c,  S = sigma^2 G_j.

Because ``G^-1 mu_c = e_c``, ``a = s_c / sigma^2`` and ``b = G_cc / sigma^2 = 1 / sigma^2``:
the Gram matrix drops out of the comparison between classes (the noise correlation between
templates is exactly what their expected SNRs share), and only ``s_c`` and ``sigma`` decide;
the Gram matrix still sets each target's residual (goodness of fit). The class weights
``pi`` are fitted by EM (E: posteriors ``w_jc ~ pi_c p(s_j | c)``; M: ``pi_c = mean_j w_jc``),
``sigma`` (when fitted) by maximising the marginal likelihood over a bounded interval with EM
inside. Population intervals: observed Fisher information of ``pi`` and a seeded bootstrap
over targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_ndtr, logsumexp

#: Largest off-diagonal template correlation accepted: above it two templates cannot be told
#: apart at any SNR and the Gram matrix is numerically singular.
MAX_CORRELATION = 0.999


def check_inputs(snr: np.ndarray, gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``snr`` (N, K) and ``gram`` (N, K, K) and return them as float64.

    Raises:
        ValueError: shapes disagree, non-finite values, K < 2, or two templates whose
            normalised correlation exceeds :data:`MAX_CORRELATION` for some target.
    """
    s = np.asarray(snr, dtype=np.float64)
    g = np.asarray(gram, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] < 2:
        raise ValueError(f"SNR table must be (targets, K >= 2 templates), got {s.shape}")
    if g.shape != (s.shape[0], s.shape[1], s.shape[1]):
        raise ValueError(f"Gram matrices must be {(s.shape[0], s.shape[1], s.shape[1])}, "
                         f"got {g.shape}")
    if not (np.isfinite(s).all() and np.isfinite(g).all()):
        raise ValueError("SNR or template correlations have NaN or infinite values")
    d = np.sqrt(np.clip(np.einsum("nkk->nk", g), 1e-30, None))
    corr = g / d[:, :, None] / d[:, None, :]
    off = corr - np.eye(s.shape[1])[None]
    worst = float(np.abs(off).max()) if s.shape[0] else 0.0
    if worst > MAX_CORRELATION:
        raise ValueError(f"two templates correlate at {worst:.4f} (> {MAX_CORRELATION}) at a "
                         "refined pose: they cannot be told apart")
    return s, g


def class_log_likelihoods(snr: np.ndarray, gram: np.ndarray,
                          sigma: float = 1.0) -> np.ndarray:
    """``log p(s_j | c)`` (N, K) of the model in the module docstring.

    Args:
        snr: (N, K) SNRs of every target under every template (search units).
        gram: (N, K, K) template correlations at the targets' refined poses.
        sigma: noise standard deviation in SNR units (1: the search's noise).

    Returns:
        (N, K) log-likelihoods (the scale ``alpha_j`` integrated out with a flat prior on
        ``alpha_j >= 0``).
    """
    s, g = check_inputs(snr, gram)
    n, k = s.shape
    cov = (sigma**2) * g
    chol = np.linalg.cholesky(cov)
    # S^-1 s and S^-1 mu_c (mu_c = G[:, c], the columns of G) by triangular solves
    z = np.linalg.solve(cov, s[:, :, None])[:, :, 0]  # (N, K)
    quad = np.einsum("nk,nk->n", s, z)
    logdet = 2.0 * np.log(np.abs(np.einsum("nkk->nk", chol))).sum(1)
    a = np.einsum("nkc,nk->nc", g, z)  # mu_c^T S^-1 s
    sinv_mu = np.linalg.solve(cov, g)  # (N, K, K): column c = S^-1 mu_c
    b = np.einsum("nkc,nkc->nc", g, sinv_mu)
    b = np.clip(b, 1e-30, None)
    marg = 0.5 * np.log(2 * math.pi / b) + a * a / (2 * b) + log_ndtr(a / np.sqrt(b))
    base = -0.5 * quad - 0.5 * (logdet + k * math.log(2 * math.pi))
    return base[:, None] + marg


def residual_chi2(snr: np.ndarray, gram: np.ndarray, classes: np.ndarray,
                  sigma: float = 1.0) -> np.ndarray:
    """Goodness of fit of each target to its class: ``(s^T G^-1 s - s_c^2 / G_cc) / sigma^2``,
    chi-square with K - 1 degrees of freedom when the target is of class ``c`` (large:
    a state none of the templates describes, or a false detection)."""
    s, g = check_inputs(snr, gram)
    z = np.linalg.solve(g, s[:, :, None])[:, :, 0]
    quad = np.einsum("nk,nk->n", s, z)
    idx = np.arange(len(s))
    c = np.asarray(classes, dtype=int)
    return (quad - s[idx, c] ** 2 / g[idx, c, c]) / sigma**2


def em_weights(loglik: np.ndarray, weights: np.ndarray | None = None, tol: float = 1e-10,
               max_iter: int = 10000) -> tuple[np.ndarray, np.ndarray, float, int]:
    """EM for the class weights of a mixture with fixed per-class likelihoods.

    Args:
        loglik: (N, K) ``log p(s_j | c)``.
        weights: starting weights (default uniform).
        tol: stop when no weight moves by more than this.
        max_iter: iteration limit.

    Returns:
        ``(weights (K,), posteriors (N, K), total log-likelihood, iterations)``.
    """
    n, k = loglik.shape
    pi = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=np.float64)
    it = 0
    while it < max_iter:
        it += 1
        logpost = loglik + np.log(np.clip(pi, 1e-300, None))[None]
        norm = logsumexp(logpost, axis=1, keepdims=True)
        post = np.exp(logpost - norm)
        new = post.mean(0)
        done = float(np.abs(new - pi).max()) < tol
        pi = new
        if done:
            break
    logpost = loglik + np.log(np.clip(pi, 1e-300, None))[None]
    norm = logsumexp(logpost, axis=1, keepdims=True)
    return pi, np.exp(logpost - norm), float(norm.sum()), it


def fisher_standard_errors(loglik: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Standard errors of the class weights from the observed Fisher information.

    The free parameters are ``pi_1..pi_{K-1}`` (``pi_K = 1 - sum``); the score of target
    ``j`` is ``(p_jk - p_jK) / sum_c pi_c p_jc``. Weights at the boundary (0 or 1) make the
    information singular; their errors are then from the pseudo-inverse.
    """
    lik = np.exp(loglik - loglik.max(1, keepdims=True))
    denom = lik @ weights
    grads = (lik[:, :-1] - lik[:, -1:]) / denom[:, None]
    info = grads.T @ grads
    cov = np.linalg.pinv(info)
    k = len(weights)
    full = np.zeros((k, k))
    full[:-1, :-1] = cov
    full[-1, :-1] = full[:-1, -1] = -cov.sum(1)
    full[-1, -1] = cov.sum()
    return np.sqrt(np.clip(np.diag(full), 0.0, None))


@dataclass
class MixtureFit:
    """Result of :func:`fit_mixture`.

    Attributes:
        weights: (K,) class populations.
        posteriors: (N, K) per-target class posteriors.
        classes: (N,) MAP class, 0-based.
        loglik: (N, K) ``log p(s_j | c)`` at the fitted ``sigma``.
        log_likelihood: total log marginal likelihood.
        sigma: noise standard deviation used (1 or fitted).
        weights_se: (K,) standard errors from the observed Fisher information.
        weights_interval: (K, 2) bootstrap percentile interval (``level``), or NaN when no
            bootstrap ran.
        chi2: (N,) residual chi-square of each target under its MAP class.
        iterations: EM iterations of the final fit.
    """

    weights: np.ndarray
    posteriors: np.ndarray
    classes: np.ndarray
    loglik: np.ndarray
    log_likelihood: float
    sigma: float
    weights_se: np.ndarray
    weights_interval: np.ndarray
    chi2: np.ndarray
    iterations: int
    level: float = 0.95
    bootstrap: int = 0
    notes: list[str] = field(default_factory=list)


#: Bounds of a fitted noise sigma (SNR units).
SIGMA_BOUNDS = (0.5, 4.0)


def fit_mixture(snr: np.ndarray, gram: np.ndarray, noise: str = "unit",
                bootstrap: int = 200, level: float = 0.95, seed: int = 0) -> MixtureFit:
    """Fit class weights (and optionally the noise level) and give per-target posteriors.

    Args:
        snr: (N, K) SNRs of each target under each template.
        gram: (N, K, K) template correlations at each target's refined poses.
        noise: ``unit`` (sigma = 1, the search's noise) or ``fitted`` (sigma maximising the
            marginal likelihood in :data:`SIGMA_BOUNDS`).
        bootstrap: bootstrap resamples of the targets for the population interval (0: none).
        level: coverage of the bootstrap interval.
        seed: bootstrap seed (results are deterministic for a seed).

    Returns:
        :class:`MixtureFit`.
    """
    s, g = check_inputs(snr, gram)
    if noise not in ("unit", "fitted"):
        raise ValueError(f"noise model must be 'unit' or 'fitted', got {noise!r}")
    if len(s) == 0:
        raise ValueError("no targets to classify")
    if not (0 < level < 1):
        raise ValueError(f"interval level must be in (0, 1), got {level}")

    def fit_at(sigma: float, rows=None):
        ll = class_log_likelihoods(s if rows is None else s[rows],
                                   g if rows is None else g[rows], sigma)
        return (ll,) + em_weights(ll)

    sigma = 1.0
    if noise == "fitted":
        res = minimize_scalar(lambda ls: -fit_at(math.exp(ls))[3],
                              bounds=tuple(math.log(b) for b in SIGMA_BOUNDS),
                              method="bounded", options={"xatol": 1e-4})
        sigma = float(math.exp(res.x))
    ll, pi, post, total, iters = fit_at(sigma)
    se = fisher_standard_errors(ll, pi)
    interval = np.full((len(pi), 2), np.nan)
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        draws = np.empty((bootstrap, len(pi)))
        for b in range(bootstrap):
            rows = rng.integers(0, len(s), len(s))
            draws[b] = em_weights(ll[rows], pi)[0]
        q = (1 - level) / 2
        interval = np.quantile(draws, [q, 1 - q], axis=0).T
    classes = post.argmax(1)
    chi2 = residual_chi2(s, g, classes, sigma)
    return MixtureFit(pi, post, classes, ll, total, sigma, se, interval, chi2, iters, level,
                      int(bootstrap))


def naive_classes(snr: np.ndarray) -> np.ndarray:
    """The naive rule "highest SNR wins": the 0-based template of the largest SNR."""
    return np.asarray(snr, dtype=np.float64).argmax(1)
