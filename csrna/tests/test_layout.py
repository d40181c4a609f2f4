"""The workflow layout (csrna.io / fold / ensemble / cli) and the old flat import paths."""

from __future__ import annotations

import importlib
import pickle

import pytest

import csrna


@pytest.mark.parametrize(("old", "new"), sorted(csrna.MOVED_MODULES.items()))
def test_old_module_names_are_the_new_modules(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def test_old_paths_keep_names_and_pickles():
    from csrna.csfold import cs_fold as old_fold
    from csrna.fold import cs_fold
    from csrna.folding import Candidate

    assert old_fold is cs_fold
    c = Candidate("mfe", True, ((1, 9),), -1.0)
    assert Candidate.__module__ == "csrna.fold.folding"
    assert pickle.loads(pickle.dumps(c)) == c


def test_packages_export_their_workflow_entry_points():
    from csrna.cli import app
    from csrna.ensemble import match_observables, predict_library
    from csrna.io import read_shift_entry, write_bpseq

    assert callable(app) and callable(match_observables) and callable(predict_library)
    assert callable(read_shift_entry) and callable(write_bpseq)
