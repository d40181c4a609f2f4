"""Output safety of every writing ``difftm`` command (issue 15): a full disk, a read-only
folder, a parent that is a file, a failure between the moves of a multi-file unit and a
damaged results bundle each end in one ``error:`` line naming the file, with the previous
outputs intact and no half-written or temporary file left.

A full disk is simulated two ways: a real tmpfs of a few MiB filled to the brim (needs
root and ``mount``; skipped otherwise) and, anywhere on Linux, temporary files that are
symbolic links to ``/dev/full`` (every write fails with ENOSPC inside the real writers:
mrcfile, pandas, numpy, matplotlib).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cli_checks import error_line
from disk_helpers import CAN_MOUNT, FullDisk, full_disk_fixture
from disk_helpers import run as _run
from disk_helpers import umount as _umount
from typer.testing import CliRunner

from difftm.cli.main import app
from difftm.io.mrc import write_mrc

from search_helpers import blob_volume, plant, white_noise

runner = CliRunner()
PX = 2.0
MODEL = ("ATOM      1  CA  ALA A   1       0.000   0.000   0.000  1.00 20.00           C\n"
         "ATOM      2  CA  ALA A   2       3.800   0.000   0.000  1.00 20.00           C\n"
         "END\n")


@dataclass(frozen=True)
class Inputs:
    """A tiny planted micrograph, its template, one finished search and its particles."""

    root: Path
    tpl: Path
    mic: Path
    model: Path
    run: Path
    particles: Path


def _search_args(mic: Path, tpl: Path, out: Path, *extra: str) -> list[str]:
    return ["search", str(mic), str(tpl), "-o", str(out), "--defocus-u", "0",
            "--defocus-range", "0", "--out-of-plane-step", "45", "--in-plane-step", "60",
            "--device", "cpu", "--threads", "1", "--no-whiten", "--cs", "0",
            "--amplitude-contrast", "0.99", *extra]


@pytest.fixture(scope="module")
def inp(tmp_path_factory) -> Inputs:
    root = tmp_path_factory.mktemp("safety")
    vol = blob_volume(16, seed=2)
    tpl, mic, model = root / "tpl.mrc", root / "mic.mrc", root / "model.pdb"
    write_mrc(tpl, vol, PX)
    image = white_noise((96, 96), 3)
    proj = vol.sum(0)
    proj = (proj - proj.mean()) / proj.std()
    plant(image, proj, 30, 30, 1.5)
    plant(image, proj, 66, 62, 1.5)
    write_mrc(mic, image.astype(np.float32), PX)
    model.write_text(MODEL)
    run = root / "run"
    done = runner.invoke(app, _search_args(mic, tpl, run))
    assert done.exit_code == 0, done.output
    particles = root / "p.star"
    done = runner.invoke(app, ["peaks", str(run), "-o", str(particles), "--no-report"])
    assert done.exit_code == 0, done.output
    _later_inputs(root, mic)
    return Inputs(root, tpl, mic, model, run, particles)


def _later_inputs(root: Path, mic: Path) -> None:
    """Inputs of the commands added after issue 15's first pass: a second template (classify,
    constrained-search) and eight well-separated particles on the micrograph (reconstruct)."""
    from difftm.io.star import make_optics_table, make_particles_table, write_particles_star

    write_mrc(root / "tpl_b.mrc", blob_volume(16, seed=5), PX)
    xy = np.array([(20, 20), (20, 50), (20, 78), (50, 20), (50, 50), (50, 78), (78, 20),
                   (78, 78)], float)
    rng = np.random.default_rng(1)
    cols = {"x": xy[:, 0], "y": xy[:, 1], "rot": rng.uniform(0, 360, 8),
            "tilt": rng.uniform(0, 180, 8), "psi": rng.uniform(0, 360, 8),
            "defocus_u": np.full(8, 9000.0), "defocus_v": np.full(8, 9000.0),
            "defocus_angle": np.zeros(8)}
    write_particles_star(root / "rec.star", make_particles_table(cols, micrograph_name=str(mic)),
                         make_optics_table(PX))


def _reconstruct_args(i: Inputs, out: Path, *extra: str) -> list[str]:
    return ["reconstruct", str(i.root / "rec.star"), "-o", str(out), "--box", "16",
            "--threads", "1", "--overwrite", *extra]


def _classify_args(i: Inputs, out: Path, *extra: str) -> list[str]:
    return ["classify", str(i.run), "--particles", str(i.particles), "-t", str(i.tpl),
            str(i.root / "tpl_b.mrc"), "-o", str(out), "--steps", "2", "--starts", "1",
            "--bootstrap", "0", "--threads", "1", "--overwrite", *extra]


def _constrained_args(i: Inputs, out: Path, *extra: str) -> list[str]:
    return ["constrained-search", str(i.run), str(i.root / "tpl_b.mrc"), "--constrain-to",
            str(i.particles), "-o", str(out), "--radius", "4", "--cone", "2", "--angle-step",
            "2", "--threads", "1", "--overwrite", *extra]


def _mwlimit_args(json_path: Path, figure: Path) -> list[str]:
    return ["mwlimit", "--mass", "50", "--exposure", "none", "--detector", "perfect",
            "--json", str(json_path), "--figure", str(figure), "--overwrite"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# --- a full disk --------------------------------------------------------------------------

full_disk = full_disk_fixture("4m")


def _previous(paths: list[Path]) -> dict[Path, bytes]:
    for p in paths:
        p.write_bytes(b"previous " + p.name.encode())
    return {p: p.read_bytes() for p in paths}


def _check_disk_full(result, disk: FullDisk, before: dict[str, bytes], names: str) -> None:
    line = error_line(result)
    assert "no space left" in line.lower(), line
    assert any(n in line for n in names.split()), f"{names} not named in: {line}"
    after = snapshot(disk.folder)
    after.pop("filler.bin", None)
    before = {k: v for k, v in before.items() if k != "filler.bin"}
    assert after == before, f"files changed or left behind: {sorted(set(after) ^ set(before))}"
    assert not [p for p in disk.folder.rglob(".*") if p.is_file() or p.is_symlink()], (
        "temporary files left behind")


def test_orientations_on_a_full_disk(full_disk):
    out = full_disk.folder / "o.txt"
    _previous([out])
    before = snapshot(full_disk.folder)
    full_disk.fill(0)
    result = runner.invoke(app, ["orientations", "-o", str(out), "--overwrite",
                                 "--out-of-plane-step", "10", "--in-plane-step", "10"])
    _check_disk_full(result, full_disk, before, "o.txt")


def test_simulate_template_on_a_full_disk(inp, full_disk):
    out = full_disk.folder / "t.mrc"
    _previous([out])
    before = snapshot(full_disk.folder)
    full_disk.fill(0)
    result = runner.invoke(app, ["simulate", "template", str(inp.model), "--pixel-size", "2",
                                 "-o", str(out), "--box", "32", "--device", "cpu",
                                 "--threads", "1", "--overwrite"])
    _check_disk_full(result, full_disk, before, "t.mrc")


@pytest.mark.parametrize("leave_kib", [0, 24])
def test_simulate_micrograph_on_a_full_disk(inp, full_disk, leave_kib):
    """With 24 KiB left the micrograph's temporary fits and the truth table does not: the
    unit is abandoned and the three previous files stay."""
    d = full_disk.folder
    files = [d / "m.mrc", d / "m.star", d / "m.json"]
    _previous(files)
    before = snapshot(d)
    full_disk.fill(leave_kib * 1024)
    result = runner.invoke(app, ["simulate", "micrograph", str(inp.tpl), "-o", str(files[0]),
                                 "--truth", str(files[1]), "--shape", "64", "64",
                                 "--n-particles", "1", "--defocus", "9000", "--fluence", "40",
                                 "--threads", "1", "--overwrite"])
    _check_disk_full(result, full_disk, before, "m.mrc m.star m.json")


@pytest.mark.parametrize("leave_kib", [0, 64])
def test_search_on_a_full_disk(inp, full_disk, leave_kib):
    """A search that cannot write (its lock, or later its maps): one line, no results
    bundle, no temporaries, no lock left."""
    out = full_disk.folder / "s"
    full_disk.fill(leave_kib * 1024)
    result = runner.invoke(app, _search_args(inp.mic, inp.tpl, out))
    line = error_line(result)
    assert "no space left" in line.lower() and str(full_disk.folder) in line, line
    assert not (out / "results.npz").exists()
    assert not [p for p in full_disk.folder.rglob(".*") if p.is_file() or p.is_symlink()]


@pytest.mark.parametrize("report", ["--report", "--no-report"])
def test_peaks_on_a_full_disk(inp, full_disk, report):
    d = full_disk.folder
    _previous([d / "p.star", d / "p.csv", d / "p.html"])
    before = snapshot(d)
    full_disk.fill(0)
    result = runner.invoke(app, ["peaks", str(inp.run), "-o", str(d / "p.star"), report,
                                 "--overwrite"])
    _check_disk_full(result, full_disk, before, str(d))


def test_refine_on_a_full_disk(inp, full_disk):
    d = full_disk.folder
    _previous([d / "r.star", d / "r.csv"])
    before = snapshot(d)
    full_disk.fill(0)
    result = runner.invoke(app, ["refine", str(inp.run), "--particles", str(inp.particles),
                                 "-o", str(d / "r.star"), "--no-report", "--method", "grid",
                                 "--angle-step", "10", "--angle-range", "10",
                                 "--no-refine-defocus", "--overwrite"])
    _check_disk_full(result, full_disk, before, "r.star r.csv")


def test_demo_background_extraction_on_a_full_disk(inp, full_disk):
    """The demo's one write of its own (a background micrograph from a wheel) on a full
    disk: an error naming the target, nothing left in the cache."""
    import zipfile

    from difftm.demo import _extract_background

    wheel = inp.root / "x.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(inp.mic, "pkg/good.mrc")
    full_disk.fill(0)
    target = full_disk.folder / "g.mrc"
    with zipfile.ZipFile(wheel) as zf, pytest.raises(OSError) as err:
        _extract_background(zf, zf.getinfo("pkg/good.mrc"), target)
    assert err.value.errno == errno.ENOSPC and str(target) in str(err.value)
    assert not [p for p in full_disk.folder.iterdir() if p.name != "filler.bin"]


# --- read-only folder, also as root -------------------------------------------------------

WRITERS: list[tuple[str, Callable[[Inputs, Path], list[str]], str]] = [
    ("orientations", lambda i, d: ["orientations", "-o", str(d / "o.txt"), "--overwrite",
                                   "--out-of-plane-step", "10", "--in-plane-step", "10"],
     "o.txt"),
    ("simulate-template", lambda i, d: ["simulate", "template", str(i.model), "--pixel-size",
                                        "2", "-o", str(d / "t.mrc"), "--box", "16",
                                        "--device", "cpu", "--threads", "1", "--overwrite"],
     "t.mrc"),
    ("simulate-micrograph", lambda i, d: ["simulate", "micrograph", str(i.tpl), "-o",
                                          str(d / "m.mrc"), "--truth", str(d / "m.star"),
                                          "--shape", "64", "64", "--n-particles", "1",
                                          "--defocus", "9000", "--fluence", "40",
                                          "--threads", "1", "--overwrite"], "m."),
    ("peaks", lambda i, d: ["peaks", str(i.run), "-o", str(d / "p.star"), "--overwrite"],
     "p"),
    ("refine", lambda i, d: ["refine", str(i.run), "--particles", str(i.particles), "-o",
                             str(d / "r.star"), "--no-report", "--method", "grid",
                             "--angle-step", "10", "--angle-range", "10",
                             "--no-refine-defocus", "--overwrite"], "r."),
    ("search", lambda i, d: _search_args(i.mic, i.tpl, d / "s"), "s"),
    ("search-accelerated", lambda i, d: _search_args(i.mic, i.tpl, d / "s", "--strategy",
                                                     "accelerated"), "s"),
    ("reconstruct", lambda i, d: _reconstruct_args(i, d / "m.mrc"), "m"),
    ("classify", lambda i, d: _classify_args(i, d / "p.star"), "p"),
    ("constrained-search", lambda i, d: _constrained_args(i, d / "r.star"), "r"),
    ("mwlimit", lambda i, d: _mwlimit_args(d / "o.json", d / "t.png"), "o.json t.png"),
]


@pytest.mark.skipif(not CAN_MOUNT, reason="needs root and mount for a read-only tmpfs")
@pytest.mark.parametrize("case,build,name", WRITERS, ids=[w[0] for w in WRITERS])
def test_read_only_file_system_as_root(inp, tmp_path, case, build, name):
    """A read-only file system refuses even root: one line naming the output, previous
    files intact."""
    ro = tmp_path / "ro"
    ro.mkdir()
    assert _run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(ro)])
    try:
        for prev in ("o.txt", "t.mrc", "m.mrc", "p.star", "r.star"):
            (ro / prev).write_bytes(b"previous")
        assert _run(["mount", "-o", "remount,ro", str(ro)])
        before = snapshot(ro)
        result = runner.invoke(app, build(inp, ro))
        line = error_line(result)
        assert "read-only file system" in line.lower() and str(ro) in line, line
        assert snapshot(ro) == before
    finally:
        _umount(ro)


@pytest.mark.parametrize("case,build,name", WRITERS, ids=[w[0] for w in WRITERS])
def test_output_folder_that_is_a_file(inp, tmp_path, case, build, name):
    """An output whose folder is a regular file (works for root too): one line naming it,
    nothing written."""
    not_a_folder = tmp_path / "plain_file"
    not_a_folder.write_bytes(b"precious")
    result = runner.invoke(app, build(inp, not_a_folder))
    line = error_line(result)
    assert "plain_file" in line, line
    assert not_a_folder.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain_file"]


# --- multi-file units: a failure between the moves ----------------------------------------

def _fail_on_move(monkeypatch, k: int) -> None:
    """Make the ``k``-th move of a finished temporary into place fail (an I/O error)."""
    import difftm.io.atomic as atomic

    real = atomic._place
    calls = {"n": 0}

    def place(tmp: Path, path: Path, overwrite: bool) -> None:
        calls["n"] += 1
        if calls["n"] == k:
            raise OSError(errno.EIO, "Input/output error", str(tmp))
        real(tmp, path, overwrite)

    monkeypatch.setattr(atomic, "_place", place)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("previous", [True, False], ids=["previous", "fresh"])
def test_simulate_micrograph_unit_rolls_back_after_a_failed_move(inp, tmp_path, monkeypatch,
                                                                 k, previous):
    """The image, truth and parameters are one unit: when the 2nd or 3rd move fails the
    files already moved are taken back (previous versions restored, new ones removed)."""
    files = [tmp_path / "m.mrc", tmp_path / "m.star", tmp_path / "m.json"]
    if previous:
        _previous(files)
    before = snapshot(tmp_path)
    _fail_on_move(monkeypatch, k)
    result = runner.invoke(app, ["simulate", "micrograph", str(inp.tpl), "-o", str(files[0]),
                                 "--truth", str(files[1]), "--shape", "64", "64",
                                 "--n-particles", "1", "--defocus", "9000", "--fluence", "40",
                                 "--threads", "1", "--overwrite"])
    line = error_line(result)
    assert "input/output error" in line.lower() and str(tmp_path) in line, line
    assert snapshot(tmp_path) == before
    assert not list(tmp_path.glob(".*"))


def test_simulate_micrograph_unit_writes_all_three_when_nothing_fails(inp, tmp_path):
    files = [tmp_path / "m.mrc", tmp_path / "m.star", tmp_path / "m.json"]
    _previous(files)
    result = runner.invoke(app, ["simulate", "micrograph", str(inp.tpl), "-o", str(files[0]),
                                 "--truth", str(files[1]), "--shape", "64", "64",
                                 "--n-particles", "1", "--defocus", "9000", "--fluence", "40",
                                 "--threads", "1", "--overwrite", "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert json.loads(files[2].read_text())["seed"] == 4
    assert all(not f.read_bytes().startswith(b"previous") for f in files)
    assert not list(tmp_path.glob(".*"))


def test_peaks_unit_rolls_back_after_a_failed_move(inp, tmp_path, monkeypatch):
    """STAR, CSV and report of ``peaks`` are one unit as well."""
    files = [tmp_path / "p.star", tmp_path / "p.csv", tmp_path / "p.html"]
    _previous(files)
    before = {p: p.read_bytes() for p in files}
    _fail_on_move(monkeypatch, 3)
    result = runner.invoke(app, ["peaks", str(inp.run), "-o", str(files[0]), "--overwrite"])
    assert "input/output error" in error_line(result).lower()
    assert {p: p.read_bytes() for p in files} == before
    assert not list(tmp_path.glob(".*"))


# --- a results bundle with missing metadata -----------------------------------------------

def _doctored_run(inp: Inputs, folder: Path, drop_key: str | None = None,
                  drop_array: str | None = None) -> Path:
    shutil.copytree(inp.run, folder)
    with np.load(folder / "results.npz") as data:
        arrays = {k: data[k] for k in data.files}
    if drop_key is not None:
        md = json.loads(str(arrays["metadata"]))
        del md[drop_key]
        arrays["metadata"] = np.array(json.dumps(md))
    if drop_array is not None:
        del arrays[drop_array]
    np.savez_compressed(folder / "results.npz", **arrays)
    return folder


@pytest.mark.parametrize("key", ["pixel_size", "border_low", "n_search", "box", "voltage"])
def test_peaks_on_a_bundle_missing_metadata(inp, tmp_path, key):
    run = _doctored_run(inp, tmp_path / "run", drop_key=key)
    result = runner.invoke(app, ["peaks", str(run), "-o", str(tmp_path / "p.star")])
    line = error_line(result)
    assert "results.npz" in line and repr(key) in line, line
    assert not (tmp_path / "p.star").exists()


@pytest.mark.parametrize("drop", [dict(drop_key="pixel_size"), dict(drop_array="map_sigma"),
                                  dict(drop_array="best_index")],
                         ids=["metadata-key", "map", "best-index"])
def test_refine_on_a_damaged_bundle(inp, tmp_path, drop):
    run = _doctored_run(inp, tmp_path / "run", **drop)
    result = runner.invoke(app, ["refine", str(run), "--particles", str(inp.particles), "-o",
                                 str(tmp_path / "r.star"), "--no-report"])
    line = error_line(result)
    name = next(iter(drop.values())).removeprefix("map_")
    assert "results.npz" in line and name in line, line
    assert not (tmp_path / "r.star").exists()


# --- kill -9 while writing (slow) ---------------------------------------------------------

def _kill_after(args: list[str], delay: float) -> None:
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "difftm.cli.main", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.kill()
    proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("delay", [1.0, 3.0, 5.0, 7.0, 9.0, 10.5, 11.5, 12.5, 14.0])
def test_kill_9_during_search_leaves_no_half_written_file(inp, tmp_path, delay):
    """``difftm search`` killed at any moment: every file in its folder is complete (the
    bundle loads, every map reads with the micrograph's shape, the checkpoint loads)."""
    from difftm.io.mrc import read_mrc
    from difftm.search.checkpoint import CHECKPOINT_NAME
    from difftm.search.results import load_results

    image = white_noise((256, 256), 5)
    mic = tmp_path / "big.mrc"
    write_mrc(mic, image, PX)
    out = tmp_path / "run"
    # later options win: a finer grid, so that the search runs for a few seconds
    _kill_after(_search_args(mic, inp.tpl, out, "--out-of-plane-step", "20",
                             "--in-plane-step", "20"), delay)
    if not out.exists():
        return
    for path in out.iterdir():
        if path.name.startswith("."):  # temporaries and the lock of a killed run
            continue
        if path.suffix == ".mrc":
            assert read_mrc(path).shape == (256, 256), path.name
        elif path.name == "results.npz":
            assert load_results(out).shape == (256, 256)
        elif path.name == CHECKPOINT_NAME:
            with np.load(path) as data:
                assert int(data["next_index"]) >= 0
        elif path.suffix == ".yaml":
            import yaml

            assert yaml.safe_load(path.read_text())["micrograph"] == str(mic)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [1.5, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 8.0])
