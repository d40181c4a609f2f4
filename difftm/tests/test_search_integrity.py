"""Integrity of output folders: parts keyed by range, one search per folder (lock), atomic
config.yaml, no stale temporaries after a kill (issue 14, item 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

import difftm.search.distributed as dist
from difftm.cli.main import app
from difftm.search.distributed import PARTS_DIR, run_search_distributed
from difftm.search.engine import run_search, write_config
from difftm.search.lock import LOCK_NAME, STALE_SECONDS, OutputLock

from search_helpers import blob_volume, white_noise, write_inputs
from test_search_engine import _config, _planted

runner = CliRunner()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("integrity")
    image, vol, _ = _planted(tmp, seed=21)
    mic, tpl = write_inputs(tmp, image, vol, 2.0)
    ref = run_search(_config(tmp, mic, tpl, "ref", batch_size=8))
    return tmp, mic, tpl, ref


def _same(a, b):
    np.testing.assert_array_equal(a.best_index, b.best_index)
    for name in a.maps:
        np.testing.assert_array_equal(a.maps[name], b.maps[name])


def _crash_on_call(monkeypatch, n):
    calls = {"n": 0}
    real = dist.search_part

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise RuntimeError("worker died")
        return real(*args, **kwargs)

    monkeypatch.setattr(dist, "search_part", flaky)
    return calls


def test_resume_with_another_number_of_parts_covers_every_position(inputs, monkeypatch):
    """Parts were keyed by their index k only: resuming 5 parts as 3 took the first run's
    parts 0 and 1 for the new (longer) parts 0 and 1 and reported a search done with part of
    the positions and wrong maps."""
    tmp, mic, tpl, ref = inputs
    cfg = _config(tmp, mic, tpl, "reparts", batch_size=8)
    calls = _crash_on_call(monkeypatch, 3)
    with pytest.raises(RuntimeError):
        run_search_distributed(cfg, n_parts=5)
    assert len(list((tmp / "reparts" / PARTS_DIR).glob("*.npz"))) == 2
    calls["n"] = 100
    res = run_search_distributed(cfg, n_parts=3)
    assert res.metadata["n_search"] == ref.metadata["n_search"]
    assert res.metadata["timings"]["parts_this_run"] < res.metadata["timings"]["parts"]
    _same(ref, res)
    assert not list((tmp / "reparts" / PARTS_DIR).glob("*.npz"))


def test_plan_parts_reuses_finished_ranges_and_fills_gaps():
    from difftm.search.distributed import plan_parts

    ranges, reused = plan_parts(300, 96, [(0, 64), (32, 96), (128, 192)])
    assert reused == {(0, 64), (128, 192)}
    assert ranges == [(0, 64), (64, 128), (128, 192), (192, 288), (288, 300)]
    ranges, reused = plan_parts(100, 64, [])
    assert ranges == [(0, 64), (64, 100)] and not reused


def test_a_second_search_into_a_running_searchs_folder_is_refused(inputs):
    """Without a lock, a search started into a folder while another was starting there ran
    to the end and reported success; the first then wrote its own results over it."""
    tmp, mic, tpl, _ = inputs
    out = tmp / "race"
    second = {}

    def on_plan(plan):  # the first search is past its checks; start another one now
        try:
            second["result"] = run_search(_config(tmp, mic, tpl, "race", in_plane_step=45.0))
        except FileExistsError as err:
            second["error"] = str(err)

    first = run_search(_config(tmp, mic, tpl, "race", batch_size=8), on_plan=on_plan)
    assert "result" not in second, "both searches reported success in one folder"
    assert "is writing into this folder" in second["error"]
    assert "\n" not in second["error"]
    assert first.metadata["in_plane_step"] == 30.0
    assert not (out / LOCK_NAME).exists()  # released


def test_concurrent_search_from_the_command_line_exits_with_one_line(inputs):
    tmp, mic, tpl, _ = inputs
    out = tmp / "cli_lock"
    with OutputLock(out, "search"):  # held by this (live) process
        res = runner.invoke(app, ["search", str(mic), str(tpl), "--output", str(out),
                                  "--pixel-size", "2", "--defocus-u", "9000",
                                  "--defocus-range", "0", "--out-of-plane-step", "30",
                                  "--in-plane-step", "30", "--no-whiten", "--device", "cpu"])
    assert res.exit_code == 2
    assert "another difftm search" in res.output and "Traceback" not in res.output
    assert not (out / "results.npz").exists()


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    folder = tmp_path / "o"
    folder.mkdir()
    import socket

    (folder / LOCK_NAME).write_text(json.dumps(
        {"pid": proc.pid, "host": socket.gethostname(), "start": None, "token": "x"}))
    with OutputLock(folder):
        holder = json.loads((folder / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid()
    assert not (folder / LOCK_NAME).exists()
    # a lock of another host (a cluster node) is live while its heartbeat goes on...
    (folder / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "token": "y"}))
    with pytest.raises(FileExistsError, match="remove .*difftm.lock"):
        OutputLock(folder).acquire()
    # ... and stale once the heartbeat stopped for longer than STALE_SECONDS
    old = time.time() - STALE_SECONDS - 5
    os.utime(folder / LOCK_NAME, (old, old))
    with OutputLock(folder):
        pass
    assert not (folder / LOCK_NAME).exists()


def test_lock_heartbeat_refreshes_the_file(tmp_path, monkeypatch):
    import difftm.search.lock as lock

    monkeypatch.setattr(lock, "HEARTBEAT_SECONDS", 0.05)
    with OutputLock(tmp_path / "o") as held:
        old = time.time() - 1000
        os.utime(held.path, (old, old))
        time.sleep(0.3)
        assert time.time() - held.path.stat().st_mtime < 5


def test_config_yaml_is_written_atomically(tmp_path, monkeypatch):
    mic, tpl = write_inputs(tmp_path, white_noise((64, 64), 1), blob_volume(16), 2.0)
    cfg = _config(tmp_path, mic, tpl, "o")
    (tmp_path / "o").mkdir()
    write_config(tmp_path / "o", cfg)
    before = (tmp_path / "o" / "config.yaml").read_text()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    import difftm.io.atomic as atomic

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError):
        write_config(tmp_path / "o", cfg.model_copy(update={"in_plane_step": 45.0}))
    assert (tmp_path / "o" / "config.yaml").read_text() == before  # old file intact
    assert not list((tmp_path / "o").glob(".*.tmp"))


def test_stale_temporaries_of_a_killed_search_are_removed(inputs):
    """``kill -9`` during an atomic write leaves ``.<name>.<random>.tmp`` behind; the next
    search into the folder removes those of its own files (and only those)."""
    tmp, mic, tpl, _ = inputs
    out = tmp / "stale"
    (out / PARTS_DIR).mkdir(parents=True)
    stale = [out / ".checkpoint.npz.k3j2h1.tmp", out / ".snr.mrc.abc.tmp",
             out / PARTS_DIR / ".part_0000000000_0000000032_ab12.npz.x1.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    foreign = out / ".notes.txt.q.tmp"
    foreign.write_text("not ours")
    run_search(_config(tmp, mic, tpl, "stale", batch_size=8))
    assert not any(p.exists() for p in stale)
    assert foreign.exists()


def test_kill_dash_nine_leaves_a_lock_that_the_next_run_takes_over(inputs):
    tmp, mic, tpl, ref = inputs
    out = tmp / "killed"
    args = ["search", str(mic), str(tpl), "--output", str(out), "--pixel-size", "2",
            "--defocus-u", "9000", "--defocus-range", "0", "--out-of-plane-step", "30",
            "--in-plane-step", "30", "--no-whiten", "--device", "cpu", "--batch-size", "8"]
    code = ("import sys, time; from difftm.search import engine; "
            "real = engine.correlate_range\n"
            "def slow(*a, **k):\n    time.sleep(60)\n"
            "engine.correlate_range = slow\n"
            "from difftm.cli.main import app; sys.argv = ['difftm'] + sys.argv[1:]; app()")
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (out / "config.yaml").exists() and time.time() < deadline:
        time.sleep(0.05)
    assert (out / LOCK_NAME).exists()
    res = runner.invoke(app, args)  # refused while the first one lives
    assert res.exit_code == 2 and "is writing into this folder" in res.output
    proc.kill()
    proc.wait()
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    from difftm.search.results import load_results

    _same(ref, load_results(out))
    assert not (out / LOCK_NAME).exists()


def test_checkpoint_minutes_throttles_checkpoints_without_changing_results(inputs):
    tmp, mic, tpl, ref = inputs
    from difftm.search.engine import SearchInterrupted

    cfg = _config(tmp, mic, tpl, "throttled", batch_size=8, chunk_batches=4,
                  checkpoint_minutes=1000.0)
    assert cfg.fingerprint() == _config(tmp, mic, tpl, "x", batch_size=8).fingerprint()
    with pytest.raises(SearchInterrupted):
        run_search(cfg, stop_after_chunks=3)
    assert not (tmp / "throttled" / "checkpoint.npz").exists()  # not due yet
    often = cfg.model_copy(update={"checkpoint_minutes": 1e-9, "output": tmp / "often"})
    with pytest.raises(SearchInterrupted):
        run_search(often, stop_after_chunks=3)
    assert (tmp / "often" / "checkpoint.npz").exists()
    _same(ref, run_search(often))
    _same(ref, run_search(cfg))
