"""Training the denoiser on micrographs simulated from atomic models.

Pairs: the faithful simulator (:func:`difftm.simulate.micrograph.simulate_micrograph`:
exact atom projections with displaced solvent, per-particle CTF, Poisson counts, optionally a
real micrograph as background texture) gives each noisy micrograph and its expected counts
without noise or background; both are expressed in the noisy image's normalised units
(:func:`difftm.denoise.model.normalise`). Settings vary per micrograph (model, pixel size,
defocus, fluence, background) from a seeded generator, so training is reproducible. The loss
is the mean squared error on random patches; Adam with a cosine-decayed step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from difftm.denoise.model import Denoiser, normalise


@dataclass
class TrainingSettings:
    """What :func:`training_pairs` simulates and how :func:`train_denoiser` trains."""

    pixel_sizes: tuple[float, ...] = (1.0, 1.5, 2.0)
    fluences: tuple[float, ...] = (30.0, 60.0)
    defocus_range: tuple[float, float] = (6000.0, 16000.0)
    size: int = 256
    particles: int = 6
    micrographs: int = 24
    real_background_fraction: float = 0.5
    steps: int = 800
    batch: int = 8
    patch: int = 96
    learning_rate: float = 2e-3
    width: int = 24
    depth: int = 6
    seed: int = 0
    models: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=16)
def _template(model: str, pixel_size: float):
    from difftm.io.models import load_model
    from difftm.simulate.template import simulate_template, suggest_box

    atoms = load_model(Path(model))
    return atoms, simulate_template(Path(model), pixel_size=pixel_size,
                                    box=suggest_box(atoms, pixel_size))


def training_pairs(models: Sequence[Path], settings: TrainingSettings,
                   background: np.ndarray | None = None,
                   progress: Callable[[int, int], None] | None = None
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Simulated (noisy, clean) micrographs in normalised units, ``settings.micrographs``
    of them, cycling through ``models``."""
    from difftm.simulate.micrograph import simulate_micrograph

    if not models:
        raise ValueError("no atomic models to simulate training micrographs from")
    rng = np.random.default_rng(settings.seed)
    pairs = []
    for i in range(settings.micrographs):
        model = str(models[i % len(models)])
        px = float(rng.choice(settings.pixel_sizes))
        atoms, vol = _template(model, px)
        size = max(settings.size, 4 * int(vol.shape[0]))  # room for the particles
        use_bg = background is not None and rng.random() < settings.real_background_fraction
        sim = simulate_micrograph(
            vol, px, (size, size), settings.particles,
            float(rng.uniform(*settings.defocus_range)),
            fluence=float(rng.choice(settings.fluences)), defocus_spread=100.0,
            background=background if use_bg else None, seed=int(rng.integers(1 << 30)),
            atoms=atoms)
        noisy, _, sd = normalise(sim.image)
        clean = ((sim.noiseless - sim.noiseless.mean()) / sd).astype(np.float32)
        pairs.append((noisy, clean))
        if progress is not None:
            progress(i + 1, settings.micrographs)
    return pairs


def train_denoiser(pairs: Sequence[tuple[np.ndarray, np.ndarray]], settings: TrainingSettings,
                   progress: Callable[[int, int, float], None] | None = None) -> Denoiser:
    """Train a :class:`Denoiser` on random patches of ``pairs`` (deterministic per seed);
    ``progress(step, steps, loss)``."""
    gen = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    model = Denoiser(settings.width, settings.depth)
    opt = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.steps)
    p = settings.patch
    noisy = [torch.from_numpy(a) for a, _ in pairs]
    clean = [torch.from_numpy(b) for _, b in pairs]
    for step in range(settings.steps):
        xs, ys = [], []
        for _ in range(settings.batch):
            k = int(torch.randint(len(pairs), (1,), generator=gen))
            h, w = noisy[k].shape
            y0 = int(torch.randint(h - p + 1, (1,), generator=gen))
            x0 = int(torch.randint(w - p + 1, (1,), generator=gen))
            xs.append(noisy[k][y0:y0 + p, x0:x0 + p])
            ys.append(clean[k][y0:y0 + p, x0:x0 + p])
        x = torch.stack(xs)[:, None]
        y = torch.stack(ys)[:, None]
        loss = torch.mean((model(x) - y) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None:
            progress(step + 1, settings.steps, loss.item())
    model.eval()
    return model