def test_kill_9_during_peaks_leaves_previous_or_complete_files(inp, tmp_path, delay):
    """``difftm peaks --overwrite`` killed at any moment: the STAR, CSV and HTML are each
    the previous file or a complete new one."""
    import pandas as pd

    from difftm.io.star import read_star_blocks

    files = [tmp_path / "p.star", tmp_path / "p.csv", tmp_path / "p.html"]
    previous = _previous(files)
    _kill_after(["peaks", str(inp.run), "-o", str(files[0]), "--overwrite"], delay)
    n_called = None
    for path in files:
        if path.read_bytes() == previous[path]:
            continue
        if path.suffix == ".star":
            n_called = len(read_star_blocks(path)["particles"])
            assert n_called > 0
        elif path.suffix == ".csv":
            assert len(pd.read_csv(path)) > 0
        else:
            assert path.read_text().rstrip().endswith("</html>")
    assert all(p.name.startswith(".") or p.name in ("p.star", "p.csv", "p.html", "p_figures")
               for p in tmp_path.iterdir())


def test_search_limits_at_the_inputs_sizes_accept_them(inp, tmp_path):
    """--max-shape / --max-box equal to the micrograph edge and template box: the search
    runs (the limits are inclusive), one less is refused naming the option."""
    ok = runner.invoke(app, _search_args(inp.mic, inp.tpl, tmp_path / "ok", "--max-shape",
                                         "96", "--max-box", "16"))
    assert ok.exit_code == 0, ok.output
    line = error_line(runner.invoke(app, _search_args(inp.mic, inp.tpl, tmp_path / "no",
                                                      "--max-shape", "95")))
    assert "--max-shape 95" in line and "mic.mrc" in line, line
    assert not (tmp_path / "no").exists()


