"""``difftm train-denoiser``: train the coarse-pass denoiser on simulated micrographs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from difftm.cli.errors import user_errors
from difftm.cli.options import ThreadsOption
from difftm.cli.progress import progress_reporter

console = Console(stderr=True)


def _train(
    models: Annotated[list[Path], typer.Argument(
        help="Atomic models (PDB/mmCIF, .gz allowed) to simulate training micrographs from.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Weights file (.pt).")],
    background: Annotated[Path | None, typer.Option(
        help="A real micrograph (MRC) used as background texture in half of the training "
             "micrographs.")] = None,
    micrographs: Annotated[int, typer.Option(help="Training micrographs [24].")] = 24,
    steps: Annotated[int, typer.Option(help="Adam steps [800].")] = 800,
    seed: Annotated[int, typer.Option(help="Random seed [0].")] = 0,
    threads: ThreadsOption = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an existing weights file.")] = False,
) -> None:
    """Simulate micrographs from MODELS (pixel sizes 1-2 A, fluence 30-60 e/A^2, defocus
    0.6-1.6 um, Poisson counts) and train the small convolutional denoiser that
    `difftm search --strategy accelerated --denoise` can apply before its coarse pass."""
    from difftm.denoise.model import save_denoiser
    from difftm.denoise.train import TrainingSettings, train_denoiser, training_pairs
    from difftm.io.atomic import check_writable
    from difftm.threads import apply_threads

    if output.suffix != ".pt":
        raise ValueError(f"{output}: the weights file must end in .pt")
    for name, value, low, high in (("--micrographs", micrographs, 1, 10000),
                                   ("--steps", steps, 1, 10**6)):
        if not low <= value <= high:
            raise ValueError(f"{name}: {value} is outside [{low}, {high}]")
    check_writable(output, overwrite)
    for m in models:
        if not m.is_file():
            raise FileNotFoundError(f"{m}: file not found")
    apply_threads(threads)
    bg = None
    if background is not None:
        from difftm.io.mrc import read_mrc

        bg = read_mrc(background).data
    settings = TrainingSettings(micrographs=micrographs, steps=steps, seed=seed,
                                models=[str(m) for m in models])
    sim = progress_reporter(console, "simulate", micrographs, unit="micrographs/s")
    pairs = training_pairs(models, settings, bg, progress=lambda d, t: sim.update(d))
    sim.close()
    bar = progress_reporter(console, "train", steps, unit="steps/s")
    last = {"loss": float("nan")}

    def on_step(step: int, total: int, loss: float) -> None:
        last["loss"] = loss
        bar.update(step)

    model = train_denoiser(pairs, settings, progress=on_step)
    bar.close()
    info = {k: v for k, v in settings.__dict__.items()} | {
        "background": None if background is None else str(background.name),
        "final_loss": last["loss"]}
    save_denoiser(model, output, info)
    n = sum(p.numel() for p in model.parameters())
    console.print(f"trained on {micrographs} micrographs from {len(models)} models "
                  f"({n:,} parameters), final loss {last['loss']:.4f}: {output}",
                  highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Attach ``difftm train-denoiser`` to ``app``."""
    app.command("train-denoiser")(user_errors(_train))
