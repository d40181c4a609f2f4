"""A minimal numpy multilayer perceptron (the CS-Fold base-pairing network).

Architecture of the published networks: 71 inputs -> Dense 70 (relu) -> Dense 16 (relu)
-> Dropout 0.1 -> Dense 1 (sigmoid); weights constrained to max-norm 3 per unit; trained with
binary cross-entropy. Training here uses Adam on mini-batches, all in float64 and seeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

HIDDEN = (70, 16)


@dataclass
class MLP:
    """Weights of one network: ``kernels[k]`` (in, out) and ``biases[k]`` (out,)."""

    kernels: list[np.ndarray]
    biases: list[np.ndarray]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Sigmoid output P(class 1) for an (n, n_in) feature matrix; returns (n,)."""
        h = np.asarray(x, dtype=np.float64)
        for w, b in zip(self.kernels[:-1], self.biases[:-1], strict=True):
            h = np.maximum(h @ w + b, 0.0)
        z = h @ self.kernels[-1] + self.biases[-1]
        return _sigmoid(z[:, 0])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def init_mlp(n_in: int, rng: np.random.Generator, hidden: tuple[int, ...] = HIDDEN) -> MLP:
    """Random initial weights (normal sd 0.05 for hidden layers, Glorot-uniform output).

    Args:
        n_in: number of inputs.
        rng: random generator.
        hidden: hidden-layer widths.

    Returns:
        An :class:`MLP`.
    """
    sizes = (n_in, *hidden)
    kernels = [rng.normal(0.0, 0.05, (a, b)) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    lim = np.sqrt(6.0 / (hidden[-1] + 1))
    kernels.append(rng.uniform(-lim, lim, (hidden[-1], 1)))
    biases = [np.zeros(k.shape[1]) for k in kernels]
    return MLP(kernels, biases)


def train_mlp(x: np.ndarray, y: np.ndarray, seed: int, epochs: int = 60, batch_size: int = 32,
              learning_rate: float = 1e-3, dropout: float = 0.1, max_norm: float = 3.0) -> MLP:
    """Train one network with Adam on binary cross-entropy (see :func:`train_mlps`)."""
    return train_mlps(x, y, [seed], epochs, batch_size, learning_rate, dropout, max_norm)[0]


def train_mlps(x: np.ndarray, y: np.ndarray, seeds: list[int], epochs: int = 60,
               batch_size: int = 32, learning_rate: float = 1e-3, dropout: float = 0.1,
               max_norm: float = 3.0) -> list[MLP]:
    """Train independent networks, one per seed, with Adam on binary cross-entropy.

    The networks are trained side by side as stacked arrays (same result as training them
    one after the other: each has its own generator for initialisation, shuffling and
    dropout), which keeps the numpy overhead per step shared.

    Args:
        x: (n, n_in) scaled features.
        y: (n,) labels 0/1.
        seeds: one seed per network.
        epochs: passes over the data.
        batch_size: mini-batch size.
        learning_rate: Adam step size (betas 0.9/0.999, eps 1e-7 as Keras).
        dropout: dropout rate after the last hidden layer.
        max_norm: max-norm constraint on the incoming weights of each hidden unit.

    Returns:
        The trained networks, in seed order.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    rngs = [np.random.default_rng(s) for s in seeds]
    inits = [init_mlp(x.shape[1], r) for r in rngs]
    n_layers = len(inits[0].kernels)
    # stacked parameters: kernels (k, in, out), biases (k, 1, out)
    params = []
    for layer in range(n_layers):
        params.append(np.stack([m.kernels[layer] for m in inits]))
        params.append(np.stack([m.biases[layer] for m in inits])[:, None, :])
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-7
    step = 0
    n = len(y)
    for _ in range(epochs):
        perms = np.stack([r.permutation(n) for r in rngs])
        for start in range(0, n, batch_size):
            idx = perms[:, start : start + batch_size]
            masks = None
            if dropout > 0:
                width = params[-2].shape[1]
                masks = np.stack([(r.random((idx.shape[1], width)) >= dropout)
                                  for r in rngs]) / (1.0 - dropout)
            grads = _stacked_gradients(params, x[idx], y[idx], masks)
            step += 1
            lr = learning_rate * np.sqrt(1 - b2**step) / (1 - b1**step)
            for p, g, a, v in zip(params, grads, m1, m2, strict=True):
                a *= b1
                a += (1 - b1) * g
                v *= b2
                v += (1 - b2) * g * g
                p -= lr * a / (np.sqrt(v) + eps)
            for w in params[0:-2:2]:
                norms = np.sqrt((w * w).sum(axis=1, keepdims=True))
                w *= np.minimum(1.0, max_norm / np.maximum(norms, 1e-12))
    return [MLP([params[2 * L][k].copy() for L in range(n_layers)],
                [params[2 * L + 1][k, 0].copy() for L in range(n_layers)])
            for k in range(len(seeds))]


def _stacked_gradients(params: list[np.ndarray], x: np.ndarray, y: np.ndarray,
                       masks: np.ndarray | None) -> list[np.ndarray]:
    """Mean-BCE gradients of stacked networks; x (k, b, in), y (k, b), masks (k, b, h)."""
    kernels, biases = params[0::2], params[1::2]
    acts = [x]
    h = x
    for w, b in zip(kernels[:-1], biases[:-1], strict=True):
        h = np.maximum(h @ w + b, 0.0)
        acts.append(h)
    hd = h * masks if masks is not None else h
    p = _sigmoid((hd @ kernels[-1] + biases[-1])[..., 0])
    delta = ((p - y) / y.shape[1])[..., None]  # d(mean BCE)/dz, (k, b, 1)
    grads_w = [hd.transpose(0, 2, 1) @ delta]
    grads_b = [delta.sum(axis=1, keepdims=True)]
    delta = delta @ kernels[-1].transpose(0, 2, 1)
    if masks is not None:
        delta = delta * masks
    for k in range(len(kernels) - 2, -1, -1):
        delta = delta * (acts[k + 1] > 0)
        grads_w.insert(0, acts[k].transpose(0, 2, 1) @ delta)
        grads_b.insert(0, delta.sum(axis=1, keepdims=True))
        if k:
            delta = delta @ kernels[k].transpose(0, 2, 1)
    return [g for pair in zip(grads_w, grads_b, strict=True) for g in pair]


def _gradients(net: MLP, x: np.ndarray, y: np.ndarray, dropout: float,
               rng: np.random.Generator) -> list[np.ndarray]:
    """Gradients of one network (no dropout when ``dropout`` is 0); used by the tests."""
    params = [p[None] if p.ndim == 2 else p[None, None]
              for pair in zip(net.kernels, net.biases, strict=True) for p in pair]
    masks = None
    if dropout > 0:
        masks = (rng.random((1, len(y), net.kernels[-1].shape[0])) >= dropout) / (1 - dropout)
    grads = _stacked_gradients(params, x[None], y[None], masks)
    return [g[0] if i % 2 == 0 else g[0, 0] for i, g in enumerate(grads)]


def read_keras_h5(path: str | Path) -> MLP:
    """Read the Dense layers of a Keras 2 Sequential HDF5 model (no Keras needed).

    Args:
        path: ``.h5`` file saved by Keras ``save_model`` (needs the optional h5py package).

    Returns:
        An :class:`MLP` with the Dense kernels and biases in layer order (dropout layers have
        no weights and act as identity at prediction time).
    """
    import json

    import h5py

    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        layers = config["config"]
        layers = layers["layers"] if isinstance(layers, dict) else layers
        kernels, biases = [], []
        for layer in layers:
            if layer["class_name"] != "Dense":
                continue
            name = layer["config"]["name"]
            group = f["model_weights"][name][name]
            kernels.append(np.array(group["kernel:0"], dtype=np.float64))
            biases.append(np.array(group["bias:0"], dtype=np.float64))
    return MLP(kernels, biases)
