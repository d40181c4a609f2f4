"""The thread-count helper and the plain progress lines (units; the CLI is tested in
test_search_usability.py)."""

from __future__ import annotations

import io
import json

import pytest
import torch
from typer.testing import CliRunner

from difftm.cli.main import app
from difftm.cli.progress import PlainProgress, format_eta
from difftm.io.mrc import write_mrc
from difftm.threads import (
    apply_threads,
    available_cores,
    default_threads,
    idle_cpus,
    physical_cores,
)

from search_helpers import blob_volume


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_apply_threads_sets_torch_and_says_why(keep_threads, monkeypatch):
    assert apply_threads(1) == (1, "--threads")
    assert torch.get_num_threads() == 1
    monkeypatch.setenv("DIFFTM_THREADS", "3")
    assert default_threads() == (3, "DIFFTM_THREADS")
    monkeypatch.delenv("DIFFTM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert apply_threads(None) == (2, "OMP_NUM_THREADS") and torch.get_num_threads() == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads(idle=False) == (available_cores(), "physical cores")
    n, _ = default_threads()
    assert 1 <= n <= available_cores()
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="--threads"):
            apply_threads(bad)


def test_physical_cores_counts_cores_not_hyperthreads(tmp_path):
    # four logical CPUs on two cores of one package (two hyper-threads each)
    for cpu, core in enumerate((0, 1, 0, 1)):
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text("0\n")
        (topo / "core_id").write_text(f"{core}\n")
    assert physical_cores([0, 1, 2, 3], sysfs=tmp_path) == 2
    assert physical_cores([0, 2], sysfs=tmp_path) == 1
    assert physical_cores([0, 7], sysfs=tmp_path) == 2  # unreadable: count logical CPUs


def test_default_leaves_out_cores_busy_with_other_processes(tmp_path, monkeypatch):
    import difftm.threads as th

    for var in ("DIFFTM_THREADS", "OMP_NUM_THREADS"):  # the environment would win
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(th, "available_cores", lambda: 4)
    monkeypatch.setattr(th, "physical_cores", lambda: 4)
    monkeypatch.setattr(th, "_allowed_cpus", lambda: [0, 1, 2, 3])
    assert default_threads(idle=4.0) == (4, "physical cores")
    assert default_threads(idle=2.2) == (2, "4 physical cores, 2 busy with other processes")
    assert default_threads(idle=0.1) == (1, "4 physical cores, 3 busy with other processes")
    assert default_threads(idle=None) == (4, "physical cores")  # /proc/stat unreadable
    # a 2-CPU quota on a 64-CPU host (32 cores with two hyper-threads each), 30 CPUs idle
    monkeypatch.setattr(th, "available_cores", lambda: 2)
    monkeypatch.setattr(th, "physical_cores", lambda: 32)
    monkeypatch.setattr(th, "_allowed_cpus", lambda: list(range(64)))
    assert default_threads(idle=30.0) == (2, "physical cores")
    assert default_threads(idle=1.2) == (1, "2 physical cores, 1 busy with other processes")
    # the idle CPUs come from two /proc/stat samples
    stat = tmp_path / "stat"
    samples = iter([
        "cpu  1 1 1 1 1 1 1 1\ncpu0 100 0 0 900 0 0 0 0\ncpu1 100 0 0 900 0 0 0 0\n",
        # cpu0 fully busy, cpu1 idle for 100 jiffies
        "cpu  1 1 1 1 1 1 1 1\ncpu0 200 0 0 900 0 0 0 0\ncpu1 100 0 0 1000 0 0 0 0\n",
    ])
    stat.write_text(next(samples))
    idle = idle_cpus([0, 1], interval=0.0, stat=stat,
                     sleep=lambda s: stat.write_text(next(samples)))
    assert idle == pytest.approx(1.0)
    assert idle_cpus([0, 1], stat=tmp_path / "missing") is None


def test_plain_progress_prints_every_step_or_interval():
    now = [0.0]
    out = io.StringIO()
    p = PlainProgress("search", 1000, unit="orient/s", per_unit=2, interval=30,
                      fraction_step=0.05, stream=out, clock=lambda: now[0])
    p.update(0)  # origin
    lines = []
    for done in range(10, 1001, 10):  # 1% per second
        now[0] += 1.0
        p.update(done)
    lines = out.getvalue().splitlines()
    assert len(lines) == 20  # every 5%, the last at 100%
    assert lines[0] == "search 5.0% 5 orient/s ETA 0:01:35"
    assert lines[-1].startswith("search 100.0% 5 orient/s ETA 0:00:00")
    # slow progress: a line every interval even without 5% of progress
    out2 = io.StringIO()
    slow = PlainProgress("search", 10_000, interval=30, stream=out2, clock=lambda: now[0])
    slow.update(0)
    for done in range(1, 50):
        now[0] += 10.0
        slow.update(done)
    assert len(out2.getvalue().splitlines()) == 16  # 490 s / 30 s
    assert format_eta(3725) == "1:02:05" and format_eta(float("nan")) == "?"


def test_simulate_micrograph_records_threads(tmp_path, keep_threads):
    tpl = tmp_path / "tpl.mrc"
    write_mrc(tpl, blob_volume(16, seed=1), 2.0)
    out = tmp_path / "mic.mrc"
    res = CliRunner().invoke(app, [
        "simulate", "micrograph", str(tpl), "-o", str(out), "--truth",
        str(tmp_path / "truth.star"), "--shape", "64", "64", "--n-particles", "2",
        "--defocus", "10000", "--fluence", "40", "--threads", "1", "--min-separation", "10"])
    assert res.exit_code == 0, res.output
    assert json.loads(out.with_suffix(".json").read_text())["threads"] == 1
    assert torch.get_num_threads() == 1
    # a calibrated template header that disagrees with --pixel-size is refused
    res = CliRunner().invoke(app, [
        "simulate", "micrograph", str(tpl), "-o", str(tmp_path / "m2.mrc"), "--truth",
        str(tmp_path / "t2.star"), "--shape", "64", "64", "--n-particles", "1",
        "--defocus", "10000", "--fluence", "40", "--pixel-size", "2.5"])
    assert res.exit_code == 2 and "does not match" in res.output