# --- plausible ranges of physical parameters (one table: difftm.physics.limits) ----------

@pytest.mark.parametrize("option,value,accepted", [
    ("--voltage", "300000", "[10, 3000] kV"),       # volts typed for kV
    ("--voltage", "0.3", "[10, 3000] kV"),          # MV typed for kV
    ("--cs", "2700", "[0, 20] mm"),                 # micrometres typed for mm
    ("--amplitude-contrast", "7", "[0, 1)"),        # a percentage typed for a fraction
    ("--amplitude-contrast", "1", "[0, 1)"),        # the CTF is undefined at 1
    ("--defocus-u", "1.5e-6", None),                # metres: accepted (0 is in range)...
    ("--defocus-u", "-2e5", "[-100000, 100000] A"),
    ("--pixel-size", "0.01", "[0.05, 100] A"),
    ("--phase-shift", "1e5", "[-3600, 3600] degrees"),
])
def test_search_refuses_implausible_physics(inp, tmp_path, option, value, accepted):
    result = runner.invoke(app, _search_args(inp.mic, inp.tpl, tmp_path / "s", option, value))
    if accepted is None:
        assert result.exit_code == 0, result.output
        return
    line = error_line(result)
    assert option.lstrip("-") in line and accepted in line, line
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("option,value,accepted", [
    ("--voltage", "300000", "[10, 3000] kV"),
    ("--cs", "2700", "[0, 20] mm"),
    ("--amplitude-contrast", "1", "[0, 1)"),
    ("--defocus", "-2e5", "[-100000, 100000] A"),
    ("--astigmatism-angle", "1e5", "[-3600, 3600] degrees"),
])
def test_simulate_micrograph_refuses_implausible_physics(inp, tmp_path, option, value,
                                                         accepted):
    result = runner.invoke(app, ["simulate", "micrograph", str(inp.tpl), "-o",
                                 str(tmp_path / "m.mrc"), "--truth", str(tmp_path / "m.star"),
                                 "--shape", "64", "64", "--n-particles", "1", "--defocus",
                                 "9000", "--fluence", "40", option, value])
    line = error_line(result)
    assert f"{option} " in line and accepted in line, line
    assert not list(tmp_path.iterdir())


