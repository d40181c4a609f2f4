"""`difftm info` and `difftm simulate micrograph` through typer's CliRunner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from difftm.cli.main import app
from difftm.io.mrc import read_mrc, write_mrc
from difftm.io.star import read_particles_star

_DEFAULT_SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SHARED = Path(os.environ.get("DIFFTM_SHARED_DATA", _DEFAULT_SHARED))
MICROGRAPH = SHARED / "micrographs" / "Ucsf_stack_1142_DW.mrc"
UBIQUITIN = SHARED / "pdb" / "1ubi.pdb.gz"

runner = CliRunner()


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


@pytest.fixture
def template_file(tmp_path) -> Path:
    box = 32
    g = torch.arange(box, dtype=torch.float32) - box // 2
    z, y, x = torch.meshgrid(g, g, g, indexing="ij")
    vol = 3.0 * torch.exp(-((x - 3) ** 2 + y**2 + (z + 2) ** 2) / 18.0)
    vol += 2.0 * torch.exp(-((x + 4) ** 2 + (y - 3) ** 2 + z**2) / 8.0)
    return write_mrc(tmp_path / "template.mrc", vol, pixel_size=2.0)


def test_info_mrc(tmp_path):
    path = write_mrc(tmp_path / "img.mrc", np.arange(12.0).reshape(3, 4), pixel_size=1.7)
    result = runner.invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["shape"] == [3, 4] and info["pixel_size"] == pytest.approx(1.7)
    assert info["mean"] == pytest.approx(5.5) and info["max"] == 11.0
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0 and "3 x 4" in result.output and "1.7000 A" in result.output


def test_info_real_micrograph_warns():
    if not MICROGRAPH.exists():
        pytest.skip(f"shared test data not found at {MICROGRAPH}")
    result = runner.invoke(app, ["info", str(MICROGRAPH)])
    assert result.exit_code == 0, result.output
    assert "927 x 959" in result.output and "not calibrated" in result.output
    assert "warning:" in result.output


def test_info_model():
    if not UBIQUITIN.exists():
        pytest.skip(f"shared test data not found at {UBIQUITIN}")
    result = runner.invoke(app, ["info", str(UBIQUITIN), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["n_residues"] == 76 and info["mass_kda"] == pytest.approx(7.9, abs=0.2)


def test_info_errors(tmp_path):
    assert "no such file" in _one_error_line(runner.invoke(app, ["info", str(tmp_path / "x.mrc")]))
    if MICROGRAPH.exists():
        truncated = tmp_path / "cut.mrc"
        truncated.write_bytes(MICROGRAPH.read_bytes()[:50_000])
        line = _one_error_line(runner.invoke(app, ["info", str(truncated)]))
        assert "truncated" in line and "cut.mrc" in line
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    assert "unknown file type" in _one_error_line(runner.invoke(app, ["info", str(junk)]))
    bad_star = tmp_path / "bad.star"
    bad_star.write_text("data_particles\nloop_\n_rlnCoordinateX #1\n1 2 3\n")
    assert "bad.star" in _one_error_line(runner.invoke(app, ["info", str(bad_star)]))


def _simulate_args(template_file: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "simulate", "micrograph", str(template_file), "--shape", "160", "170",
        "--n-particles", "3", "--defocus", "10000", "--fluence", "30", "--seed", "7",
        "--output", str(tmp_path / "mic.mrc"), "--truth", str(tmp_path / "truth.star"), *extra,
    ]


def test_simulate_micrograph_and_info_star(template_file, tmp_path):
    result = runner.invoke(app, _simulate_args(template_file, tmp_path))
    assert result.exit_code == 0, result.output
    mic = read_mrc(tmp_path / "mic.mrc")
    assert mic.data.shape == (160, 170) and mic.pixel_size == pytest.approx(2.0)
    assert mic.data.mean() == pytest.approx(30 * 4.0, rel=0.02)
    optics, particles = read_particles_star(tmp_path / "truth.star")
    assert len(particles) == 3 and optics["rlnMicrographPixelSize"].iloc[0] == 2.0
    assert (particles["rlnMicrographName"] == "mic.mrc").all()
    params = json.loads((tmp_path / "mic.json").read_text())
    assert params["seed"] == 7 and params["n_particles"] == 3
    # info on the STAR file
    result = runner.invoke(app, ["info", str(tmp_path / "truth.star"), "--json"])
    info = json.loads(result.output)
    assert info["n_particles"] == 3
    assert [b["name"] for b in info["blocks"]] == ["data_optics", "data_particles"]
    # existing outputs are kept unless --overwrite
    before = read_mrc(tmp_path / "mic.mrc").data
    line = _one_error_line(runner.invoke(app, _simulate_args(template_file, tmp_path)))
    assert "exists" in line
    np.testing.assert_array_equal(read_mrc(tmp_path / "mic.mrc").data, before)
    result = runner.invoke(app, _simulate_args(template_file, tmp_path, "--overwrite"))
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(read_mrc(tmp_path / "mic.mrc").data, before)  # same seed


def test_simulate_micrograph_bad_input(template_file, tmp_path):
    line = _one_error_line(runner.invoke(
        app, _simulate_args(template_file, tmp_path, "--pixel-size", "-1")))
    assert "--pixel-size -1 A is outside the accepted range" in line
    args = _simulate_args(template_file, tmp_path)
    args[args.index("160")] = "20"
    line = _one_error_line(runner.invoke(app, args))
    assert "smaller than the template" in line
    args = _simulate_args(template_file, tmp_path)
    args[2] = str(tmp_path / "missing.mrc")
    assert "missing.mrc" in _one_error_line(runner.invoke(app, args))
    image = write_mrc(tmp_path / "flat.mrc", np.ones((40, 40)), pixel_size=2.0)
    args = _simulate_args(template_file, tmp_path)
    args[2] = str(image)
    assert "3D volume" in _one_error_line(runner.invoke(app, args))
    assert not (tmp_path / "mic.mrc").exists() and not (tmp_path / "truth.star").exists()


def test_content_suffix_skips_compression_and_case():
    from difftm.io.paths import content_suffix

    assert content_suffix(Path("a/6ZU5.CIF.gz")) == ".cif"
    assert content_suffix(Path("stack.mrcs.bz2")) == ".mrcs"
    assert content_suffix(Path("model.pdb.bz2"), (".gz",)) == ".bz2"
    assert content_suffix(Path("noext")) == ""
    assert content_suffix(Path("x.gz")) == ""
