"""CS-Fold: RNA secondary structure from chemical shifts.

Pipeline (Zhang & Frank, J Phys Chem B 2019):

1. per-residue table of the 19 shifts for every residue present in the shift file; missing
   shifts imputed by MICE-PMM against the training population (:mod:`csrna.fold.impute`, median of
   m = 5 imputations as published);
2. 71 features per residue and the ensemble P(unpaired) (:mod:`csrna.fold.classifier`);
3. six candidates: MFE, MEA and ProbKnot, each with and without the pseudo-energies
   1.8 ln(P + 1) - 0.6 kcal/mol (:mod:`csrna.fold.folding`);
4. selection: the candidate whose paired/unpaired state agrees with the classifier
   (P > 0.6 means unpaired) on the largest fraction of residues with a prediction; ties go to
   the lowest free energy without restraints.

Modes: ``published`` is the method above. ``conservative`` (the default of :func:`cs_fold` and
``csrna fold``) is the published method plus the pruning step below, the variant whose PPV gain
over plain ViennaRNA held when its thresholds were chosen without the scored RNA. ``tuned``
adds one step found with the leave-one-out benchmark (docs/CSFOLD.md): almost all false pairs
of the published mode are helix-terminal pairs in which one nucleotide is confidently called
unpaired, which the Deigan pseudo-energy cannot remove (its negative intercept still rewards
the stack for the partner nucleotides), so in the selected structure a helix-terminal pair is
removed when one of its nucleotides has P(unpaired) > 0.99 and the other > 0.1 (one pass, both
must have predictions). ``conservative`` prunes the same way but only when the other nucleotide
is also called unpaired (P > 0.5): its thresholds are the best PPV that loses no true pair of
the published mode on the training RNAs, a rule whose benefit was checked by nested cross-
validation over RNAs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from csrna.fold.classifier import Ensemble, load_ensemble, load_reference
from csrna.fold.features import neighbour_table, raw_features
from csrna.fold.folding import (
    PUBLISHED_INTERCEPT,
    PUBLISHED_SLOPE,
    Candidate,
    fold_candidates,
    free_energy,
    nested_part,
    pair_probabilities,
)
from csrna.fold.impute import impute_with_reference
from csrna.io import clean_sequence, pair_table
from csrna.io.nuclei import NUCLEI, RNA_ATOMS

UNPAIRED_THRESHOLD = 0.6
MODES = ("published", "tuned", "conservative")


@dataclass(frozen=True)
class FoldSettings:
    """Parameters of one CS-Fold mode.

    Attributes:
        slope, intercept: pseudo-energy parameters (kcal/mol).
        threshold: P(unpaired) above which the classifier calls a residue unpaired.
        weighted: weight each residue's agreement by |P - threshold|.
        prefer_restrained: on a tie, prefer restrained candidates before comparing energies.
        prune_max, prune_min: if set, remove helix-terminal pairs of the selected structure
            whose nucleotides have max(P) > prune_max and min(P) > prune_min (tuned mode).
    """

    slope: float = PUBLISHED_SLOPE
    intercept: float = PUBLISHED_INTERCEPT
    threshold: float = UNPAIRED_THRESHOLD
    weighted: bool = False
    prefer_restrained: bool = False
    prune_max: float | None = None
    prune_min: float = 0.0


def settings_for(mode: str) -> FoldSettings:
    """The :class:`FoldSettings` of a named mode (``published``, ``tuned``, ``conservative``)."""
    if mode == "published":
        return FoldSettings()
    if mode == "tuned":
        return FoldSettings(prune_max=0.99, prune_min=0.1)
    if mode == "conservative":
        return FoldSettings(prune_max=0.99, prune_min=0.5)
    raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")


def check_shifts(shifts: pd.DataFrame, sequence: str | None, source: str = "shifts") -> None:
    """Validate a shift table against the sequence.

    Args:
        shifts: table from :func:`csrna.io.read_shifts`.
        sequence: RNA sequence or None.
        source: file name for the messages.

    Raises:
        ValueError: empty table, unknown nucleus, residue number outside the sequence or a
            residue name that differs from the sequence letter (one line each).
    """
    if len(shifts) == 0:
        raise ValueError(f"{source}: no chemical shifts")
    unknown = sorted(set(shifts["nucleus"]) - RNA_ATOMS)
    if unknown:
        raise ValueError(f"{source}: unknown nucleus name(s): {', '.join(unknown)}")
    if sequence is None:
        return
    n = len(sequence)
    bad = shifts[(shifts["resid"] < 1) | (shifts["resid"] > n)]
    letters = np.array(list(sequence))
    if len(bad):
        raise ValueError(
            f"{source}: residue number {int(bad['resid'].iloc[0])} outside the sequence (1-{n})"
            + _offset_hint(shifts, sequence))
    wrong = shifts["resname"].to_numpy() != letters[shifts["resid"].to_numpy() - 1]
    if wrong.any():
        r = shifts[wrong].iloc[0]
        raise ValueError(f"{source}: residue {int(r['resid'])} is {r['resname']} in the shifts "
                         f"but {sequence[int(r['resid']) - 1]} in the sequence"
                         + _offset_hint(shifts, sequence))


def numbering_offsets(shifts: pd.DataFrame, sequence: str) -> list[int]:
    """Offsets k for which every shift residue ``resid - k`` lies in the sequence with the
    same residue name (the author-numbering offsets that would make the file fit).

    Args:
        shifts: long shift table.
        sequence: RNA sequence.

    Returns:
        The fitting offsets, smallest magnitude first (0 included when it fits).
    """
    n = len(sequence)
    res = shifts[["resid", "resname"]].drop_duplicates()
    resid = res["resid"].to_numpy()
    names = res["resname"].to_numpy()
    letters = np.array(list(sequence))
    out = []
    for k in range(int(resid.min()) - n, int(resid.max())):
        pos = resid - k
        if pos.min() >= 1 and pos.max() <= n and (letters[pos - 1] == names).all():
            out.append(k)
    return sorted(out, key=lambda k: (abs(k), k))


def _offset_hint(shifts: pd.DataFrame, sequence: str) -> str:
    fits = numbering_offsets(shifts, sequence)
    if not fits:
        return ""
    more = f" (also fits: {', '.join(map(str, fits[1:4]))})" if len(fits) > 1 else ""
    return (f"; numbering shifted by {fits[0]} matches every residue name: use "
            f"--residue-offset {fits[0]}{more}")


def renumber(shifts: pd.DataFrame, offset: int) -> pd.DataFrame:
    """Shift table with residue numbers ``resid - offset`` (author numbering to 1..N)."""
    out = shifts.copy()
    out["resid"] = out["resid"] - int(offset)
    return out


def residue_shift_table(shifts: pd.DataFrame) -> pd.DataFrame:
    """One row per residue present in the shift table, the 19 nuclei as columns (NaN missing).

    Args:
        shifts: long table from :func:`csrna.io.read_shifts`.

    Returns:
        DataFrame with ``resid``, ``resname`` and the 19 nuclei, sorted by resid; every residue
        with at least one shift (of any nucleus) appears, as in the published code.
    """
    names = shifts.groupby("resid")["resname"].first()
    sub = shifts[shifts["nucleus"].isin(NUCLEI)]
    wide = sub.pivot_table(index="resid", columns="nucleus", values="shift", aggfunc="mean")
    wide = wide.reindex(index=names.index, columns=list(NUCLEI))
    wide.insert(0, "resname", names)
    return wide.reset_index().sort_values("resid").reset_index(drop=True)


def impute_residues(shifts: pd.DataFrame,
                    reference: tuple[np.ndarray, np.ndarray] | None = None, m: int = 5,
                    maxit: int = 10, seed: int = 500) -> tuple[pd.DataFrame, np.ndarray]:
    """Complete per-residue shift table of one RNA (missing shifts imputed).

    Args:
        shifts: long table from :func:`csrna.io.read_shifts`.
        reference: (shifts (N, 19), resnames (N,)) imputation population (default: the
            shipped copy of the published training table ``ss_table_0``).
        m, maxit, seed: imputation settings (published m = 5; maxit 100, here 10 by default,
            see docs/CSFOLD.md).

    Returns:
        (table with ``resid``, ``resname`` and the 19 completed nuclei; (n,) number of
        measured nuclei per residue).
    """
    if reference is None:
        ref_shifts, ref_names, _ = load_reference()
    else:
        ref_shifts, ref_names = reference
    table = residue_shift_table(shifts)
    values = table[list(NUCLEI)].to_numpy(dtype=np.float64)
    filled = impute_with_reference(values, table["resname"].to_numpy(), ref_shifts, ref_names,
                                   m=m, maxit=maxit, seed=seed)
    complete = table[["resid", "resname"]].copy()
    complete[list(NUCLEI)] = filled
    return complete, np.isfinite(values).sum(axis=1)


def classify_residues(complete: pd.DataFrame, ensemble: Ensemble | None = None) -> pd.DataFrame:
    """Ensemble P(unpaired) for a complete per-residue shift table.

    Args:
        complete: first output of :func:`impute_residues`.
        ensemble: networks (default: the shipped ensemble).

    Returns:
        DataFrame with ``resid``, ``resname``, ``p_unpaired`` (mean over members) and
        ``p_model_k`` per member.
    """
    ensemble = ensemble if ensemble is not None else load_ensemble()
    members = ensemble.predict_members(raw_features(neighbour_table(complete)))
    out = complete[["resid", "resname"]].reset_index(drop=True)
    out["p_unpaired"] = members.mean(axis=1)
    for k in range(members.shape[1]):
        out[f"p_model_{k + 1}"] = members[:, k]
    return out


def predict_unpaired(shifts: pd.DataFrame, ensemble: Ensemble | None = None,
                     reference: tuple[np.ndarray, np.ndarray] | None = None, m: int = 5,
                     maxit: int = 10, seed: int = 500) -> pd.DataFrame:
    """Classifier P(unpaired) for each residue of a shift table (impute, then classify).

    Args:
        shifts: long table from :func:`csrna.io.read_shifts`.
        ensemble: networks (default: the shipped ensemble).
        reference, m, maxit, seed: see :func:`impute_residues`.

    Returns:
        DataFrame with ``resid``, ``resname``, ``n_measured`` (of the 19 nuclei),
        ``p_unpaired`` (ensemble mean) and ``p_model_k`` per member.
    """
    complete, n_measured = impute_residues(shifts, reference, m=m, maxit=maxit, seed=seed)
    out = classify_residues(complete, ensemble)
    out.insert(2, "n_measured", n_measured)
    return out


def consistency(candidate_pairs, p_unpaired: np.ndarray, settings: FoldSettings) -> float:
    """Agreement between a structure and the classifier.

    Args:
        candidate_pairs: 1-based pairs of the structure.
        p_unpaired: (n,) P(unpaired), NaN where there is no prediction.
        settings: threshold and weighting.

    Returns:
        Fraction (or confidence-weighted fraction) of predicted residues whose state in the
        structure matches the call P > threshold (unpaired).
    """
    p = np.asarray(p_unpaired, dtype=np.float64)
    known = np.isfinite(p)
    if not known.any():
        return 0.0
    unpaired = pair_table(list(candidate_pairs), len(p)) < 0
    agree = (p[known] > settings.threshold) == unpaired[known]
    if settings.weighted:
        w = np.abs(p[known] - settings.threshold)
        return float((w * agree).sum() / max(w.sum(), 1e-12))
    return float(agree.mean())


def prune_terminal_pairs(pairs, p_unpaired: np.ndarray, max_p: float,
                         min_p: float = 0.0) -> list[tuple[int, int]]:
    """Remove helix-terminal pairs whose nucleotides the classifier calls unpaired.

    Args:
        pairs: 1-based pairs.
        p_unpaired: (n,) P(unpaired), NaN where unknown (such pairs are kept).
        max_p: the larger P of the two nucleotides must exceed this.
        min_p: the smaller P must exceed this.

    Returns:
        The kept pairs, sorted. A pair (i, j) is helix-terminal when (i-1, j+1) or
        (i+1, j-1) is not a pair; all pairs are judged on the input structure (one pass).
    """
    p = np.asarray(p_unpaired, dtype=np.float64)
    pair_set = {(int(i), int(j)) for i, j in pairs}
    kept = []
    for i, j in sorted(pair_set):
        terminal = (i - 1, j + 1) not in pair_set or (i + 1, j - 1) not in pair_set
        pi, pj = p[i - 1], p[j - 1]
        if (terminal and np.isfinite(pi) and np.isfinite(pj) and max(pi, pj) > max_p
                and min(pi, pj) > min_p):
            continue
        kept.append((i, j))
    return kept


def choose_structure(candidates: list[Candidate], p_unpaired: np.ndarray,
                     settings: FoldSettings) -> tuple[list[tuple[int, int]], Candidate,
                                                      pd.DataFrame]:
    """Selection plus the optional tuned pruning.

    Args:
        candidates: from :func:`csrna.fold.folding.fold_candidates`.
        p_unpaired: (n,) P(unpaired), NaN where unknown.
        settings: mode settings.

    Returns:
        (final pairs, selected candidate, candidate table).
    """
    chosen, table = select_candidate(candidates, p_unpaired, settings)
    pairs = list(chosen.pairs)
    if settings.prune_max is not None:
        pairs = prune_terminal_pairs(pairs, p_unpaired, settings.prune_max, settings.prune_min)
    return pairs, chosen, table


@dataclass
class CSFoldResult:
    """Outcome of :func:`cs_fold`.

    Attributes:
        sequence: the folded sequence.
        pairs: 1-based pairs of the final structure (the selected candidate, pruned in the
            tuned mode).
        selected: the selected candidate.
        energy: free energy (kcal/mol, no restraints) of the final structure.
        candidates: all candidates with their consistency, as a DataFrame.
        probabilities: per-residue table (resid, resname, n_measured, p_unpaired, members,
            paired partner in the final structure, ``pair_probability``: the restrained
            base-pair probability of that pair, NaN when unpaired).
        pair_probability: {pair: probability of the pair in the restrained partition function
            (the Deigan pseudo-energies of the mode's P(unpaired))}, one per final pair; the
            per-pair confidence.
        pseudoknotted: the final structure has crossing pairs; ``energy`` then covers only its
            nested part (ViennaRNA has no pseudoknot energy model).
    """

    sequence: str
    pairs: list[tuple[int, int]]
    selected: Candidate
    energy: float
    candidates: pd.DataFrame
    probabilities: pd.DataFrame = field(repr=False)
    pair_probability: dict[tuple[int, int], float] = field(default_factory=dict, repr=False)
    pseudoknotted: bool = False

    @property
    def energy_label(self) -> str:
        """The free energy as text, marked as nested-part only for pseudoknotted folds."""
        if self.pseudoknotted:
            return f"dG(nested part only)={self.energy:.2f}"
        return f"dG={self.energy:.2f}"

def select_candidate(candidates: list[Candidate], p_unpaired: np.ndarray,
                     settings: FoldSettings) -> tuple[Candidate, pd.DataFrame]:
    """Pick the candidate most consistent with the classifier.

    Args:
        candidates: from :func:`csrna.fold.folding.fold_candidates`.
        p_unpaired: (n,) per-nucleotide P(unpaired) (NaN where unknown).
        settings: mode settings.

    Returns:
        (selected candidate, table of all candidates with ``consistency`` sorted best first).
    """
    rows = []
    for k, c in enumerate(candidates):
        score = round(consistency(c.pairs, p_unpaired, settings), 10)
        span = max((j for _, j in c.pairs), default=0)
        knotted = len(nested_part(c.pairs, span)) < len(c.pairs)
        rows.append({"candidate": c.name, "consistency": score, "energy": c.energy,
                     "n_pairs": len(c.pairs), "restrained": c.restrained,
                     "energy_nested_part_only": knotted, "index": k})
    table = pd.DataFrame(rows)
    keys = ["consistency", "restrained", "energy", "index"] if settings.prefer_restrained \
        else ["consistency", "energy", "index"]
    asc = [False, False, True, True] if settings.prefer_restrained else [False, True, True]
    table = table.sort_values(keys, ascending=asc, kind="stable").reset_index(drop=True)
    return candidates[int(table["index"].iloc[0])], table.drop(columns="index")


def cs_fold(sequence: str, shifts: pd.DataFrame, mode: str = "conservative",
            ensemble: Ensemble | None = None,
            reference: tuple[np.ndarray, np.ndarray] | None = None,
            maxit: int = 10, seed: int = 500, source: str = "shifts") -> CSFoldResult:
    """Fold an RNA with its chemical shifts.

    Args:
        sequence: RNA sequence (ACGU/T).
        shifts: long shift table (residue numbers 1..len(sequence)).
        mode: ``conservative`` (default), ``published`` or ``tuned`` (see module docstring).
        ensemble, reference, maxit, seed: see :func:`predict_unpaired`.
        source: name used in error messages.

    Returns:
        :class:`CSFoldResult`.

    Raises:
        ValueError: invalid sequence or shifts (one line).
    """
    settings = settings_for(mode)
    sequence = clean_sequence(sequence)
    check_shifts(shifts, sequence, source)
    probs = predict_unpaired(shifts, ensemble, reference, maxit=maxit, seed=seed)
    p = np.full(len(sequence), np.nan)
    p[probs["resid"].to_numpy() - 1] = probs["p_unpaired"].to_numpy()
    candidates = fold_candidates(sequence, p, settings.slope, settings.intercept)
    pairs, chosen, table = choose_structure(candidates, p, settings)
    energy = chosen.energy if len(pairs) == len(chosen.pairs) else free_energy(sequence, pairs)
    per_res = pd.DataFrame({"resid": np.arange(1, len(sequence) + 1),
                            "resname": list(sequence)})
    per_res = per_res.merge(probs.drop(columns="resname"), on="resid", how="left")
    per_res["n_measured"] = per_res["n_measured"].fillna(0).astype(int)
    per_res["partner"] = pair_table(pairs, len(sequence)) + 1
    bpp = pair_probabilities(sequence, p, settings.slope, settings.intercept)
    confidence = {(i, j): float(bpp[i - 1, j - 1]) for i, j in pairs}
    per_res["pair_probability"] = [
        float(bpp[k, j - 1]) if j > 0 else np.nan for k, j in enumerate(per_res["partner"])]
    crossing = len(nested_part(pairs, len(sequence))) < len(pairs)
    return CSFoldResult(sequence, pairs, chosen, energy, table, per_res, confidence, crossing)
