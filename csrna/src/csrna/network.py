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
    """Train one network with Adam on binary cross-entropy.

    Args:
        x: (n, n_in) scaled features.
        y: (n,) labels 0/1.
        seed: seed of initialisation, shuffling and dropout.
        epochs: passes over the data.
        batch_size: mini-batch size.
        learning_rate: Adam step size (betas 0.9/0.999, eps 1e-7 as Keras).
        dropout: dropout rate after the last hidden layer.
        max_norm: max-norm constraint on the incoming weights of each hidden unit.

    Returns:
        The trained :class:`MLP`.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    net = init_mlp(x.shape[1], rng)
    params = [p for pair in zip(net.kernels, net.biases, strict=True) for p in pair]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-7
    step = 0
    n = len(y)
    for _ in range(epochs):
        perm = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            grads = _gradients(net, x[idx], y[idx], dropout, rng)
            step += 1
            lr = learning_rate * np.sqrt(1 - b2**step) / (1 - b1**step)
            for p, g, a, v in zip(params, grads, m1, m2, strict=True):
                a *= b1
                a += (1 - b1) * g
                v *= b2
                v += (1 - b2) * g * g
                p -= lr * a / (np.sqrt(v) + eps)
            for w in net.kernels[:-1]:
                norms = np.sqrt((w * w).sum(axis=0))
                w *= np.minimum(1.0, max_norm / np.maximum(norms, 1e-12))
    return net


def _gradients(net: MLP, x: np.ndarray, y: np.ndarray, dropout: float,
               rng: np.random.Generator) -> list[np.ndarray]:
    acts = [x]
    h = x
    for w, b in zip(net.kernels[:-1], net.biases[:-1], strict=True):
        h = np.maximum(h @ w + b, 0.0)
        acts.append(h)
    mask = (rng.random(h.shape) >= dropout) / (1.0 - dropout) if dropout > 0 else 1.0
    hd = h * mask
    p = _sigmoid((hd @ net.kernels[-1] + net.biases[-1])[:, 0])
    delta = ((p - y) / len(y))[:, None]  # d(mean BCE)/dz
    grads_w = [hd.T @ delta]
    grads_b = [delta.sum(axis=0)]
    delta = (delta @ net.kernels[-1].T) * mask
    for k in range(len(net.kernels) - 2, -1, -1):
        delta = delta * (acts[k + 1] > 0)
        grads_w.insert(0, acts[k].T @ delta)
        grads_b.insert(0, delta.sum(axis=0))
        if k:
            delta = delta @ net.kernels[k].T
    return [g for pair in zip(grads_w, grads_b, strict=True) for g in pair]


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