def test_physics_ranges_are_one_table():
    """The search configuration, the simulate commands and the readers use the same ranges
    (a change in difftm.physics.limits changes all of them)."""
    from difftm.physics.limits import PLAUSIBLE
    from difftm.search.config import PLAUSIBLE as CONFIG

    assert CONFIG["voltage"] is PLAUSIBLE["voltage"]
    assert CONFIG["defocus_u"] is PLAUSIBLE["defocus"] is CONFIG["defocus_v"]
    assert CONFIG["amplitude_contrast"] is PLAUSIBLE["amplitude_contrast"]


@pytest.mark.parametrize("column,value,expect", [
    ("rlnDefocusU", 1e12, "rlnDefocusU 1e+12 A is outside the accepted range"),
    ("rlnDefocusV", float("nan"), "rlnDefocusV must be a finite number"),
    ("rlnAngleTilt", float("inf"), "rlnAngleTilt inf is not a finite angle"),
    ("rlnDefocusAngle", -1e5, "rlnDefocusAngle -100000 degrees is outside"),
])
def test_refine_refuses_implausible_particle_values(inp, tmp_path, column, value, expect):
    import starfile

    blocks = starfile.read(inp.particles, always_dict=True)
    particles = blocks["particles"].copy()
    particles[column] = particles[column].astype(float)
    particles.loc[particles.index[1], column] = value
    bad = tmp_path / "bad.star"
    starfile.write({"optics": blocks["optics"], "particles": particles}, bad)
    result = runner.invoke(app, ["refine", str(inp.run), "--particles", str(bad), "-o",
                                 str(tmp_path / "r.star"), "--no-report"])
    line = error_line(result)
    assert "bad.star: row 2: " in line and expect in line, line
    assert not (tmp_path / "r.star").exists()


