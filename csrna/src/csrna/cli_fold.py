"""``csrna fold``: CS-Fold from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from csrna.cli_errors import user_errors
from csrna.csfold import MODES, CSFoldResult, cs_fold
from csrna.fold_figure import plot_fold
from csrna.io import (
    clean_sequence,
    dot_bracket,
    read_fasta,
    read_shifts,
    write_ct,
    write_dot_bracket,
)

FASTA_SUFFIXES = (".fasta", ".fa", ".fna", ".fas")

_err = Console(stderr=True)


def resolve_sequence(value: str) -> str:
    """A sequence given on the command line: a FASTA file (first record) or the letters.

    Args:
        value: path to a FASTA file, or the sequence itself.

    Returns:
        The sequence over ACGU.
    """
    path = Path(value)
    if path.is_file():
        return read_fasta(path)[0][1]
    if any(c in value for c in "/\\") or path.suffix.lower() in FASTA_SUFFIXES:
        raise FileNotFoundError(f"{value}: FASTA file not found")
    return clean_sequence(value, "--sequence")


def output_paths(ct_path: Path) -> dict[str, Path]:
    """Files written for one RNA: CT, dot-bracket, probabilities, candidates, figure."""
    stem = ct_path.with_suffix("")
    return {"ct": ct_path, "dbn": stem.with_suffix(".dbn"),
            "probabilities": Path(f"{stem}_probabilities.tsv"),
            "candidates": Path(f"{stem}_candidates.tsv"), "figure": stem.with_suffix(".png")}


def write_result(result: CSFoldResult, ct_path: Path, title: str) -> None:
    """Write the CT, dot-bracket, probability and candidate tables and the figure."""
    paths = output_paths(ct_path)
    ct_path.parent.mkdir(parents=True, exist_ok=True)
    label = f"{title} CS-Fold {result.selected.name} dG={result.energy:.2f}"
    write_ct(paths["ct"], result.sequence, result.pairs, label)
    write_dot_bracket(paths["dbn"], result.sequence, result.pairs, label)
    result.probabilities.to_csv(paths["probabilities"], sep="\t", index=False,
                                float_format="%.4f", na_rep="NA")
    result.candidates.to_csv(paths["candidates"], sep="\t", index=False, float_format="%.4f")
    plot_fold(paths["figure"], result.sequence, result.pairs,
              result.probabilities["p_unpaired"].to_numpy(dtype=float), label)


def batch_inputs(folder: Path, sequence: str | None) -> list[tuple[Path, str]]:
    """Pair each shift file of a folder with its sequence.

    A shift file ``X.*`` takes its sequence from ``X.fasta`` (or .fa/.fna/.fas) in the same
    folder, else from the record named ``X`` in the ``--sequence`` FASTA.

    Args:
        folder: folder of shift files and FASTA files.
        sequence: optional ``--sequence`` value (a multi-record FASTA in batch mode).

    Returns:
        List of (shift file, sequence).
    """
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    shift_files = [p for p in files if p.suffix.lower() not in FASTA_SUFFIXES]
    if not shift_files:
        raise ValueError(f"{folder}: no shift files in folder")
    records = dict(read_fasta(sequence)) if sequence and Path(sequence).is_file() else {}
    out = []
    for p in shift_files:
        fasta = next((p.with_suffix(s) for s in FASTA_SUFFIXES if p.with_suffix(s).is_file()),
                     None)
        if fasta is not None:
            out.append((p, read_fasta(fasta)[0][1]))
        elif p.stem in records:
            out.append((p, records[p.stem]))
        else:
            raise ValueError(f"{p}: no matching FASTA ({p.stem}.fasta) and no record "
                             f"'{p.stem}' in --sequence")
    return out


@user_errors
def fold(
    shifts: Annotated[Path, typer.Argument(
        help="Chemical-shift file (columns 'resname resid nucleus shift error', or BMRB "
             "NMR-STAR), or a folder of shift files each with a FASTA file of the same name.")],
    sequence: Annotated[str | None, typer.Option(
        "--sequence", "-s",
        help="RNA sequence, or a FASTA file (required for a single shift file).")] = None,
    output: Annotated[Path, typer.Option(
        "--output", "-o",
        help="Output CT file (a .dbn dot-bracket file, _probabilities.tsv / _candidates.tsv "
             "tables and a .png figure are written beside it); a folder in batch mode.")] = Path(
        "csfold.ct"),
    mode: Annotated[str, typer.Option(
        help=f"Selection mode: {' | '.join(MODES)}. conservative (default) = the CS-Fold "
             "paper's method, then helix-end pairs whose nucleotides are both called unpaired "
             "(one P > 0.99, the other P > 0.5) are dropped: the mode whose PPV gain over "
             "plain ViennaRNA held out of sample (docs/CSFOLD.md); published = the paper's "
             "method unchanged; tuned = drop such pairs when the other P > 0.1.")
    ] = "conservative",
    seed: Annotated[int, typer.Option(help="Seed of the shift imputation.")] = 500,
    maxit: Annotated[int, typer.Option(
        help="Imputation sweeps (published 100; 10 is within the imputation noise).")] = 10,
) -> None:
    """Fold an RNA with its NMR chemical shifts (CS-Fold); see ``FOLD_HELP``."""
    if mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    if shifts.is_dir():
        jobs = batch_inputs(shifts, sequence)
        progress = Progress(TextColumn("[bold]CS-Fold[/bold] {task.description}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), console=_err)
        with progress:
            task = progress.add_task("", total=len(jobs))
            for path, seq in jobs:
                progress.update(task, description=path.name)
                result = cs_fold(seq, read_shifts(path), mode=mode, seed=seed, maxit=maxit,
                                 source=str(path))
                write_result(result, output / f"{path.stem}.ct", path.stem)
                progress.advance(task)
        typer.echo(f"wrote {len(jobs)} structures to {output}")
        return
    if sequence is None:
        raise ValueError(f"{shifts}: --sequence is required for a single shift file")
    seq = resolve_sequence(sequence)
    result = cs_fold(seq, read_shifts(shifts), mode=mode, seed=seed, maxit=maxit,
                     source=str(shifts))
    write_result(result, output, shifts.stem)
    typer.echo(f"{result.sequence}\n{_db(result)}  ({result.selected.name}, "
               f"{result.energy:.2f} kcal/mol)\nwrote {output}")


def _db(result: CSFoldResult) -> str:
    return dot_bracket(result.pairs, len(result.sequence))


FOLD_HELP = (
    "Fold an RNA with its NMR chemical shifts (CS-Fold).\n\n"
    "Missing shifts are imputed from the training population, an ensemble of six small "
    "networks predicts for each residue the probability of being unpaired, that probability "
    "restrains ViennaRNA folding as a SHAPE-like pseudo-energy (MFE, MEA and ProbKnot "
    "candidates, each with and without restraints) and the candidate most consistent with "
    "the predictions is written as a CT file. By default (--mode conservative) helix-end "
    "pairs whose two nucleotides are both confidently called unpaired are then removed; "
    "--mode published runs the paper's method unchanged.\n\n"
    "Example: csrna fold shifts.dat --sequence rna.fasta --output rna.ct"
)


def _root() -> None:
    """csrna: RNA structure from NMR chemical shifts."""


def register(app: typer.Typer) -> None:
    """Add the ``fold`` command to the ``csrna`` application.

    If the application has no callback yet, a no-op one is added so that ``csrna fold`` stays
    a sub-command even when it is the only command registered.
    """
    app.command("fold", help=FOLD_HELP)(fold)
    if app.registered_callback is None:
        app.callback(help=app.info.help)(_root)
