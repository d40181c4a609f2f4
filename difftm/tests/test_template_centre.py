"""The template frame: which model point sits at the centre voxel, and its record in the MRC."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from difftm.cli.main import app
from difftm.io.models import Atoms, centre_of_mass, load_model
from difftm.io.mrc import read_mrc
from difftm.simulate.template import (
    parse_centre,
    read_template_centre,
    resolve_centre,
    simulate_template,
)

from model_files import model_path

runner = CliRunner()


def _iron_pdb(path, xyz):
    x, y, z = xyz
    path.write_text(
        f"HETATM    1 FE    FE A   1    {x:8.3f}{y:8.3f}{z:8.3f}  1.00 10.00          FE  \n"
        "END\n")
    return path


def _peak_zyx(volume) -> tuple[int, int, int]:
    v = np.asarray(volume)
    return tuple(int(i) for i in np.unravel_index(np.argmax(v), v.shape))


def test_box_centre_keeps_model_coordinates():
    atoms = Atoms.from_arrays([[20.0, 14.0, 9.0]], ["Fe"], b_factors=[10.0])
    vol = simulate_template(atoms, 1.0, 32, centre="box")
    assert _peak_zyx(vol) == (9, 14, 20)  # voxel index = coordinate / pixel size
    moved = Atoms.from_arrays([[20.0, 14.0, 8.0]], ["Fe"], b_factors=[10.0])
    assert _peak_zyx(simulate_template(moved, 2.0, 32, centre="box")) == (4, 7, 10)
    # the default (centre of mass) puts the atom at the centre voxel
    assert _peak_zyx(simulate_template(atoms, 1.0, 32)) == (16, 16, 16)
    # an explicit point goes to the centre voxel
    vol = simulate_template(atoms, 1.0, 32, centre=(18.0, 14.0, 9.0))
    assert _peak_zyx(vol) == (16, 16, 18)


def test_centre_parsing_and_errors():
    assert parse_centre("COM") == "com" and parse_centre(" box") == "box"
    assert parse_centre("1,2.5,-3") == (1.0, 2.5, -3.0)
    for bad in ("middle", "1,2", "1,2,x", "nan,1,2"):
        with pytest.raises(ValueError, match="--center"):
            parse_centre(bad)
    atoms = Atoms.from_arrays([[1.0, 2.0, 3.0], [3.0, 2.0, 3.0]], ["C", "C"])
    np.testing.assert_allclose(resolve_centre(atoms, "com", 1.0, None), [2.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="--box"):
        resolve_centre(atoms, "box", 1.0, None)
    np.testing.assert_allclose(resolve_centre(atoms, "box", 1.0, 4), [2.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="outside a box of 3"):
        resolve_centre(atoms, "box", 1.0, 3)  # z = 3 A is voxel 3 of 0..2
    below = Atoms.from_arrays([[-2.0, 1.0, 1.0]], ["C"])
    with pytest.raises(ValueError, match="outside a box of 64"):
        resolve_centre(below, "box", 1.0, 64)  # negative coordinates never fit the frame


def test_cli_center_box_keeps_coordinates_and_records_the_centre(tmp_path):
    pdb = _iron_pdb(tmp_path / "fe.pdb", (20.0, 14.0, 9.0))
    out = tmp_path / "t.mrc"
    res = runner.invoke(app, ["simulate", "template", str(pdb), "--keep-ligands",
                              "--pixel-size", "1", "--box", "32", "--center", "box",
                              "-o", str(out), "--device", "cpu", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "centre (box)" in res.output
    assert _peak_zyx(read_mrc(out).data) == (9, 14, 20)
    with mrcfile.open(out) as mrc:
        origin = mrc.header.origin
        assert (float(origin.x), float(origin.y), float(origin.z)) == (0.0, 0.0, 0.0)
        labels = [bytes(lb).decode().strip() for lb in mrc.header.label[: mrc.header.nlabl]]
    assert any(lb.startswith("difftm centre 16.000 16.000 16.000 A at voxel 16") for lb in labels)
    np.testing.assert_allclose(read_template_centre(out), [16.0, 16.0, 16.0])
    info = runner.invoke(app, ["info", str(out)], terminal_width=200)
    assert info.exit_code == 0 and "16.000 16.000 16.000 A at voxel 16 (box)" in info.output
    # box mode needs the box of the map
    res = runner.invoke(app, ["simulate", "template", str(pdb), "--keep-ligands",
                              "--pixel-size", "1", "--center", "box", "-o",
                              str(tmp_path / "u.mrc")])
    assert res.exit_code == 2 and "--box" in res.output
    res = runner.invoke(app, ["simulate", "template", str(pdb), "--keep-ligands",
                              "--pixel-size", "1", "--center", "here", "-o",
                              str(tmp_path / "u.mrc")])
    assert res.exit_code == 2 and "--center" in res.output


def test_cli_default_and_explicit_centres_are_recorded(tmp_path):
    path = model_path("1ubi.pdb.gz")
    atoms = load_model(path)
    com = centre_of_mass(atoms)
    out = tmp_path / "com.mrc"
    res = runner.invoke(app, ["simulate", "template", str(path), "--pixel-size", "2",
                              "--box", "32", "-o", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(read_template_centre(out), com, atol=1e-3)
    point = tmp_path / "pt.mrc"
    res = runner.invoke(app, ["simulate", "template", str(path), "--pixel-size", "2",
                              "--box", "40", "--center", "30,28,16", "-o", str(point),
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(read_template_centre(point), [30.0, 28.0, 16.0], atol=1e-3)
    expected = simulate_template(atoms, 2.0, 40, centre=(30.0, 28.0, 16.0))
    torch.testing.assert_close(torch.from_numpy(read_mrc(point).data), expected)


def test_search_records_the_template_centre(tmp_path):
    from difftm.io.mrc import write_mrc
    from difftm.search.config import SearchConfig
    from difftm.search.engine import run_search
    from difftm.simulate.template import write_template

    from search_helpers import blob_volume, white_noise

    write_mrc(tmp_path / "mic.mrc", white_noise((48, 48), 1), 2.0)
    write_template(tmp_path / "tpl.mrc", blob_volume(16), 2.0, (1.0, -2.5, 30.0))
    res = run_search(SearchConfig(
        micrograph=tmp_path / "mic.mrc", template=tmp_path / "tpl.mrc", output=tmp_path / "o",
        defocus_u=9000.0, defocus_range=0.0, out_of_plane_step=90.0, in_plane_step=120.0,
        device="cpu"))
    np.testing.assert_allclose(res.metadata["template_centre_angstrom"], [1.0, -2.5, 30.0],
                               atol=1e-4)