@pytest.mark.parametrize("label,value,expect", [
    ("rlnDefocusU", 3e9, "defocus u 3e+09 A is outside the accepted range"),
    ("rlnVoltage", 300000.0, "voltage 300000 kV is outside the accepted range [10, 3000] kV"),
    ("rlnSphericalAberration", 2700.0, "cs 2700 mm is outside"),
    ("rlnAmplitudeContrast", 7.0, "amplitude contrast 7 is outside the accepted range [0, 1)"),
])
def test_dataset_ctf_outside_the_plausible_range_is_refused(inp, tmp_path, label, value,
                                                             expect):
    """A micrographs_ctf.star whose CTF or optics has a unit mistake: one line naming the
    STAR file's row, the micrograph and the value, before any search."""
    import pandas as pd
    import starfile

    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnVoltage": [300.0],
                           "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.07],
                           "rlnMicrographPixelSize": [PX]})
    mics = pd.DataFrame({"rlnMicrographName": [str(inp.mic)], "rlnOpticsGroup": [1],
                         "rlnDefocusU": [9000.0], "rlnDefocusV": [8800.0],
                         "rlnDefocusAngle": [10.0]})
    table = mics if label in mics.columns else optics
    table[label] = [value]
    star = tmp_path / "micrographs_ctf.star"
    starfile.write({"optics": optics, "micrographs": mics}, star)
    result = runner.invoke(app, ["search", str(inp.tpl), "--micrographs", str(star), "-o",
                                 str(tmp_path / "ds"), "--device", "cpu", "--threads", "1"])
    line = error_line(result)
    assert "micrographs_ctf.star row 1: micrograph" in line and expect in line, line
    assert not (tmp_path / "ds").exists()


