"""Datasets (issue 14): micrographs_ctf.star / CTFFIND / glob inputs, `difftm search
--micrographs` with one sub-folder per micrograph, `difftm peaks DIR`, skip and resume,
kill -9 in the middle of a dataset."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import starfile
import torch
from typer.testing import CliRunner

from difftm.cli.main import app
from difftm.dataset.inputs import read_ctffind, read_micrographs, read_micrographs_star
from difftm.dataset.run import MANIFEST_NAME, build_dataset, load_manifest, run_dataset
from difftm.geometry.grids import orientation_grid
from difftm.io.mrc import write_mrc
from difftm.search.config import SearchConfig
from difftm.search.engine import build_correlator
from difftm.search.results import load_results

from search_helpers import blob_volume, white_noise

runner = CliRunner()
PX = 2.0
SHAPE = (128, 176)
#: (defocus U, defocus V, angle) per micrograph: different defocus and astigmatism
CTFS = [(9000.0, 9000.0, 0.0), (13000.0, 11500.0, 30.0), (16000.0, 14500.0, 75.0)]
#: planted (y, x, search index) per micrograph
PLANTS = [[(40, 50, 37), (90, 120, 301)], [(45, 130, 480), (85, 60, 122)],
          [(50, 80, 200), (88, 140, 15)]]

CTFFIND4 = "\n".join([
    "# Output from CTFFind version 4.1.14, run on 2024-05-01 10:00:00",
    "# Input file: /data/mic_a.mrc ; Number of micrographs: 1",
    "# Pixel size: 2.000 Angstroms ; acceleration voltage: 200.0 keV ; spherical aberration:"
    " 2.70 mm ; amplitude contrast: 0.10",
    "# Box size: 512 pixels ; min. res.: 30.0 Angstroms ; max. res.: 5.0 Angstroms ; min. "
    "def.: 5000.0 um; max. def. 50000.0 um",
    "# Columns: #1 - micrograph number; #2 - defocus 1 [Angstroms]; #3 - defocus 2; #4 - "
    "azimuth of astigmatism; #5 - additional phase shift [radians]; #6 - cross correlation; "
    "#7 - spacing (in Angstroms) up to which CTF rings were fit successfully",
    "1.000000 {du} {dv} {ang} {ps} 0.123 4.5", ""])
#: CTFFIND5 adds columns after the fit resolution (sample thickness ...)
CTFFIND5 = CTFFIND4.replace("CTFFind version 4.1.14", "CTFFind version 5.0.2").replace(
    "successfully", "successfully; #8 - estimated tilt axis angle; #9 - estimated tilt "
    "angle ; #10 - estimated sample thickness (in Angstroms)").replace(
    "0.123 4.5", "0.123 4.5 0.0 0.0 1200.0")


def _templates(vol, du, dv, ang, idx):
    cfg = SearchConfig(micrograph="x.mrc", template="y.mrc", output="o", pixel_size=PX,
                       defocus_u=du, defocus_v=dv, defocus_angle=ang, defocus_range=0,
                       whiten=False)
    corr = build_correlator(cfg, white_noise(SHAPE, 99), vol, orientation_grid(30.0, 30.0),
                            torch.zeros(1, dtype=torch.float64), torch.device("cpu"))
    return corr.templates(torch.tensor(idx))


def _plant_clipped(image, template, y, x, amplitude):
    """Add ``amplitude * template`` centred at (y, x); CTF fringes beyond the edge cut off."""
    d = template.shape[0]
    y0, x0 = y - d // 2, x - d // 2
    ys, xs = slice(max(y0, 0), min(y0 + d, image.shape[0])), slice(max(x0, 0), min(
        x0 + d, image.shape[1]))
    image[ys, xs] += amplitude * template[ys.start - y0 : ys.stop - y0,
                                          xs.start - x0 : xs.stop - x0]


def _make_project(root):
    """A RELION-like project: MotionCorr/job002/*.mrc, CtfFind/job003/micrographs_ctf.star."""
    vol = blob_volume(24, seed=11)
    mics = root / "MotionCorr" / "job002" / "Movies"
    mics.mkdir(parents=True)
    names = []
    for k, ((du, dv, ang), plants) in enumerate(zip(CTFS, PLANTS, strict=True)):
        image = white_noise(SHAPE, 40 + k)
        temps = _templates(vol, du, dv, ang, [p[2] for p in plants])
        for (y, x, _), t in zip(plants, temps, strict=True):
            _plant_clipped(image, t.numpy(), y, x, 30.0)
        write_mrc(mics / f"mic_{k}.mrc", image, PX, overwrite=True)
        names.append(f"MotionCorr/job002/Movies/mic_{k}.mrc")
    write_mrc(root / "template.mrc", vol, PX, overwrite=True)
    star = root / "CtfFind" / "job003" / "micrographs_ctf.star"
    star.parent.mkdir(parents=True)
    optics = pd.DataFrame({
        "rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
        "rlnMicrographOriginalPixelSize": [1.0], "rlnVoltage": [300.0],
        "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.07],
        "rlnMicrographPixelSize": [PX]})
    micrographs = pd.DataFrame({
        "rlnMicrographName": names, "rlnOpticsGroup": [1, 1, 1],
        "rlnCtfImage": [n.replace(".mrc", ".ctf:mrc") for n in names],
        "rlnDefocusU": [c[0] for c in CTFS], "rlnDefocusV": [c[1] for c in CTFS],
        "rlnCtfAstigmatism": [c[0] - c[1] for c in CTFS],
        "rlnDefocusAngle": [c[2] for c in CTFS], "rlnCtfFigureOfMerit": [0.2] * 3,
        "rlnCtfMaxResolution": [4.0] * 3})
    starfile.write({"optics": optics, "micrographs": micrographs}, star, overwrite=True)
    return star, root / "template.mrc"


def _small_settings(tpl) -> dict:
    """Search settings of the resume tests: a coarse grid, small batches and chunks."""
    return dict(template=tpl, defocus_range=0.0, out_of_plane_step=30.0, in_plane_step=30.0,
                whiten=False, device="cpu", threads=1, batch_size=8, chunk_batches=4)


def _dataset_args(star, tpl, out, *extra):
    return ["search", "--micrographs", str(star), str(tpl), "--output", str(out),
            "--defocus-range", "0", "--out-of-plane-step", "30", "--in-plane-step", "30",
            "--no-whiten", "--device", "cpu", "--threads", "1", "--batch-size", "8", *extra]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    star, tpl = _make_project(root)
    out = root / "ref"
    res = runner.invoke(app, _dataset_args(star, tpl, out))
    assert res.exit_code == 0, res.output
    return root, star, tpl, out


# --- readers -----------------------------------------------------------------------------

def test_ctffind4_and_5_outputs_are_read(tmp_path):
    for text in (CTFFIND4, CTFFIND5):
        path = tmp_path / "mic_ctf.txt"
        path.write_text(text.format(du=12345.6, dv=11000.5, ang=33.3, ps=math.pi / 2))
        got = read_ctffind(path)
        assert got["defocus_u"] == 12345.6 and got["defocus_v"] == 11000.5
        assert got["defocus_angle"] == 33.3
        assert got["phase_shift"] == pytest.approx(90.0)
        assert (got["pixel_size"], got["voltage"], got["cs"], got["amplitude_contrast"]) == (
            2.0, 200.0, 2.7, 0.10)
    bad = tmp_path / "bad.txt"
    bad.write_text("hello\n")
    with pytest.raises(ValueError, match="not CTFFIND output"):
        read_ctffind(bad)
    two = tmp_path / "two.txt"
    two.write_text(CTFFIND4.format(du=1, dv=1, ang=0, ps=0) + "2 1 1 0 0 0.1 4\n")
    with pytest.raises(ValueError, match="found 2"):
        read_ctffind(two)


def test_relion_star_paths_optics_and_missing_micrograph(tmp_path):
    star, _ = _make_project(tmp_path)
    entries, optics = read_micrographs_star(star)
    assert [e.path for e in entries] == [
        tmp_path / "MotionCorr" / "job002" / "Movies" / f"mic_{k}.mrc" for k in range(3)]
    assert entries[1].name == "MotionCorr/job002/Movies/mic_1.mrc"  # kept verbatim
    assert (entries[1].defocus_u, entries[1].defocus_v, entries[1].defocus_angle) == CTFS[1]
    assert (entries[2].voltage, entries[2].cs, entries[2].amplitude_contrast,
            entries[2].pixel_size) == (300.0, 2.7, 0.07, PX)
    assert entries[0].phase_shift is None and len(optics) == 1
    # per-micrograph phase shift and B-factor where present; an explicit project folder
    blocks = starfile.read(star)
    blocks["micrographs"]["rlnPhaseShift"] = [0.0, 45.0, 90.0]
    blocks["micrographs"]["rlnCtfBfactor"] = [0.0, 10.0, 20.0]
    moved = tmp_path / "elsewhere.star"
    starfile.write(blocks, moved, overwrite=True)
    entries, _ = read_micrographs_star(moved, project_dir=tmp_path)
    assert [e.phase_shift for e in entries] == [0.0, 45.0, 90.0]
    assert entries[2].ctf_bfactor == 20.0
    (tmp_path / "MotionCorr" / "job002" / "Movies" / "mic_1.mrc").unlink()
    with pytest.raises(FileNotFoundError) as err:
        read_micrographs_star(star)
    assert "micrograph MotionCorr/job002/Movies/mic_1.mrc not found" in str(err.value)
    assert "\n" not in str(err.value)


def test_two_optics_groups_reach_the_search_and_the_combined_star(project, tmp_path):
    root, star, tpl, _ = project
    blocks = starfile.read(star)
    optics = pd.concat([blocks["optics"], blocks["optics"]], ignore_index=True)
    optics.loc[1, ["rlnOpticsGroup", "rlnOpticsGroupName", "rlnVoltage"]] = [
        2, "opticsGroup2", 200.0]
    blocks["optics"] = optics
    blocks["micrographs"]["rlnOpticsGroup"] = [1, 2, 2]
    two = root / "CtfFind" / "job003" / "two_groups.star"
    starfile.write(blocks, two, overwrite=True)
    out = tmp_path / "two"
    res = runner.invoke(app, _dataset_args(two, tpl, out))
    assert res.exit_code == 0, res.output
    assert [load_results(out / f"mic_{k}").metadata["voltage"] for k in range(3)] == [
        300.0, 200.0, 200.0]
    res = runner.invoke(app, ["peaks", str(out), "--no-report"])
    assert res.exit_code == 0, res.output
    got = starfile.read(out / "particles.star")
    assert list(got["optics"]["rlnOpticsGroupName"]) == ["opticsGroup1", "opticsGroup2"]
    groups = dict(zip(got["particles"]["rlnMicrographName"], got["particles"]["rlnOpticsGroup"],
                      strict=True))
    assert groups["MotionCorr/job002/Movies/mic_0.mrc"] == 1
    assert groups["MotionCorr/job002/Movies/mic_2.mrc"] == 2
    own = starfile.read(out / "mic_2" / "particles.star")
    assert list(own["optics"]["rlnVoltage"]) == [200.0]


def test_relion_30_star_without_optics(tmp_path):
    star, _ = _make_project(tmp_path)
    blocks = starfile.read(star)
    mics = blocks["micrographs"].drop(columns=["rlnOpticsGroup"])
    mics["rlnVoltage"], mics["rlnSphericalAberration"] = 300.0, 2.7
    mics["rlnAmplitudeContrast"] = 0.1
    old = tmp_path / "CtfFind" / "job003" / "relion30.star"
    starfile.write({"": mics}, old, overwrite=True)
    entries, optics = read_micrographs_star(old)
    assert len(entries) == 3 and optics.empty
    assert (entries[0].voltage, entries[0].amplitude_contrast, entries[0].pixel_size) == (
        300.0, 0.1, None)


def test_glob_with_one_ctf_or_ctffind_beside_each_micrograph(tmp_path):
    for k in range(2):
        write_mrc(tmp_path / f"m{k}.mrc", white_noise((64, 64), k), PX)
    entries, _ = read_micrographs(str(tmp_path / "m*.mrc"), {"defocus_u": 10000.0})
    assert [e.defocus_v for e in entries] == [10000.0, 10000.0]
    with pytest.raises(FileNotFoundError, match="no CTFFIND output"):
        read_micrographs(str(tmp_path / "m*.mrc"))
    for k in range(2):
        (tmp_path / f"m{k}_ctf.txt").write_text(
            CTFFIND4.format(du=10000 + k, dv=9000, ang=5, ps=0))
    entries, _ = read_micrographs(str(tmp_path / "m*.mrc"))
    assert [e.defocus_u for e in entries] == [10000.0, 10001.0]
    assert entries[0].voltage == 200.0 and entries[0].ctf_source == "m0_ctf.txt"
    with pytest.raises(FileNotFoundError, match="no micrograph matches"):
        read_micrographs(str(tmp_path / "none*.mrc"), {"defocus_u": 1.0})


# --- the planted dataset -----------------------------------------------------------------

def test_planted_dataset_each_micrograph_with_its_own_ctf(project):
    root, star, tpl, out = project
    manifest = load_manifest(out)
    assert [r["folder"] for r in manifest["micrographs"]] == ["mic_0", "mic_1", "mic_2"]
    for k, (du, dv, ang) in enumerate(CTFS):
        md = load_results(out / f"mic_{k}").metadata
        assert (md["defocus_u"], md["defocus_v"], md["defocus_angle"]) == (du, dv, ang)
        assert (out / f"mic_{k}" / "config.yaml").exists()
    res = runner.invoke(app, ["peaks", str(out)])
    assert res.exit_code == 0, res.output
    blocks = starfile.read(out / "particles.star")
    parts, optics = blocks["particles"], blocks["optics"]
    assert float(optics["rlnMicrographPixelSize"].iloc[0]) == PX
    assert set(optics["rlnOpticsGroupName"]) == {"opticsGroup1"}
    found = {(n, int(y), int(x)) for n, x, y in zip(
        parts["rlnMicrographName"], parts["rlnCoordinateX"], parts["rlnCoordinateY"],
        strict=True)}
    truth = {(f"MotionCorr/job002/Movies/mic_{k}.mrc", y, x)
             for k, plants in enumerate(PLANTS) for (y, x, _) in plants}
    hits = {t for t in truth if any(f[0] == t[0] and abs(f[1] - t[1]) <= 2
                                    and abs(f[2] - t[2]) <= 2 for f in found)}
    recall, precision = len(hits) / len(truth), len(hits) / max(len(found), 1)
    assert recall == 1.0 and precision >= 0.8, (recall, precision, found)
    # defocus of each particle is its micrograph's
    for k, (du, _dv, ang) in enumerate(CTFS):
        rows = parts[parts["rlnMicrographName"] == f"MotionCorr/job002/Movies/mic_{k}.mrc"]
        assert (rows["rlnDefocusU"] == du).all() and (rows["rlnDefocusAngle"] == ang).all()
        own = starfile.read(out / f"mic_{k}" / "particles.star")["particles"]
        assert len(own) == len(rows)
    html = (out / "particles.html").read_text()
    assert "mic_2.mrc" in html and "called snr" in html and "<img" in html
    assert pd.read_csv(out / "particles.csv")["micrograph"].nunique() == 3
    res = runner.invoke(app, ["peaks", str(out)])  # never overwrites without --overwrite
    assert res.exit_code == 2 and "exists" in res.output
    # another output name: per-micrograph files follow it; no particle at all is fine
    res = runner.invoke(app, ["peaks", str(out), "--output", str(out / "strict.star"),
                              "--threshold", "1000", "--no-report"])
    assert res.exit_code == 0, res.output
    assert "wrote 0 particles" in res.output
    assert (out / "mic_1" / "strict.star").exists() and (out / "mic_1" / "strict.csv").exists()
    assert starfile.read(out / "strict.star", always_dict=True)["particles"].empty


def test_same_command_again_skips_finished_micrographs(project):
    root, star, tpl, out = project
    before = [(out / f"mic_{k}" / "results.npz").stat().st_mtime_ns for k in range(3)]
    res = runner.invoke(app, _dataset_args(star, tpl, out))
    assert res.exit_code == 0, res.output
    assert "0 searched now, 3 already done" in res.output
    assert [(out / f"mic_{k}" / "results.npz").stat().st_mtime_ns for k in range(3)] == before
    statuses = [r["status"] for r in load_manifest(out)["micrographs"]]
    assert statuses == ["skipped"] * 3


def test_another_dataset_in_the_same_folder_is_refused(project):
    root, star, tpl, out = project
    res = runner.invoke(app, _dataset_args(star, tpl, out, "--in-plane-step", "45"))
    assert res.exit_code == 2 and "holds another dataset" in res.output


def test_dataset_named_in_a_config_file(project, tmp_path):
    root, star, tpl, ref = project
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"micrographs: {star}\ntemplate: {tpl}\noutput: {tmp_path / 'ds'}\n"
                   "defocus_range: 0\nout_of_plane_step: 30\nin_plane_step: 30\n"
                   "whiten: false\ndevice: cpu\nthreads: 1\nbatch_size: 8\n")
    res = runner.invoke(app, ["search", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    for k in range(3):
        np.testing.assert_array_equal(load_results(ref / f"mic_{k}").maps["snr"],
                                      load_results(tmp_path / "ds" / f"mic_{k}").maps["snr"])


def test_dataset_cli_errors_are_one_line(project, tmp_path):
    root, star, tpl, _ = project
    res = runner.invoke(app, _dataset_args(star, tpl, tmp_path / "o", "--defocus-u", "9000"))
    assert res.exit_code == 2 and "comes from this STAR file" in res.output
    res = runner.invoke(app, _dataset_args(tmp_path / "nothing_*.mrc", tpl, tmp_path / "o"))
    assert res.exit_code == 2 and "no micrograph matches" in res.output
    res = runner.invoke(app, ["peaks", str(tmp_path / "o")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    res = runner.invoke(app, _dataset_args(star, tpl, tmp_path / "o", "--voltage", "200"))
    assert res.exit_code == 2 and "--voltage 200 contradicts micrographs_ctf.star" in res.output
    from difftm.search.lock import OutputLock

    with OutputLock(tmp_path / "busy", "dataset"):  # another dataset run works there
        res = runner.invoke(app, _dataset_args(star, tpl, tmp_path / "busy"))
    assert res.exit_code == 2 and "another difftm dataset" in res.output


def test_resume_of_a_partial_micrograph_and_a_different_split(project, tmp_path):
    """A micrograph stopped after a chunk resumes from its checkpoint, another is cut into
    orientation parts: maps identical to the reference run."""
    root, star, tpl, ref = project
    from difftm.search.engine import SearchInterrupted, run_search

    entries, optics = read_micrographs_star(star)
    settings = _small_settings(tpl)
    job = build_dataset(entries, settings, tmp_path / "ds", optics)
    with pytest.raises(SearchInterrupted):
        run_search(job.configs[1], stop_after_chunks=1)
    assert (tmp_path / "ds" / "mic_1" / "checkpoint.npz").exists()
    status = run_dataset(job)
    assert status[1]["resumed_from"] > 0
    split = build_dataset(entries, settings, tmp_path / "parts", optics)
    run_dataset(split, n_parts=3)
    for k in range(3):
        a = load_results(ref / f"mic_{k}")
        for other in (tmp_path / "ds", tmp_path / "parts"):
            b = load_results(other / f"mic_{k}")
            for name in a.maps:
                np.testing.assert_array_equal(a.maps[name], b.maps[name])
    assert (tmp_path / "ds" / MANIFEST_NAME).exists()


def test_kill_dash_nine_in_the_middle_of_a_dataset(project, tmp_path):
    root, star, tpl, ref = project
    out = tmp_path / "killed"
    # finer in-plane step for the killed run and its reference, so that it outlives the kill
    extra = ("--in-plane-step", "10", "--chunk-batches", "2")
    ref2 = tmp_path / "ref2"
    res = runner.invoke(app, _dataset_args(star, tpl, ref2, *extra))
    assert res.exit_code == 0, res.output
    cmd = [sys.executable, "-m", "difftm.cli.main", *_dataset_args(star, tpl, out, *extra)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while not ((out / "mic_0" / "results.npz").exists()
               and (out / "mic_1" / "checkpoint.npz").exists()) and time.time() < deadline:
        time.sleep(0.05)
    killed = proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed, "the dataset finished before it could be killed; make it longer"
    assert not (out / "mic_2" / "results.npz").exists()
    res = runner.invoke(app, _dataset_args(star, tpl, out, *extra))
    assert res.exit_code == 0, res.output
    assert "already done" in res.output and "resumed at" in res.output
    for k in range(3):
        a, b = load_results(ref2 / f"mic_{k}"), load_results(out / f"mic_{k}")
        for name in a.maps:
            np.testing.assert_array_equal(a.maps[name], b.maps[name])
    for folder in (ref2, out):
        res = runner.invoke(app, ["peaks", str(folder), "--no-report"])
        assert res.exit_code == 0, res.output
    assert (ref2 / "particles.star").read_text() == (out / "particles.star").read_text()
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".difftm.lock"))


def test_running_micrographs_are_read_from_lock_and_checkpoint(project, tmp_path):
    root, star, tpl, _ = project
    from difftm.dataset.run import running_micrographs
    from difftm.search.engine import SearchInterrupted, run_search
    from difftm.search.lock import OutputLock

    entries, optics = read_micrographs_star(star)
    settings = _small_settings(tpl)
    job = build_dataset(entries, settings, tmp_path / "ds", optics)
    with pytest.raises(SearchInterrupted):
        run_search(job.configs[2], stop_after_chunks=2)
    assert running_micrographs(job, {0, 1, 2}) == []  # nothing holds a lock
    with OutputLock(tmp_path / "ds" / "mic_2"), OutputLock(tmp_path / "ds" / "mic_0"):
        running = running_micrographs(job, {0, 1, 2})
    n_search = len(orientation_grid(30.0, 30.0))
    assert running == [(0, 0.0), (2, pytest.approx(64 / n_search))]


@pytest.mark.slow
def test_dataset_on_a_dask_local_cluster_matches(project, tmp_path):
    pytest.importorskip("distributed")
    root, star, tpl, ref = project
    res = runner.invoke(app, _dataset_args(star, tpl, tmp_path / "dask", "--scheduler",
                                           "local", "--n-workers", "2"))
    assert res.exit_code == 0, res.output
    # the client reports the micrographs running on workers while it waits
    entries, optics = read_micrographs_star(star)
    settings = dict(template=tpl, defocus_range=0.0, out_of_plane_step=30.0,
                    in_plane_step=5.0, whiten=False, device="cpu", threads=1, batch_size=8)
    seen = []
    run_dataset(build_dataset(entries, settings, tmp_path / "watched", optics),
                scheduler="local", n_workers=2, on_running=seen.append, interval=0.2)
    assert any(seen), "no running micrograph was reported"
    # orientation parts of each micrograph as the tasks
    res = runner.invoke(app, _dataset_args(star, tpl, tmp_path / "dask_parts", "--scheduler",
                                           "local", "--n-workers", "2", "--n-parts", "3"))
    assert res.exit_code == 0, res.output
    for k in range(3):
        a = load_results(ref / f"mic_{k}")
        for run in ("dask", "dask_parts"):
            b = load_results(tmp_path / run / f"mic_{k}")
            for name in a.maps:
                np.testing.assert_array_equal(a.maps[name], b.maps[name])


@pytest.mark.slow
def test_kill_dash_nine_of_a_dask_dataset_run_then_resume(project, tmp_path):
    """The client killed: its LocalCluster workers die with it, their locks are stale, the
    same command resumes the interrupted micrographs; maps as an uninterrupted run."""
    pytest.importorskip("distributed")
    root, star, tpl, _ = project
    extra = ("--in-plane-step", "6", "--scheduler", "local", "--n-workers", "2")
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "difftm.cli.main", *_dataset_args(star, tpl, out, *extra)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while not list(out.glob("mic_*/checkpoint.npz")) and time.time() < deadline:
        time.sleep(0.05)
    killed = proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed, "the dataset finished before it could be killed; make it longer"
    res = runner.invoke(app, _dataset_args(star, tpl, out, *extra))
    assert res.exit_code == 0, res.output
    ref = tmp_path / "ref"
    res = runner.invoke(app, _dataset_args(star, tpl, ref, "--in-plane-step", "6"))
    assert res.exit_code == 0, res.output
    for k in range(3):
        a, b = load_results(ref / f"mic_{k}"), load_results(out / f"mic_{k}")
        for name in a.maps:
            np.testing.assert_array_equal(a.maps[name], b.maps[name])
