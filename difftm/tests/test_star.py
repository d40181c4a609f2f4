"""RELION 3.1+ particle STAR files: block names, RELION labels, round trips, bad input."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import starfile

from difftm.io.star import (
    make_optics_table,
    make_particles_table,
    particles_to_plain,
    read_particles_star,
    write_particles_star,
)


def _plain(n: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "x": rng.uniform(0, 500, n),
        "y": rng.uniform(0, 400, n),
        "rot": rng.uniform(-180, 180, n),
        "tilt": rng.uniform(0, 180, n),
        "psi": rng.uniform(-180, 180, n),
        "defocus_u": np.full(n, 12000.0),
        "defocus_v": np.full(n, 11500.0),
        "defocus_angle": np.full(n, 30.0),
        "snr": rng.uniform(7, 12, n),
        "zscore": rng.uniform(7, 12, n),
        "mean": np.zeros(n),
        "sigma": np.ones(n),
    }


def test_written_file_has_relion_blocks_and_labels(tmp_path):
    plain = _plain()
    particles = make_particles_table(
        plain, micrograph_name="mic.mrc", pixel_size=1.5, figure_of_merit="zscore"
    )
    optics = make_optics_table(pixel_size=1.5, voltage_kv=300, cs_mm=2.7, amplitude_contrast=0.07)
    path = write_particles_star(tmp_path / "p.star", particles, optics)
    text = path.read_text()
    blocks = re.findall(r"^data_\S*", text, flags=re.M)
    assert blocks == ["data_optics", "data_particles"]
    assert re.search(r"^# version 30001$", text, flags=re.M)
    for label in (
        "rlnCoordinateX", "rlnCoordinateY", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi",
        "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnOpticsGroup",
        "rlnMicrographName", "rlnAutopickFigureOfMerit", "difftmSNR", "difftmZScore",
        "difftmMean", "difftmSigma", "difftmCoordinateXAngst", "rlnVoltage",
        "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnImagePixelSize",
        "rlnMicrographPixelSize", "rlnOpticsGroupName",
    ):
        assert re.search(rf"^_{label} #\d+$", text, flags=re.M), label

    # starfile (independently of our reader) sees the RELION labels and values
    raw = starfile.read(path, always_dict=True)
    assert set(raw) == {"optics", "particles"}
    np.testing.assert_allclose(raw["particles"]["rlnCoordinateX"], plain["x"], atol=1e-6)
    np.testing.assert_allclose(raw["particles"]["rlnAnglePsi"], plain["psi"], atol=1e-6)
    np.testing.assert_allclose(raw["particles"]["rlnAutopickFigureOfMerit"], plain["zscore"],
                               atol=1e-6)
    np.testing.assert_allclose(raw["particles"]["difftmCoordinateYAngst"], plain["y"] * 1.5,
                               atol=1e-5)
    assert (raw["particles"]["rlnOpticsGroup"] == 1).all()
    assert raw["optics"]["rlnMicrographPixelSize"].iloc[0] == 1.5


def test_round_trip_through_reader(tmp_path):
    plain = _plain(5)
    particles = make_particles_table(plain, micrograph_name="m.mrc")
    optics = make_optics_table(pixel_size=1.0)
    write_particles_star(tmp_path / "r.star", particles, optics)
    optics2, particles2 = read_particles_star(tmp_path / "r.star")
    assert list(particles2.columns) == list(particles.columns)
    back = particles_to_plain(particles2)
    for key in ("x", "y", "rot", "tilt", "psi", "snr"):
        np.testing.assert_allclose(back[key], plain[key], atol=1e-6)
    assert (back["micrograph"] == "m.mrc").all()
    assert optics2["rlnOpticsGroupName"].iloc[0] == "opticsGroup1"


def test_empty_particle_table(tmp_path):
    particles = make_particles_table({"x": np.array([]), "y": np.array([])})
    write_particles_star(tmp_path / "e.star", particles, make_optics_table(pixel_size=1.0))
    optics, back = read_particles_star(tmp_path / "e.star")
    assert len(back) == 0 and "rlnCoordinateX" in back.columns and len(optics) == 1


def test_no_overwrite_and_validation(tmp_path):
    particles = make_particles_table({"x": [1.0], "y": [2.0]})
    optics = make_optics_table(pixel_size=1.0)
    path = write_particles_star(tmp_path / "a.star", particles, optics)
    with pytest.raises(FileExistsError, match="a.star"):
        write_particles_star(path, particles, optics)
    write_particles_star(path, particles, optics, overwrite=True)
    bad_group = particles.assign(rlnOpticsGroup=2)
    with pytest.raises(ValueError, match="optics groups"):
        write_particles_star(tmp_path / "b.star", bad_group, optics)
    with pytest.raises(ValueError, match="NaN"):
        write_particles_star(tmp_path / "c.star", particles.assign(rlnCoordinateX=np.nan), optics)
    with pytest.raises(ValueError, match="unknown particle column"):
        make_particles_table({"x": [1.0], "y": [2.0], "bogus": [3.0]})
    with pytest.raises(ValueError, match="rows"):
        make_particles_table({"x": [1.0, 2.0], "y": [2.0]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.star"]


def test_reader_errors_and_legacy(tmp_path):
    with pytest.raises(FileNotFoundError, match="none.star"):
        read_particles_star(tmp_path / "none.star")
    broken = tmp_path / "broken.star"
    broken.write_text("data_particles\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n1 2 3\n")
    with pytest.raises(ValueError, match="broken.star"):
        read_particles_star(broken)
    other = tmp_path / "other.star"
    starfile.write({"model": pd.DataFrame({"rlnResolution": [3.0]})}, other)
    with pytest.raises(ValueError, match="no particle table"):
        read_particles_star(other)
    legacy = tmp_path / "legacy.star"
    starfile.write(pd.DataFrame({"rlnCoordinateX": [5.0], "rlnCoordinateY": [6.0]}), legacy)
    optics, particles = read_particles_star(legacy)
    assert optics.empty and particles["rlnCoordinateY"].iloc[0] == 6.0