@pytest.fixture(scope="module")
def dataset(inp, tmp_path_factory) -> Path:
    """A searched two-micrograph dataset (glob with one CTF)."""
    root = tmp_path_factory.mktemp("dataset")
    mics = root / "mics"
    mics.mkdir()
    for k in range(2):
        shutil.copy(inp.mic, mics / f"m{k}.mrc")
    out = root / "ds"
    args = _search_args(inp.mic, inp.tpl, out)
    args[1:3] = [str(inp.tpl), "--micrographs", str(mics / "*.mrc")]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    return out


@pytest.mark.parametrize("k", [2, 5])
def test_dataset_peaks_unit_rolls_back_after_a_failed_move(dataset, monkeypatch, k):
    """Per-micrograph and combined tables and the report of a dataset are one unit."""
    first = runner.invoke(app, ["peaks", str(dataset), "--overwrite"])
    assert first.exit_code == 0, first.output
    before = {p: p.read_bytes() for p in dataset.rglob("particles.*")}
    assert len(before) == 2 * 2 + 3  # per micrograph STAR + CSV; combined STAR, CSV, HTML
    _fail_on_move(monkeypatch, k)
    line = error_line(runner.invoke(app, ["peaks", str(dataset), "--overwrite",
                                          "--threshold", "3"]))
    assert "input/output error" in line.lower(), line
    assert {p: p.read_bytes() for p in dataset.rglob("particles.*")} == before
    assert not [p for p in dataset.rglob(".*.tmp")]


def test_fetch_model_on_a_full_disk(full_disk, monkeypatch):
    """A download into a full cache: one line naming the cached file, nothing left."""
    import gzip
    import io

    from difftm.io import cache

    class Response(io.BytesIO):
        headers = {"Content-Length": "1000"}

    payload = gzip.compress(MODEL.encode())
    monkeypatch.setattr(cache.urllib.request, "urlopen",
                        lambda request, timeout: Response(payload))
    monkeypatch.setattr(cache, "DEBIAN_FALLBACK", {})  # no fallback download
    monkeypatch.delenv("DIFFTM_SHARED_DATA", raising=False)
    full_disk.fill(0)
    result = runner.invoke(app, ["fetch-model", "1abc", "--cache-dir", str(full_disk.folder)])
    line = error_line(result)
    assert "no space left" in line.lower() and "1abc.cif.gz" in line, line
    assert [p.name for p in full_disk.folder.iterdir()] in ([], ["filler.bin"])


