"""`difftm search` usability: threads, plain progress lines, header pixel size, explicit
orientation lists, projector options, resumed timings and literal brackets in --help."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from difftm.cli.main import app
from difftm.geometry.grids import orientation_grid, read_orientations, write_orientations
from difftm.search.checkpoint import checkpoint_seconds, load_checkpoint
from difftm.search.config import SearchConfig
from difftm.search.engine import SearchInterrupted, resolve_pixel_size, run_search
from difftm.search.results import load_results

from search_helpers import blob_volume, white_noise, write_inputs

runner = CliRunner()
PX = 2.0


def _inputs(tmp_path, px=PX, shape=(64, 64), box=16):
    return write_inputs(tmp_path, white_noise(shape, 3), blob_volume(box, seed=2), px)


def _args(mic, tpl, out, *extra):
    return ["search", str(mic), str(tpl), "--output", str(out), "--defocus-u", "9000",
            "--defocus-range", "0", "--out-of-plane-step", "45", "--in-plane-step", "60",
            "--no-whiten", "--device", "cpu", *extra]


def _config(mic, tpl, out, **kw):
    base = dict(micrograph=mic, template=tpl, output=out, defocus_u=9000.0,
                defocus_range=0.0, out_of_plane_step=45.0, in_plane_step=60.0, whiten=False,
                device="cpu")
    base.update(kw)
    return SearchConfig(**base)


def _uncalibrated(path, data):
    with mrcfile.new(path, overwrite=True) as mrc:  # voxel size 0: no calibration
        mrc.set_data(np.asarray(data, dtype=np.float32))


# --- threads -----------------------------------------------------------------------------

def test_threads_option_is_honoured_and_recorded(tmp_path):
    mic, tpl = _inputs(tmp_path)
    before = torch.get_num_threads()
    try:
        res = runner.invoke(app, _args(mic, tpl, tmp_path / "o", "--threads", "1"))
        assert res.exit_code == 0, res.output
        assert torch.get_num_threads() == 1
        assert "1 CPU thread (--threads)" in res.output
        md = load_results(tmp_path / "o").metadata
        assert md["threads"] == 1 and md["timings"]["threads"] == 1
        assert "threads: 1" in (tmp_path / "o" / "config.yaml").read_text()
    finally:
        torch.set_num_threads(before)


def test_resumed_search_keeps_its_thread_count_and_stays_bit_identical(tmp_path):
    mic, tpl = _inputs(tmp_path)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        ref = run_search(_config(mic, tpl, tmp_path / "ref", pixel_size=PX, batch_size=4))
        cfg = _config(mic, tpl, tmp_path / "o", pixel_size=PX, batch_size=4)
        with pytest.raises(SearchInterrupted):
            run_search(cfg, stop_after_chunks=1)
        torch.set_num_threads(2)  # e.g. the default picked more threads after the crash
        res = run_search(cfg)
        assert res.metadata["threads"] == 1 and res.metadata["timings"]["resumed_from"] > 0
        np.testing.assert_array_equal(res.best_index, ref.best_index)
        for name, m in ref.maps.items():
            np.testing.assert_array_equal(res.maps[name], m, err_msg=name)
        # another thread count changes the maps only by float32 rounding
        two = run_search(_config(mic, tpl, tmp_path / "two", pixel_size=PX, batch_size=4,
                                 threads=2))
        assert two.metadata["threads"] == 2
        np.testing.assert_allclose(two.maps["snr"], ref.maps["snr"], rtol=0, atol=1e-5)
        # an explicit --threads wins over the checkpoint's
        cfg3 = _config(mic, tpl, tmp_path / "o3", pixel_size=PX, batch_size=4)
        torch.set_num_threads(1)
        with pytest.raises(SearchInterrupted):
            run_search(cfg3, stop_after_chunks=1)
        res3 = run_search(cfg3.model_copy(update={"threads": 2}))
        assert res3.metadata["threads"] == 2
    finally:
        torch.set_num_threads(before)


def test_thread_count_is_not_part_of_the_fingerprint(tmp_path):
    mic, tpl = _inputs(tmp_path)
    a = _config(mic, tpl, tmp_path / "o", pixel_size=PX, threads=1)
    b = _config(mic, tpl, tmp_path / "o", pixel_size=PX, threads=2)
    assert a.fingerprint() == b.fingerprint()


# --- progress lines when output is not a terminal -------------------------------------------

def test_non_tty_search_prints_plain_progress_lines(tmp_path):
    mic, tpl = _inputs(tmp_path)
    res = runner.invoke(app, _args(mic, tpl, tmp_path / "o", "--pixel-size", "2",
                                   "--batch-size", "4"))
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("search ")]
    # CliRunner's output is not a terminal: one line per 5% at least, ending at 100%
    assert len(lines) >= 5, res.output
    assert lines[-1].startswith("search 100.0% ")
    for ln in lines:
        assert "orient/s ETA " in ln
    assert "\x1b[" not in res.output  # no terminal control codes in a log file


# --- pixel size from the header ----------------------------------------------------------------

def test_pixel_size_comes_from_the_micrograph_header(tmp_path):
    mic, tpl = _inputs(tmp_path, px=1.75)
    res = runner.invoke(app, _args(mic, tpl, tmp_path / "o"))
    assert res.exit_code == 0, res.output
    assert "pixel size 1.75 A (from the header of mic.mrc)" in res.output
    assert load_results(tmp_path / "o").metadata["pixel_size"] == pytest.approx(1.75)
    assert "pixel_size: 1.75" in (tmp_path / "o" / "config.yaml").read_text()


def test_header_and_option_mismatch_is_refused_in_one_line(tmp_path):
    mic, tpl = _inputs(tmp_path, px=1.75)
    res = runner.invoke(app, _args(mic, tpl, tmp_path / "o", "--pixel-size", "2.0"))
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "mic.mrc" in lines[0] and "does not match" in lines[0]
    assert not (tmp_path / "o").exists()
    # a template whose calibrated header disagrees with the micrograph's is refused too
    tpl2 = tmp_path / "tpl2.mrc"
    from difftm.io.mrc import write_mrc
    write_mrc(tpl2, blob_volume(16, seed=2), 2.5)
    res = runner.invoke(app, _args(mic, tpl2, tmp_path / "o"))
    assert res.exit_code == 2 and "tpl2.mrc" in res.output and "does not match" in res.output


def test_uncalibrated_header_needs_the_option(tmp_path):
    mic, tpl = _inputs(tmp_path)
    _uncalibrated(mic, white_noise((64, 64), 3))
    res = runner.invoke(app, _args(mic, tpl, tmp_path / "o"))
    assert res.exit_code == 2
    assert "header has no pixel size" in res.output and "--pixel-size" in res.output
    res = runner.invoke(app, _args(mic, tpl, tmp_path / "o", "--pixel-size", "2"))
    assert res.exit_code == 0, res.output
    cfg = resolve_pixel_size(_config(mic, tpl, tmp_path / "x", pixel_size=2.0))
    assert cfg.pixel_size == 2.0


# --- explicit orientation lists ------------------------------------------------------------------

def test_explicit_orientation_list_reproduces_a_grid_run_exactly(tmp_path):
    mic, tpl = _inputs(tmp_path)
    grid = run_search(_config(mic, tpl, tmp_path / "grid", pixel_size=PX, batch_size=7))
    listed = tmp_path / "grid.txt"
    res = runner.invoke(app, ["orientations", "--out-of-plane-step", "45", "--in-plane-step",
                              "60", "-o", str(listed)])
    assert res.exit_code == 0, res.output
    assert "132 orientations" in res.output
    torch.testing.assert_close(read_orientations(listed), orientation_grid(45.0, 60.0),
                               rtol=0, atol=0)
    res = runner.invoke(app, _args(mic, tpl, tmp_path / "list", "--orientations", str(listed),
                                   "--batch-size", "7"))
    assert res.exit_code == 0, res.output
    again = load_results(tmp_path / "list")
    assert again.metadata["n_orientations"] == grid.metadata["n_orientations"]
    assert again.metadata["orientations"] == str(listed)
    for name, m in grid.maps.items():
        np.testing.assert_array_equal(again.maps[name], m, err_msg=name)
    np.testing.assert_array_equal(again.best_index, grid.best_index)


def test_orientation_list_length_and_hash_define_the_run(tmp_path):
    mic, tpl = _inputs(tmp_path)
    listed = tmp_path / "few.csv"
    listed.write_text("rot,tilt,psi\n0,0,0\n10.5,90,45\n# comment\n200, 135, 300\n")
    res = run_search(_config(mic, tpl, tmp_path / "o", pixel_size=PX, orientations=listed))
    assert res.metadata["n_orientations"] == 3 and res.metadata["n_search"] == 3
    fp = _config(mic, tpl, tmp_path / "o", pixel_size=PX, orientations=listed).fingerprint()
    listed.write_text("rot,tilt,psi\n0,0,0\n10.5,90,45\n200,135,301\n")
    assert _config(mic, tpl, tmp_path / "o", pixel_size=PX,
                   orientations=listed).fingerprint() != fp


def test_written_orientations_round_trip_exactly(tmp_path):
    angles = torch.rand(50, 3, dtype=torch.float64) * 360
    write_orientations(tmp_path / "a.txt", angles)
    assert torch.equal(read_orientations(tmp_path / "a.txt"), angles)
    with pytest.raises(FileExistsError):
        write_orientations(tmp_path / "a.txt", angles)
    res = runner.invoke(app, ["orientations", "-o", str(tmp_path / "a.txt")])
    assert res.exit_code == 2 and "exists" in res.output


def test_star_orientations_and_bad_files(tmp_path):
    star = tmp_path / "p.star"
    star.write_text("data_particles\n\nloop_\n_rlnCoordinateX #1\n_rlnAngleRot #2\n"
                    "_rlnAngleTilt #3\n_rlnAnglePsi #4\n10 1.5 2.5 3.5\n20 4 5 6\n")
    angles = read_orientations(star)
    assert angles.tolist() == [[1.5, 2.5, 3.5], [4.0, 5.0, 6.0]]
    bad = tmp_path / "bad.txt"
    bad.write_text("0 0 0\n1 2\n")
    with pytest.raises(ValueError, match="line 2 has 2 numbers"):
        read_orientations(bad)
    mic, tpl = _inputs(tmp_path)
    res = runner.invoke(app, _args(mic, tpl, tmp_path / "o", "--orientations", str(bad)))
    assert res.exit_code == 2 and "bad.txt" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, _args(mic, tpl, tmp_path / "o", "--orientations",
                                   str(tmp_path / "none.txt")))
    assert res.exit_code == 2 and "none.txt" in res.output


def test_projector_options_reach_the_search(tmp_path):
    mic, tpl = _inputs(tmp_path)
    a = run_search(_config(mic, tpl, tmp_path / "a", pixel_size=PX))
    res = runner.invoke(app, _args(mic, tpl, tmp_path / "b", "--projector-oversampling", "1",
                                   "--no-gridding-correction"))
    assert res.exit_code == 0, res.output
    text = (tmp_path / "b" / "config.yaml").read_text()
    assert "projector_oversampling: 1" in text and "gridding_correction: false" in text
    b = load_results(tmp_path / "b")
    assert b.metadata["fingerprint"] != a.metadata["fingerprint"]
    assert not np.array_equal(a.maps["snr"], b.maps["snr"])


# --- timings of a resumed search -----------------------------------------------------------------

def test_timings_of_a_resumed_search_cover_the_whole_search(tmp_path):
    mic, tpl = _inputs(tmp_path)
    cfg = _config(mic, tpl, tmp_path / "o", pixel_size=PX, batch_size=4, chunk_batches=2)
    with pytest.raises(SearchInterrupted):
        run_search(cfg, stop_after_chunks=1)
    first = checkpoint_seconds(tmp_path / "o")
    _, next_index, _ = load_checkpoint(tmp_path / "o")
    assert first > 0 and 0 < next_index
    res = run_search(cfg)
    t = res.metadata["timings"]
    assert t["resumed_from"] == next_index < res.metadata["n_search"]
    assert t["seconds"] == pytest.approx(first + t["seconds_this_run"])
    assert t["seconds"] > t["seconds_this_run"]


# --- help texts ------------------------------------------------------------------------------

def test_help_shows_defaults_in_square_brackets():
    res = runner.invoke(app, ["search", "--help"])
    assert res.exit_code == 0
    for text in ("[300]", "[on]", "[auto]", "[2]"):
        assert text in res.output, text
    res = runner.invoke(app, ["simulate", "template", "--help"])
    assert res.exit_code == 0 and "cuda[:N]" in res.output


def test_timings_of_a_resumed_distributed_search_sum_all_parts(tmp_path, monkeypatch):
    import difftm.search.distributed as dist

    mic, tpl = _inputs(tmp_path)
    cfg = _config(mic, tpl, tmp_path / "o", pixel_size=PX, batch_size=4)
    calls = {"n": 0}
    real = dist.search_part

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker died")
        return real(*args, **kwargs)

    monkeypatch.setattr(dist, "search_part", flaky)
    with pytest.raises(RuntimeError):
        dist.run_search_distributed(cfg, n_parts=4)
    earlier = 0.0
    for part in (tmp_path / "o" / dist.PARTS_DIR).glob("*.npz"):
        with np.load(part) as data:
            earlier += float(data["seconds"])
    assert earlier > 0
    res = dist.run_search_distributed(cfg, n_parts=4)
    t = res.metadata["timings"]
    assert t["parts_this_run"] == t["parts"] - 2
    assert t["seconds"] > earlier  # the two parts of the crashed run are included
    assert res.metadata["threads"] == torch.get_num_threads()
