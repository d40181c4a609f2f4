"""The denoiser network: a residual stack of 3x3 convolutions (DnCNN-style), tiled inference.

Input: a micrograph normalised to zero mean and unit variance. Output: the estimated
noise-free contrast in the same units (the expected counts minus their mean, divided by the
micrograph's standard deviation), i.e. ``E[clean | noisy]`` learnt from simulated pairs.
The network predicts the noise and subtracts it (residual learning); it is fully
convolutional, so any image size works, and tiles with a margin of the receptive field give
the same result as one pass over the whole image.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import nn


class Denoiser(nn.Module):
    """``depth`` 3x3 convolutions of ``width`` channels with ReLU; output = input - noise."""

    def __init__(self, width: int = 32, depth: int = 7) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.width, self.depth = width, depth

    @property
    def receptive_radius(self) -> int:
        """Pixels of context each output pixel sees on each side."""
        return self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) normalised micrographs -> (B, 1, H, W) clean estimates."""
        return x - self.body(x)


def save_denoiser(model: Denoiser, path: Path, info: dict) -> None:
    """Write weights and architecture (and ``info``: training settings) atomically."""
    from difftm.io.atomic import atomic_output

    buf = io.BytesIO()
    torch.save({"width": model.width, "depth": model.depth, "info": info,
                "state": {k: v.cpu() for k, v in model.state_dict().items()}}, buf)
    with atomic_output(Path(path), overwrite=True) as tmp:
        tmp.write_bytes(buf.getvalue())


def load_denoiser(path: Path) -> tuple[Denoiser, dict]:
    """The network stored at ``path`` (:func:`save_denoiser`) and its info.

    Raises:
        FileNotFoundError: no weights file.
        ValueError: the file is not a difftm denoiser.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no denoiser weights here")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        model = Denoiser(int(data["width"]), int(data["depth"]))
        model.load_state_dict(data["state"])
    except Exception as err:  # any corruption: one line naming the file
        raise ValueError(f"{path}: not a difftm denoiser weights file ({err.__class__.__name__})"
                         ) from err
    model.eval()
    return model, dict(data.get("info", {}))


def normalise(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(image - mean) / sd`` as float32, with the mean and sd."""
    img = np.asarray(image, dtype=np.float64)
    mean, sd = float(img.mean()), float(img.std())
    return ((img - mean) / max(sd, 1e-30)).astype(np.float32), mean, sd


def denoise(image: np.ndarray, model: Denoiser, tile: int = 512) -> np.ndarray:
    """The clean-contrast estimate of a micrograph (normalised units, float32), computed in
    overlapping tiles (identical to one pass: the margin covers the receptive field)."""
    x, _, _ = normalise(image)
    h, w = x.shape
    m = model.receptive_radius + 1
    out = np.empty_like(x)
    with torch.inference_mode():
        for y0 in range(0, h, tile):
            for x0 in range(0, w, tile):
                y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
                ya, xa = max(0, y0 - m), max(0, x0 - m)
                yb, xb = min(h, y1 + m), min(w, x1 + m)
                patch = torch.from_numpy(np.ascontiguousarray(x[ya:yb, xa:xb]))[None, None]
                res = model(patch)[0, 0].numpy()
                out[y0:y1, x0:x1] = res[y0 - ya:y1 - ya, x0 - xa:x1 - xa]
    return out
