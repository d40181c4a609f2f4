"""``csrna reweight``, ``csrna bme`` and ``csrna annotate`` (CS-BME and CS-Annotate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress

from csrna.cli.errors import check_output, check_range, user_errors

_err = Console(stderr=True)
_out = Console()

THETA_HELP = (
    "Regularisation strength theta in standardised units (larger = stay closer to the "
    "prior), or 'auto' to choose it by 5-fold cross-validation over the observables."
)

HELP_EXPERIMENTAL = "BME experimental file ('# DATA=CS PRIOR=GAUSS'; rows: index value error)."
HELP_SIMULATED = (
    "BME simulated file: one row per conformer, label then one column per experimental row."
)
HELP_WEIGHTS_OUT = "Weights CSV to write (header structure,weight)."
HELP_SHIFTS = (
    "Measured shifts: 'resname resid nucleus shift error' table (error optional) or BMRB "
    "NMR-STAR."
)
HELP_SEQUENCE = "RNA sequence, or a FASTA file."
HELP_OUTDIR = "Output directory."
HELP_LIBRARY = "Directory of CT files to use as the library (instead of ViennaRNA sampling)."
HELP_SAMPLES = "Boltzmann samples (stochastic backtracking) for the library."
HELP_SUBOPT = "Suboptimal folds within this many kcal/mol of the MFE."
HELP_SEED = "Random seed of the sampling."
HELP_TABLE_OUT = "CSV table to write."
HELP_ENTITY = "NMR-STAR: Entity_ID to read when the entry has several (the error lists them)."
HELP_LIST = ("NMR-STAR: assigned chemical-shift list ID when the entry has several (the error "
             "lists them).")
HELP_REFCORR = ("Subtract the estimated referencing offset of every nucleus class flagged as "
                "mis-referenced (a warning is printed either way).")
HELP_OVERWRITE = "Replace existing output files."


#: Most library structures sampled (each is predicted and reweighted).
MAX_SAMPLES = 100_000
#: Sequence length above which CS-BME warns that sampling and prediction take long.
LONG_SEQUENCE = 500


def _refuse_existing(paths: list[Path], overwrite: bool,
                     inputs: list[Path | None] | None = None) -> None:
    for path in paths:
        check_output(path, inputs or [], overwrite)


def _read_measured(shifts: Path, entity: str | None, shift_list: str | None,
                   reference_correct: bool):
    """Shift entry (notes and referencing check printed) and the shifts to use."""
    from csrna.cli.fold import prepare_shifts
    from csrna.io import read_shift_entry

    entry = read_shift_entry(shifts, entity, shift_list)
    return entry, prepare_shifts(entry, str(shifts), 0, reference_correct)


def _parse_theta(value: str) -> float | str:
    if value.strip().lower() == "auto":
        return "auto"
    try:
        theta = float(value)
    except ValueError:
        raise ValueError(f"--theta must be a positive number or 'auto', got {value!r}") from None
    if not np.isfinite(theta) or theta <= 0:
        raise ValueError(f"--theta must be a positive number or 'auto', got {value!r}")
    return theta


def _report(result) -> None:
    _out.print(
        f"theta = {result.theta:.4g}   chi2 before = {result.chi2_before:.4f}   "
        f"chi2 after = {result.chi2_after:.4f}   phi = {result.phi:.4f}",
        highlight=False,
    )


@user_errors
def reweight(
    experimental: Annotated[Path, typer.Argument(help=HELP_EXPERIMENTAL)],
    simulated: Annotated[Path, typer.Argument(help=HELP_SIMULATED)],
    output: Annotated[Path, typer.Option("--output", "-o", help=HELP_WEIGHTS_OUT)],
    theta: Annotated[str, typer.Option(help=THETA_HELP)] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help=HELP_OVERWRITE)] = False,
) -> None:
    """Reweight a conformer ensemble against experimental data (Bayesian/maximum entropy).

    The weights CSV has one row per conformer in input order; `structure` is the label in
    the first column of the simulated file (in the CS-BME files: the 0-based conformer index).
    Prints chi^2 before/after and the effective fraction phi = exp(-S_KL).

    Example: csrna reweight exp.dat sim.dat --theta 1 --output weights.csv
    """
    from csrna.ensemble.bme import fit
    from csrna.ensemble.bme_io import read_bme_experimental, read_bme_simulated, write_weights

    th = _parse_theta(theta)
    _refuse_existing([output], overwrite, [experimental, simulated])
    _, values, errors = read_bme_experimental(experimental)
    labels, calc = read_bme_simulated(simulated)
    if calc.shape[1] != values.size:
        raise ValueError(
            f"{simulated}: {calc.shape[1]} observables per conformer but {experimental} has "
            f"{values.size} rows"
        )
    result = fit(calc, values, errors, theta=th)
    write_weights(output, labels, result.weights)
    _report(result)
    _out.print(f"top structure: {labels[int(np.argmax(result.weights))]} "
               f"(weight {result.weights.max():.3f}); weights -> {output}", highlight=False)


@user_errors
def bme(
    shifts: Annotated[Path, typer.Argument(help=HELP_SHIFTS)],
    output: Annotated[Path, typer.Option("--output", "-o", help=HELP_OUTDIR)],
    sequence: Annotated[str | None, typer.Option(
        "--sequence", "-s",
        help=HELP_SEQUENCE + " Required for a shift table; an NMR-STAR entry supplies its "
                             "own.")] = None,
    entity: Annotated[str | None, typer.Option(help=HELP_ENTITY)] = None,
    shift_list: Annotated[str | None, typer.Option("--list", help=HELP_LIST)] = None,
    reference_correct: Annotated[bool, typer.Option("--reference-correct",
                                                    help=HELP_REFCORR)] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=HELP_OVERWRITE)] = False,
    library: Annotated[Path | None, typer.Option(help=HELP_LIBRARY)] = None,
    theta: Annotated[str, typer.Option(help=THETA_HELP)] = "auto",
    samples: Annotated[int, typer.Option(help=HELP_SAMPLES)] = 1000,
    subopt_delta: Annotated[float, typer.Option(help=HELP_SUBOPT)] = 2.0,
    seed: Annotated[int, typer.Option(help=HELP_SEED)] = 0,
) -> None:
    """CS-BME: ensemble of secondary structures reweighted by measured chemical shifts.

    Builds (or reads) a library, predicts the shifts of every structure from its secondary
    structure, matches them to the measured shifts (by residue number and nucleus) and
    reweights. Writes to OUTPUT: library.csv (structure, source, energy, prior, weight,
    dot_bracket), weights.csv (structure,weight), predicted_shifts.csv, top_structure.ct,
    top_structure.dbn and pair_probabilities.png.

    Example: csrna bme shifts.dat --sequence GGUAGUUUUGGCAUGACUCUACC --output out/
    """
    from csrna.cli.fold import resolve_sequence
    from csrna.ensemble import match_observables, predict_library
    from csrna.ensemble.bme import fit
    from csrna.ensemble.library import read_ct_library, sample_library
    from csrna.ensemble.shiftpred import ShiftPredictor

    th = _parse_theta(theta)
    check_range("--samples", samples, 1, MAX_SAMPLES)
    check_range("--subopt-delta", subopt_delta, 0.0, 20.0)
    if output.exists() and not output.is_dir():
        raise ValueError(f"{output}: exists and is not a folder (--output is a directory)")
    if library is not None and not library.is_dir():
        raise FileNotFoundError(f"{library}: --library folder not found")
    names_out = ["predicted_shifts.csv", "weights.csv", "library.csv", "top_structure.ct",
                 "top_structure.dbn", "top_structure.bpseq", "pair_probabilities.png"]
    _refuse_existing([output / f for f in names_out], overwrite, [shifts])
    entry, measured = _read_measured(shifts, entity, shift_list, reference_correct)
    if sequence is not None:
        seq = resolve_sequence(sequence, single=True)
    elif entry.sequence is not None:
        seq = entry.sequence
    else:
        raise ValueError(f"{shifts}: --sequence is required (the file has no sequence)")
    from csrna.fold.pipeline import check_shifts

    check_shifts(measured, seq, str(shifts))  # the same refusals as csrna fold
    if len(seq) > LONG_SEQUENCE:
        _err.print(f"warning: {len(seq)} nt: sampling {samples} structures and predicting "
                   "their shifts takes long at this length (CS-BME was validated on RNAs "
                   f"under {LONG_SEQUENCE} nt)", highlight=False, soft_wrap=True, markup=False)
    if library is not None:
        seq, conformers = read_ct_library(library, seq)
    else:
        with _err.status("sampling structures with ViennaRNA"):
            conformers = sample_library(seq, n_samples=samples, subopt_delta=subopt_delta,
                                        seed=seed)
    names = [c.name for c in conformers]
    predictor = ShiftPredictor.load()
    with Progress(console=_err, transient=True) as bar:
        task = bar.add_task("predicting shifts", total=len(conformers))
        predicted = predict_library(seq, conformers, predictor,
                                    progress=lambda k: bar.advance(task, k))
    data, calc = match_observables(measured, predicted, names, source=str(shifts))
    n_keys = len(measured.drop_duplicates(["resid", "nucleus"]))
    if len(data) < n_keys:
        _err.print(f"warning: {shifts}: {n_keys - len(data)} of {n_keys} measured (residue, "
                   "nucleus) shifts have no predicted counterpart (nuclei the shift predictor "
                   "does not model) and are not used", highlight=False, soft_wrap=True,
                   markup=False)
    result = fit(calc, data["shift"].to_numpy(), data["sigma"].to_numpy(), theta=th)

    created = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    top = int(np.argmax(result.weights))
    n = len(seq)
    try:
        _write_bme(output, seq, names, conformers, predicted, result, top, n)
    except BaseException:
        if created and next(output.iterdir(), None) is None:
            output.rmdir()  # a failed unit leaves no empty folder behind
        raise
    _out.print(f"{len(conformers)} structures; {len(data)} of {len(measured)} measured shifts "
               "matched a predicted nucleus", highlight=False)
    _report(result)
    _out.print(f"top structure {names[top]} (weight {result.weights[top]:.3f}): "
               f"{conformers[top].dot_bracket(n)}", highlight=False)
    _out.print(f"results -> {output}", highlight=False)


def _write_bme(output: Path, seq: str, names: list[str], conformers, predicted, result,
               top: int, n: int) -> None:
    """Write the seven CS-BME files into ``output`` as one unit: all replaced, or none (a
    full disk leaves the previous files as they were)."""
    import pandas as pd

    from csrna.ensemble import pair_probability_matrix, plot_pair_probabilities
    from csrna.ensemble.bme_io import write_weights
    from csrna.io import (
        atomic_write_text,
        output_unit,
        write_bpseq,
        write_ct,
        write_dot_bracket,
    )

    with output_unit():
        atomic_write_text(output / "predicted_shifts.csv",
                          predicted.to_csv(index=False, float_format="%.4f"))
        write_weights(output / "weights.csv", names, result.weights)
        atomic_write_text(output / "library.csv", pd.DataFrame({
            "structure": names,
            "source": [c.source for c in conformers],
            "energy": [c.energy for c in conformers],
            "prior": result.prior,
            "weight": result.weights,
            "dot_bracket": [c.dot_bracket(len(seq)) for c in conformers],
        }).to_csv(index=False, float_format="%.6g"))
        label = f"{names[top]} CS-BME weight={result.weights[top]:.4f}"
        write_ct(output / "top_structure.ct", seq, conformers[top].pairs, label)
        write_dot_bracket(output / "top_structure.dbn", seq, conformers[top].pairs, label)
        write_bpseq(output / "top_structure.bpseq", seq, conformers[top].pairs, label)
        plot_pair_probabilities(
            output / "pair_probabilities.png",
            pair_probability_matrix(conformers, result.prior, n),
            pair_probability_matrix(conformers, result.weights, n),
            seq,
        )


@user_errors
def annotate(
    shifts: Annotated[Path, typer.Argument(help=HELP_SHIFTS)],
    output: Annotated[Path, typer.Option("--output", "-o", help=HELP_TABLE_OUT)],
    entity: Annotated[str | None, typer.Option(help=HELP_ENTITY)] = None,
    shift_list: Annotated[str | None, typer.Option("--list", help=HELP_LIST)] = None,
    reference_correct: Annotated[bool, typer.Option("--reference-correct",
                                                    help=HELP_REFCORR)] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=HELP_OVERWRITE)] = False,
) -> None:
    """CS-Annotate: per-nucleotide structural annotations from chemical shifts.

    For every residue with shifts: probabilities of solvent exposure (sasa), stacking with a
    sequence neighbour (astack), non-neighbour stacking (nastack), base pairing (pair), syn
    glycosidic torsion (syn_anti) and the six one-vs-rest sugar-pucker outputs, plus the
    pucker call (`pucker`, `pucker_probability`): the six outputs corrected by the training
    prior of each class and normalised (on the published test split right for 83.1 % of the
    residues against 82.7 % for always answering C3'-endo, so little more than the majority
    answer). Missing shifts are filled with training means per residue type (column
    n_measured says how many of the 19 nuclei were measured).

    Example: csrna annotate shifts.dat --output annotations.csv
    """
    from csrna.annotate import annotate_shifts
    from csrna.fold.pipeline import check_shifts
    from csrna.io import atomic_write_text

    _refuse_existing([output], overwrite, [shifts])
    if not output.parent.is_dir():
        raise FileNotFoundError(f"{output}: folder {output.parent} does not exist")
    _, measured = _read_measured(shifts, entity, shift_list, reference_correct)
    check_shifts(measured, None, str(shifts))  # empty table, unknown nuclei: as csrna fold
    table = annotate_shifts(measured)
    atomic_write_text(output, table.to_csv(index=False))
    _out.print(f"{len(table)} residues annotated -> {output}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``reweight``, ``bme`` and ``annotate`` to the ``csrna`` application."""
    app.command("reweight")(reweight)
    app.command("bme")(bme)
    app.command("annotate")(annotate)
