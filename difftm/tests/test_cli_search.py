"""`difftm search` and `difftm peaks` from the command line, including a real kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import starfile
from typer.testing import CliRunner

from difftm.cli.main import app
from difftm.search.results import load_results

from search_helpers import blob_volume, white_noise, write_inputs
from test_search_engine import PLANTS, _planted

runner = CliRunner()


def _search_args(mic, tpl, out, *extra):
    return ["search", str(mic), str(tpl), "--output", str(out), "--pixel-size", "2.0",
            "--defocus-u", "9000", "--defocus-range", "0", "--out-of-plane-step", "30",
            "--in-plane-step", "30", "--no-whiten", "--device", "cpu", *extra]


def test_search_then_peaks_writes_relion_star_and_csv(tmp_path):
    image, vol, _ = _planted(tmp_path, seed=5)
    mic, tpl = write_inputs(tmp_path, image, vol, 2.0)
    out = tmp_path / "run"
    res = runner.invoke(app, _search_args(mic, tpl, out, "--batch-size", "16"))
    assert res.exit_code == 0, res.output
    for name in ("snr.mrc", "zscore.mrc", "sigma.mrc", "results.npz", "config.yaml"):
        assert (out / name).exists()
    star = tmp_path / "particles.star"
    res = runner.invoke(app, ["peaks", str(out), "--output", str(star), "--metric", "snr"])
    assert res.exit_code == 0, res.output
    blocks = starfile.read(star)
    parts = blocks["particles"]
    assert {"rlnCoordinateX", "rlnCoordinateY", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi",
            "rlnDefocusU", "rlnAutopickFigureOfMerit"} <= set(parts.columns)
    assert float(blocks["optics"]["rlnVoltage"].iloc[0]) == 300.0
    found = {(int(y), int(x)) for x, y in zip(parts["rlnCoordinateX"], parts["rlnCoordinateY"],
                                               strict=True)}
    for (y, x), _ in PLANTS:
        assert (y, x) in found
    table = pd.read_csv(star.with_suffix(".csv"))
    assert star.with_suffix(".html").exists()
    assert (tmp_path / "particles_figures" / "survival.png").exists()
    for col in ("snr", "zscore", "neg_log_p", "called_zscore", "called_snr", "called_pvalue",
                "called_gev", "mean", "sigma", "x_angstrom"):
        assert col in table.columns
    # refuses to overwrite, one line
    res = runner.invoke(app, ["peaks", str(out), "--output", str(star)])
    assert res.exit_code != 0
    assert "exists" in res.output and "Traceback" not in res.output


def test_search_config_file_and_overrides(tmp_path):
    mic, tpl = write_inputs(tmp_path, white_noise((64, 64), 1), blob_volume(24), 2.0)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"micrograph: {mic}\ntemplate: {tpl}\noutput: {tmp_path / 'o'}\n"
                   "pixel_size: 2.0\ndefocus_u: 9000\ndefocus_range: 0\n"
                   "out_of_plane_step: 60\nin_plane_step: 60\ndevice: cpu\n")
    res = runner.invoke(app, ["search", "--config", str(cfg), "--in-plane-step", "90"])
    assert res.exit_code == 0, res.output
    written = (tmp_path / "o" / "config.yaml").read_text()
    assert "in_plane_step: 90.0" in written
    bad = tmp_path / "bad.yaml"
    bad.write_text("pixel_size: -1\n")
    res = runner.invoke(app, ["search", "--config", str(bad)])
    assert res.exit_code == 2
    assert "Traceback" not in res.output


def test_search_bad_inputs_exit_with_one_line(tmp_path):
    mic, tpl = write_inputs(tmp_path, white_noise((16, 16), 1), blob_volume(24), 2.0)
    res = runner.invoke(app, _search_args(mic, tpl, tmp_path / "o"))
    assert res.exit_code == 2
    assert "smaller than the template" in res.output
    res = runner.invoke(app, _search_args(tmp_path / "missing.mrc", tpl, tmp_path / "o"))
    assert res.exit_code == 2 and "not found" in res.output


def test_kill_dash_nine_then_resume_gives_identical_results(tmp_path):
    image, vol, _ = _planted(tmp_path, seed=6)
    mic, tpl = write_inputs(tmp_path, image, vol, 2.0)
    # a finer in-plane step (about 2,800 positions in chunks of 32) so the run outlives the kill
    extra = ("--batch-size", "4", "--chunk-batches", "2", "--in-plane-step", "6")
    ref = tmp_path / "ref"
    res = runner.invoke(app, _search_args(mic, tpl, ref, *extra))
    assert res.exit_code == 0, res.output
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "difftm.cli.main",
           *_search_args(mic, tpl, out, *extra)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while not (out / "checkpoint.npz").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    killed = proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed, "search finished before it could be killed; make it longer"
    assert not (out / "results.npz").exists()
    res = runner.invoke(app, _search_args(mic, tpl, out, *extra))
    assert res.exit_code == 0, res.output
    a, b = load_results(ref), load_results(out)
    assert b.metadata["timings"]["resumed_from"] > 0
    for name in a.maps:
        np.testing.assert_array_equal(a.maps[name], b.maps[name])
    np.testing.assert_array_equal(a.best_index, b.best_index)
