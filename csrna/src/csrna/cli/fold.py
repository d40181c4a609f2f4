"""``csrna fold``: CS-Fold from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from csrna.cli.errors import check_output, check_range, user_errors
from csrna.fold.figure import plot_fold
from csrna.fold.pipeline import MODES, CSFoldResult, cs_fold, renumber
from csrna.io import (
    atomic_write_text,
    clean_sequence,
    dot_bracket,
    output_unit,
    read_fasta,
    read_shift_entry,
    write_bpseq,
    write_ct,
    write_dot_bracket,
)
from csrna.io.nmrstar import ShiftEntry
from csrna.io.referencing import apply_correction, check_referencing, describe

FASTA_SUFFIXES = (".fasta", ".fa", ".fna", ".fas")
#: Most imputation sweeps accepted (published: 100).
MAX_MAXIT = 1000
#: Files written by csrna or holding structures, never read as shifts in batch mode.
OUTPUT_SUFFIXES = (".ct", ".bpseq", ".dbn", ".png", ".pdf", ".svg", ".tsv", ".csv", ".pdb",
                   ".cif", ".gz")

_err = Console(stderr=True)


def resolve_sequence(value: str, single: bool = False) -> str:
    """A sequence given on the command line: a FASTA file (first record) or the letters.

    Args:
        value: path to a FASTA file, or the sequence itself.
        single: refuse a FASTA file with more than one record (two strands of a duplex).

    Returns:
        The sequence over ACGU.
    """
    path = Path(value)
    if path.is_file():
        records = read_fasta(path)
        if single and len(records) > 1:
            raise ValueError(f"{path}: {len(records)} sequences; two-strand (duplex) input is "
                             "not supported, give one strand")
        return records[0][1]
    if any(c in value for c in "/\\") or path.suffix.lower() in FASTA_SUFFIXES:
        raise FileNotFoundError(f"{value}: FASTA file not found")
    return clean_sequence(value, "--sequence")


def output_paths(ct_path: Path) -> dict[str, Path]:
    """Files written for one RNA: CT, BPSEQ, dot-bracket, probabilities, candidates, figure."""
    stem = ct_path.with_suffix("")
    return {"ct": ct_path, "bpseq": stem.with_suffix(".bpseq"), "dbn": stem.with_suffix(".dbn"),
            "probabilities": Path(f"{stem}_probabilities.tsv"),
            "candidates": Path(f"{stem}_candidates.tsv"), "figure": stem.with_suffix(".png")}


def check_outputs(ct_paths: list[Path], overwrite: bool,
                  inputs: list[Path | None] | None = None) -> None:
    """Refuse (one line) an output file that exists without ``overwrite``, that is a
    directory or that is one of ``inputs`` (never replaced, even with ``overwrite``)."""
    for ct in ct_paths:
        for path in output_paths(ct).values():
            check_output(path, inputs or [], overwrite)


def write_result(result: CSFoldResult, ct_path: Path, title: str) -> None:
    """Write the CT, BPSEQ, dot-bracket, probability and candidate tables and the figure.

    The six files are one unit (:func:`csrna.io.output_unit`): each is written to a
    temporary file and they replace the destinations only when all are written; a failure
    (a full disk) leaves every previous file as it was.
    """
    paths = output_paths(ct_path)
    ct_path.parent.mkdir(parents=True, exist_ok=True)
    label = f"{title} CS-Fold {result.selected.name} {result.energy_label}"
    with output_unit():
        write_ct(paths["ct"], result.sequence, result.pairs, label)
        write_bpseq(paths["bpseq"], result.sequence, result.pairs, label)
        write_dot_bracket(paths["dbn"], result.sequence, result.pairs, label)
        atomic_write_text(paths["probabilities"], result.probabilities.to_csv(
            sep="\t", index=False, float_format="%.4f", na_rep="NA"))
        atomic_write_text(paths["candidates"], result.candidates.to_csv(
            sep="\t", index=False, float_format="%.4f"))
        plot_fold(paths["figure"], result.sequence, result.pairs,
                  result.probabilities["p_unpaired"].to_numpy(dtype=float), label,
                  pair_probability=result.pair_probability)


def _is_shift_candidate(p: Path) -> bool:
    return p.suffix.lower() not in FASTA_SUFFIXES + OUTPUT_SUFFIXES


def batch_inputs(folder: Path, sequence: str | None, entity: str | None = None,
                 shift_list: str | None = None
                 ) -> tuple[list[tuple[Path, ShiftEntry, str]], list[tuple[Path, str]]]:
    """Pair each shift file of a folder with its sequence; report the files that are not
    shift files.

    A shift file ``X.*`` takes its sequence from ``X.fasta`` (or .fa/.fna/.fas) in the same
    folder, else from the record named ``X`` in the ``--sequence`` FASTA, else from a
    single-record ``--sequence``, else from the NMR-STAR entry itself.

    Args:
        folder: folder of shift files and FASTA files.
        sequence: optional ``--sequence`` value (a FASTA file or letters).
        entity, shift_list: NMR-STAR selection applied to every entry.

    Returns:
        ([(shift file, entry, sequence)], [(skipped file, reason)]).

    Raises:
        ValueError: no shift file at all, or a shift file without a sequence.
    """
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    records: dict[str, str] = {}
    common = None
    if sequence is not None:
        if Path(sequence).is_file():
            records = dict(read_fasta(sequence))
            if len(records) == 1:
                common = next(iter(records.values()))
        else:
            common = resolve_sequence(sequence)
    out, skipped = [], []
    for p in files:
        if not _is_shift_candidate(p):
            if p.suffix.lower() not in FASTA_SUFFIXES:
                skipped.append((p, "output or structure file"))
            continue
        try:
            entry = read_shift_entry(p, entity, shift_list)
        except ValueError as err:
            skipped.append((p, str(err).splitlines()[0].removeprefix(f"{p}: ")))
            continue
        fasta = next((p.with_suffix(s) for s in FASTA_SUFFIXES if p.with_suffix(s).is_file()),
                     None)
        if fasta is not None:
            seq = read_fasta(fasta)[0][1]
        elif p.stem in records:
            seq = records[p.stem]
        elif common is not None:
            seq = common
        elif entry.sequence is not None:
            seq = entry.sequence
        else:
            raise ValueError(f"{p}: no matching FASTA ({p.stem}.fasta), no record "
                             f"'{p.stem}' in --sequence and no sequence in the file")
        out.append((p, entry, seq))
    if not out:
        why = "; ".join(f"{p.name}: {r}" for p, r in skipped[:3])
        raise ValueError(f"{folder}: no shift files in folder" + (f" ({why})" if why else ""))
    return out, skipped


#: Shifts of one (residue, nucleus) further apart than this (ppm) are a conflict, not
#: repeated measurements to average.
CONFLICT_PPM = 1.0


def validate_measured(shifts: pd.DataFrame, source: str) -> None:
    """Checks shared by fold, bme and annotate on a measured shift table.

    Refuses negative or non-finite uncertainties and repeated (residue, nucleus) rows whose
    shifts disagree by more than :data:`CONFLICT_PPM` (with counts); repeated rows that
    agree are averaged later (a note is printed by the reader).

    Raises:
        ValueError: one line naming ``source`` and the count of offending rows.
    """
    if "error" in shifts.columns:
        err = shifts["error"].to_numpy(dtype=float)
        bad = (err < 0) | np.isinf(err)
        if bad.any():
            first = shifts[bad].iloc[0]
            raise ValueError(f"{source}: {int(bad.sum())} negative or infinite uncertainties "
                             f"(first: residue {int(first['resid'])} {first['nucleus']} "
                             f"{first['error']:g})")
    spread = shifts.groupby(["resid", "nucleus"])["shift"].agg(lambda s: s.max() - s.min())
    conflict = spread[spread > CONFLICT_PPM]
    if len(conflict):
        (resid, nucleus), ppm = next(iter(conflict.items()))
        raise ValueError(f"{source}: {len(conflict)} (residue, nucleus) pairs listed more than "
                         f"once with conflicting shifts (first: residue {int(resid)} {nucleus}, "
                         f"values {ppm:.2f} ppm apart); keep one value per nucleus")


def prepare_shifts(entry: ShiftEntry, source: str, residue_offset: int,
                   reference_correct: bool) -> pd.DataFrame:
    """Print the entry's notes and the referencing check; return the shifts to fold with.

    Args:
        entry: from :func:`csrna.io.read_shift_entry`.
        source: file name for the messages.
        residue_offset: subtracted from every residue number (author numbering -> 1..N).
        reference_correct: subtract the estimated offset of every flagged nucleus class.
    """
    for note in entry.notes:
        _err.print(f"note: {source}: {note}", highlight=False, soft_wrap=True, markup=False)
    validate_measured(entry.shifts, source)
    shifts = renumber(entry.shifts, residue_offset) if residue_offset else entry.shifts
    offsets = check_referencing(shifts)
    for line in describe(offsets, source):
        _err.print(f"warning: {line}", highlight=False, soft_wrap=True, markup=False)
    if reference_correct and any(c.flagged for c in offsets):
        shifts = apply_correction(shifts, offsets)
        fixed = ", ".join(f"{c.name} {-c.correction:+.2f} ppm" for c in offsets if c.flagged)
        _err.print(f"note: {source}: referencing corrected: {fixed}", highlight=False,
                   soft_wrap=True, markup=False)
    return shifts


@user_errors
def fold(
    shifts: Annotated[Path, typer.Argument(
        help="Chemical-shift file (columns 'resname resid nucleus shift error', or BMRB "
             "NMR-STAR 3.x), or a folder of shift files each with a FASTA file of the same "
             "name (files that are not shift files are skipped and listed).")],
    sequence: Annotated[str | None, typer.Option(
        "--sequence", "-s",
        help="RNA sequence, or a FASTA file (required for a shift table; an NMR-STAR entry "
             "supplies its own).")] = None,
    output: Annotated[Path, typer.Option(
        "--output", "-o",
        help="Output CT file (.bpseq and .dbn structure files, _probabilities.tsv / "
             "_candidates.tsv tables and a .png figure are written beside it); a folder in "
             "batch mode.")] = Path("csfold.ct"),
    mode: Annotated[str, typer.Option(
        help=f"Selection mode: {' | '.join(MODES)}. conservative (default) = the CS-Fold "
             "paper's method, then helix-end pairs whose nucleotides are both called unpaired "
             "(one P > 0.99, the other P > 0.5) are dropped (docs/CSFOLD.md); published = the "
             "paper's method unchanged; tuned = drop such pairs when the other P > 0.1.")
    ] = "conservative",
    entity: Annotated[str | None, typer.Option(
        help="NMR-STAR: Entity_ID to read when the entry has several (the error lists "
             "them).")] = None,
    shift_list: Annotated[str | None, typer.Option(
        "--list", help="NMR-STAR: assigned chemical-shift list ID when the entry has several "
                       "(the error lists them).")] = None,
    residue_offset: Annotated[int, typer.Option(
        help="Residue number in the shift file = position in the sequence + this offset "
             "(author numbering).")] = 0,
    reference_correct: Annotated[bool, typer.Option(
        "--reference-correct",
        help="Subtract the estimated referencing offset of every nucleus class flagged as "
             "mis-referenced (a warning is printed either way).")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace existing output files.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the shift imputation.")] = 500,
    maxit: Annotated[int, typer.Option(
        help="Imputation sweeps (published 100; 10 is within the imputation noise).")] = 10,
) -> None:
    """Fold an RNA with its NMR chemical shifts (CS-Fold); see ``FOLD_HELP``."""
    if mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    check_range("--maxit", maxit, 1, MAX_MAXIT)
    check_range("--residue-offset", residue_offset, -1e6, 1e6)
    if shifts.is_dir():
        jobs, skipped = batch_inputs(shifts, sequence, entity, shift_list)
        check_outputs([output / f"{p.stem}.ct" for p, _, _ in jobs], overwrite,
                      inputs=[p for p, _, _ in jobs])
        progress = Progress(TextColumn("[bold]CS-Fold[/bold] {task.description}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), console=_err)
        with progress:
            task = progress.add_task("", total=len(jobs))
            for path, entry, seq in jobs:
                progress.update(task, description=path.name)
                table = prepare_shifts(entry, str(path), residue_offset, reference_correct)
                result = cs_fold(seq, table, mode=mode, seed=seed, maxit=maxit,
                                 source=str(path))
                write_result(result, output / f"{path.stem}.ct", path.stem)
                progress.advance(task)
        for path, why in skipped:
            _err.print(f"skipped {path}: {why}", highlight=False, soft_wrap=True, markup=False)
        typer.echo(f"wrote {len(jobs)} structures to {output}"
                   + (f" ({len(skipped)} files skipped)" if skipped else ""))
        return
    entry = read_shift_entry(shifts, entity, shift_list)
    if sequence is not None:
        seq = resolve_sequence(sequence, single=True)
        if entry.sequence is not None and entry.sequence != seq:
            _err.print(f"note: {shifts}: --sequence differs from the entry's sequence "
                       f"({entry.sequence}); using --sequence", highlight=False,
                       soft_wrap=True, markup=False)
    elif entry.sequence is not None:
        seq = entry.sequence
        entry.notes.append(f"sequence from the entry: {seq}")
    else:
        raise ValueError(f"{shifts}: --sequence is required (the file has no sequence)")
    check_outputs([output], overwrite, inputs=[shifts, Path(sequence) if sequence else None])
    table = prepare_shifts(entry, str(shifts), residue_offset, reference_correct)
    result = cs_fold(seq, table, mode=mode, seed=seed, maxit=maxit, source=str(shifts))
    write_result(result, output, shifts.stem)
    energy = (f"{result.energy:.2f} kcal/mol, nested part only: the pseudoknotted pairs are "
              "not in ViennaRNA's energy model" if result.pseudoknotted
              else f"{result.energy:.2f} kcal/mol")
    typer.echo(f"{result.sequence}\n{_db(result)}  ({result.selected.name}, {energy})\n"
               f"wrote {output}")


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
