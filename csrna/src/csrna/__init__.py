"""csrna: RNA secondary structure, ensembles and per-nucleotide annotations from NMR chemical
shifts (CS-Fold, CS-BME, CS-Annotate)."""

__version__ = "0.1.0"