def test_dataset_search_on_a_full_disk(inp, full_disk, tmp_path):
    """``search --micrographs`` into a full disk: one line naming a file under the output,
    no results bundle, no temporaries or locks left."""
    mics = tmp_path / "mics"
    mics.mkdir()
    shutil.copy(inp.mic, mics / "m0.mrc")
    out = full_disk.folder / "ds"
    full_disk.fill(0)
    args = _search_args(inp.mic, inp.tpl, out)
    args[1:3] = [str(inp.tpl), "--micrographs", str(mics / "*.mrc")]
    line = error_line(runner.invoke(app, args))
    assert "no space left" in line.lower() and str(full_disk.folder) in line, line
    assert not list(full_disk.folder.rglob("results.npz"))
    assert not [p for p in full_disk.folder.rglob(".*") if p.is_file() or p.is_symlink()]


# --- the commands added after the first pass: reconstruct, classify, constrained-search,
# --- mwlimit, search --strategy accelerated ------------------------------------------------

RECONSTRUCT_FILES = ("m.mrc", "m_half1.mrc", "m_half2.mrc", "m_fsc.csv", "m.json", "m.html")


@pytest.mark.parametrize("leave_kib,report", [(0, "--report"), (24, "--no-report")])
def test_reconstruct_on_a_full_disk(inp, full_disk, leave_kib, report):
    """Map, half-maps, FSC table, summary and report on a full disk: with 24 KiB left the
    map's temporary fits and a half-map's does not; the six previous files stay."""
    d = full_disk.folder
    _previous([d / n for n in RECONSTRUCT_FILES])
    before = snapshot(d)
    full_disk.fill(leave_kib * 1024)
    result = runner.invoke(app, _reconstruct_args(inp, d / "m.mrc", report))
    _check_disk_full(result, full_disk, before, str(d))


@pytest.mark.parametrize("report", ["--report", "--no-report"])
def test_classify_on_a_full_disk(inp, full_disk, report):
    d = full_disk.folder
    _previous([d / "c.star", d / "c.csv", d / "c.html"])
    before = snapshot(d)
    full_disk.fill(0)
    result = runner.invoke(app, _classify_args(inp, d / "c.star", report))
    _check_disk_full(result, full_disk, before, str(d))


def test_constrained_search_on_a_full_disk(inp, full_disk):
    d = full_disk.folder
    _previous([d / "s.star", d / "s.csv"])
    before = snapshot(d)
    full_disk.fill(0)
    result = runner.invoke(app, _constrained_args(inp, d / "s.star"))
    _check_disk_full(result, full_disk, before, "s.star s.csv")


def test_mwlimit_on_a_full_disk(inp, full_disk):
    d = full_disk.folder
    _previous([d / "m.json", d / "m.png"])
    before = snapshot(d)
    full_disk.fill(0)
    result = runner.invoke(app, _mwlimit_args(d / "m.json", d / "m.png"))
    _check_disk_full(result, full_disk, before, "m.json m.png")


def test_accelerated_search_on_a_full_disk(inp, full_disk):
    """``search --strategy accelerated`` into a full disk: one line, no results bundle, no
    temporaries or lock left."""
    out = full_disk.folder / "s"
    full_disk.fill(0)
    line = error_line(runner.invoke(app, _search_args(inp.mic, inp.tpl, out, "--strategy",
                                                      "accelerated")))
    assert "no space left" in line.lower() and str(full_disk.folder) in line, line
    assert not (out / "results.npz").exists()
    assert not [p for p in full_disk.folder.rglob(".*") if p.is_file() or p.is_symlink()]


@pytest.mark.parametrize("k", [2, 6])
@pytest.mark.parametrize("previous", [True, False], ids=["previous", "fresh"])
def test_reconstruct_unit_rolls_back_after_a_failed_move(inp, tmp_path, monkeypatch, k,
                                                         previous):
    """The six outputs of ``reconstruct`` are one unit: when the 2nd or the last move fails,
    the files already moved are taken back."""
    files = [tmp_path / n for n in RECONSTRUCT_FILES]
    if previous:
        _previous(files)
    _fail_on_move(monkeypatch, k)
    before = {p: p.read_bytes() for p in files if p.exists()}
    line = error_line(runner.invoke(app, _reconstruct_args(inp, files[0])))
    assert "input/output error" in line.lower(), line
    assert {p: p.read_bytes() for p in files if p.exists()} == before
    assert not list(tmp_path.glob(".*"))


def test_reconstruct_writes_the_unit_when_nothing_fails(inp, tmp_path):
    files = [tmp_path / n for n in RECONSTRUCT_FILES]
    _previous(files)
    result = runner.invoke(app, _reconstruct_args(inp, files[0]))
    assert result.exit_code == 0, result.output
    assert all(not f.read_bytes().startswith(b"previous") for f in files)
    assert json.loads(files[4].read_text())["particles"] == 8
    assert not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("case,build,files,k", [
    ("classify", lambda i, d: _classify_args(i, d / "c.star"), ("c.star", "c.csv", "c.html"),
     3),
    ("constrained-search", lambda i, d: _constrained_args(i, d / "s.star"),
     ("s.star", "s.csv"), 2),
    ("mwlimit", lambda i, d: _mwlimit_args(d / "m.json", d / "m.png"), ("m.json", "m.png"),
     2),
], ids=["classify", "constrained-search", "mwlimit"])
def test_later_units_roll_back_after_a_failed_move(inp, tmp_path, monkeypatch, case, build,
                                                   files, k):
    """STAR + CSV (+ HTML) of classify and constrained-search, JSON + figure of mwlimit:
    the last move fails, the previous files are all back."""
    paths = [tmp_path / n for n in files]
    before = _previous(paths)
    _fail_on_move(monkeypatch, k)
    line = error_line(runner.invoke(app, build(inp, tmp_path)))
    assert "input/output error" in line.lower(), line
    assert {p: p.read_bytes() for p in paths} == before
    assert not list(tmp_path.glob(".*"))


