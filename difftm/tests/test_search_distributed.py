"""Split searches: in-process parts, a Dask LocalCluster, and resuming from finished parts."""

from __future__ import annotations

import numpy as np
import pytest

from difftm.search.distributed import PARTS_DIR, run_search_distributed, search_part
from difftm.search.engine import run_search

from search_helpers import write_inputs
from test_search_engine import _config, _planted


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    image, vol, _ = _planted(tmp, seed=12)
    mic, tpl = write_inputs(tmp, image, vol, 2.0)
    ref = run_search(_config(tmp, mic, tpl, "ref", batch_size=8))
    return tmp, mic, tpl, ref


def _same(a, b):
    np.testing.assert_array_equal(a.best_index, b.best_index)
    for name in a.maps:  # bit-identical however the search was split
        np.testing.assert_array_equal(a.maps[name], b.maps[name])


def test_parts_in_process_match_a_single_run(inputs):
    tmp, mic, tpl, ref = inputs
    res = run_search_distributed(_config(tmp, mic, tpl, "parts", batch_size=8), n_parts=7)
    assert res.metadata["timings"]["parts"] >= 5
    _same(ref, res)
    assert not list((tmp / "parts" / PARTS_DIR).glob("*.npz"))


def test_finished_parts_are_reused_after_a_crash(inputs, monkeypatch):
    tmp, mic, tpl, ref = inputs
    cfg = _config(tmp, mic, tpl, "crashparts", batch_size=8)
    import difftm.search.distributed as dist

    calls = {"n": 0}
    real = dist.search_part

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker died")
        return real(*args, **kwargs)

    monkeypatch.setattr(dist, "search_part", flaky)
    with pytest.raises(RuntimeError):
        run_search_distributed(cfg, n_parts=5)
    assert len(list((tmp / "crashparts" / PARTS_DIR).glob("*.npz"))) == 2
    calls["n"] = 100
    res = run_search_distributed(cfg, n_parts=5)
    assert calls["n"] == 100 + 3  # only the three missing parts ran again
    _same(ref, res)


def test_search_part_covers_only_its_range(inputs):
    tmp, mic, tpl, ref = inputs
    cfg = _config(tmp, mic, tpl, "x", batch_size=8)
    arrays = search_part(cfg.model_dump(mode="json"), 16, 40, 8, "cpu")
    assert int(arrays["count"]) == 24
    got = arrays["best_index"]
    assert got.min() >= 16 and got.max() < 40


@pytest.mark.slow
def test_dask_local_cluster_matches_a_single_run(inputs):
    pytest.importorskip("distributed")
    tmp, mic, tpl, ref = inputs
    res = run_search_distributed(_config(tmp, mic, tpl, "dask", batch_size=8),
                                 scheduler="local", n_parts=4, n_workers=2)
    assert res.metadata["timings"]["scheduler"] == "local"
    _same(ref, res)
