"""csrna: RNA secondary structure, ensembles and per-nucleotide annotations from NMR chemical
shifts (CS-Fold, CS-BME, CS-Annotate).

The package is grouped by workflow; each sub-package's docstring gives its reading order:

* :mod:`csrna.io` - shift files (tables, NMR-STAR 3.x), referencing check, structure files;
* :mod:`csrna.fold` - CS-Fold (imputation, classifier, restrained folding, selection);
* :mod:`csrna.ensemble` - CS-BME (shift prediction, libraries, Bayesian/maximum-entropy
  reweighting);
* :mod:`csrna.annotate` - CS-Annotate (per-nucleotide annotations);
* :mod:`csrna.cli` - the ``csrna`` command;
* :mod:`csrna.grouping` - sequence-identity groups used by the benchmarks;
  :mod:`csrna.threads` - BLAS thread limiting.

The flat module names of earlier versions (``csrna.csfold``, ``csrna.folding``,
``csrna.cli_fold``, ...) still import: they are aliases of the same module objects (so
pickles and monkeypatching keep working).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

#: Old flat module -> module of the workflow layout.
MOVED_MODULES: dict[str, str] = {
    "csrna.csfold": "csrna.fold.pipeline", "csrna.folding": "csrna.fold.folding",
    "csrna.probknot": "csrna.fold.probknot", "csrna.classifier": "csrna.fold.classifier",
    "csrna.network": "csrna.fold.network", "csrna.features": "csrna.fold.features",
    "csrna.impute": "csrna.fold.impute", "csrna.fold_figure": "csrna.fold.figure",
    "csrna.nuclei": "csrna.io.nuclei", "csrna.nmrstar": "csrna.io.nmrstar",
    "csrna.referencing": "csrna.io.referencing", "csrna.bme": "csrna.ensemble.bme",
    "csrna.bme_io": "csrna.ensemble.bme_io", "csrna.library": "csrna.ensemble.library",
    "csrna.shiftpred": "csrna.ensemble.shiftpred",
    "csrna.ss_features": "csrna.ensemble.ss_features",
    "csrna.cli_fold": "csrna.cli.fold", "csrna.cli_ensemble": "csrna.cli.ensemble",
    "csrna.cli_errors": "csrna.cli.errors",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolve an old flat module name to the (same) module object at its new place."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102
        if fullname in MOVED_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):  # noqa: D102
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module) -> None:  # noqa: D102
        return None


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