@pytest.mark.slow
@pytest.mark.parametrize("delay", [2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0])
def test_kill_9_during_reconstruct_leaves_previous_or_complete_files(tmp_path, delay):
    """``difftm reconstruct --overwrite`` killed at any moment: the map, half-maps, FSC
    table, summary and report are each the previous file or a complete new one."""
    import pandas as pd

    from difftm.io.mrc import read_mrc
    from difftm.io.star import make_optics_table, make_particles_table, write_particles_star

    mic = tmp_path / "mic.mrc"
    write_mrc(mic, white_noise((384, 384), 3), PX)
    grid = np.arange(24, 360, 48.0)
    xx, yy = np.meshgrid(grid, grid)
    n = xx.size
    rng = np.random.default_rng(0)
    cols = {"x": xx.ravel(), "y": yy.ravel(), "rot": rng.uniform(0, 360, n),
            "tilt": rng.uniform(0, 180, n), "psi": rng.uniform(0, 360, n),
            "defocus_u": np.full(n, 9000.0), "defocus_v": np.full(n, 9000.0),
            "defocus_angle": np.zeros(n)}
    star = tmp_path / "r.star"
    write_particles_star(star, make_particles_table(cols, micrograph_name=str(mic)),
                         make_optics_table(PX))
    out = tmp_path / "out"
    out.mkdir()
    files = [out / n.replace("m", "k", 1) for n in RECONSTRUCT_FILES]
    previous = _previous(files)
    _kill_after(["reconstruct", str(star), "-o", str(files[0]), "--box", "32", "--threads",
                 "1", "--overwrite"], delay)
    for path in files:
        if path.read_bytes() == previous[path]:
            continue
        if path.suffix == ".mrc":
            assert read_mrc(path).data.shape == (32, 32, 32), path.name
        elif path.suffix == ".csv":
            assert len(pd.read_csv(path)) == 17, path.name
        elif path.suffix == ".json":
            assert json.loads(path.read_text())["particles"] == n
        else:
            assert path.read_text().rstrip().endswith("</html>")
    assert all(p.name.startswith(".") or p.name in {f.name for f in files} or
               p.name == "k_figures" for p in out.iterdir())


def test_classify_and_constrained_limits_are_inclusive_and_raisable(inp, tmp_path):
    """--max-refinements (particles x templates) and --max-trials (partners x positions x
    orientations) equal to the work run it; one less is refused before any work, naming
    the option, with nothing written."""
    from difftm.io.star import read_particles_star

    n = len(read_particles_star(inp.particles)[1])
    ok = runner.invoke(app, _classify_args(inp, tmp_path / "c.star", "--no-report",
                                           "--max-refinements", str(2 * n)))
    assert ok.exit_code == 0, ok.output
    line = error_line(runner.invoke(app, _classify_args(
        inp, tmp_path / "d.star", "--max-refinements", str(2 * n - 1))))
    assert f"{n} particles x 2 templates" in line and "--max-refinements" in line, line
    # radius 4 A at 2 A/px: 13 positions; cone 2 deg at step 2: 7 orientations
    trials = n * 13 * 7
    ok = runner.invoke(app, _constrained_args(inp, tmp_path / "s.star", "--max-trials",
                                              str(trials)))
    assert ok.exit_code == 0, ok.output
    assert "7 orientations" in " ".join(ok.output.split())
    line = error_line(runner.invoke(app, _constrained_args(inp, tmp_path / "t.star",
                                                           "--max-trials", str(trials - 1))))
    assert f"{trials:,} trials" in line and f"--max-trials {trials - 1}" in line, line
    assert not [p for p in tmp_path.iterdir() if p.stem in ("d", "t")]


def test_atomic_output_does_not_chmod_through_a_link(tmp_path, monkeypatch):
    """The full-disk trick makes temporaries links to /dev/full: giving the temporary the
    usual permissions must not change the device's (as root it did: /dev/full became
    0644 for everyone). Only a regular temporary file is chmod-ed."""
    from difftm.io.atomic import atomic_output

    target = tmp_path / "target"
    target.write_bytes(b"")
    target.chmod(0o600)
    real = tempfile.mkstemp

    def mkstemp(suffix=None, prefix=None, dir=None, text=False):  # noqa: A002
        fd, name = real(suffix, prefix, dir, text)
        os.close(fd)
        os.unlink(name)
        os.symlink(target, name)
        return os.open(name, os.O_RDWR), name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    with atomic_output(tmp_path / "out.txt") as tmp:
        tmp.write_text("x")
    assert target.stat().st_mode & 0o777 == 0o600
