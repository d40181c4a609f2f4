"""Template simulation (potential + exposure + MTF) and the `simulate template` command."""

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from difftm.cli.simulate_template import register
from difftm.fourier.frequencies import radial_frequency_3d
from difftm.io.models import Atoms, load_model
from difftm.io.mrc import read_mrc
from difftm.physics.dose import dose_filter
from difftm.physics.mtf import DETECTORS
from difftm.physics.potential import simulate_potential
from difftm.simulate.template import simulate_template, suggest_box, template_filter

from model_files import model_path


@pytest.fixture(scope="module")
def ubiquitin() -> Atoms:
    return load_model(model_path("1ubi.pdb.gz"))


def test_no_filters_is_the_potential(ubiquitin):
    path = model_path("1ubi.pdb.gz")
    from_path = simulate_template(path, 1.5, 40)
    torch.testing.assert_close(from_path, simulate_potential(ubiquitin, 1.5, 40))
    torch.testing.assert_close(simulate_template(ubiquitin, 1.5, 40, mtf="none"), from_path)


def test_exposure_and_mtf_are_radial_fourier_filters(ubiquitin):
    px, box = 1.2, 48
    base = simulate_potential(ubiquitin, px, box, dtype=torch.float64)
    filtered = simulate_template(ubiquitin, px, box, fluence=40.0, mtf="falcon4",
                                 dtype=torch.float64)
    k = radial_frequency_3d((box, box, box), px, rfft=True, dtype=torch.float64)
    expected = dose_filter(k, 40.0) * DETECTORS["falcon4"](2 * px * k)
    ratio_spectrum = torch.fft.rfftn(filtered) / torch.fft.rfftn(base)
    big = torch.fft.rfftn(base).abs() > 1e-3 * torch.fft.rfftn(base).abs().max()
    torch.testing.assert_close(ratio_spectrum[big].real, expected[big], atol=1e-9, rtol=1e-9)
    # the integral (k = 0) is kept; high frequencies are damped
    assert filtered.sum().item() == pytest.approx(base.sum().item(), rel=1e-10)
    assert filtered.max() < base.max()
    torch.testing.assert_close(template_filter(box, px, 40.0, "falcon4",
                                               dtype=torch.float64), expected)
    assert template_filter(box, px) is None


def test_suggest_box_fits_model(ubiquitin):
    box = suggest_box(ubiquitin, 1.0)
    assert box % 2 == 0 and 40 < box < 60
    simulate_template(ubiquitin, 1.0, None)  # default box works


def test_bad_filter_arguments_fail_before_simulating(ubiquitin):
    with pytest.raises(ValueError, match="unknown MTF"):
        simulate_template(ubiquitin, 1.0, 64, mtf="k7")
    with pytest.raises(ValueError, match="fluence"):
        simulate_template(ubiquitin, 1.0, 64, fluence=-5.0)


def cli_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _group() -> None:
        """simulate"""

    register(app)
    return app


def run_cli(*args):
    return CliRunner().invoke(cli_app(), ["template", *map(str, args)])


def test_cli_writes_template(tmp_path, ubiquitin):
    out = tmp_path / "ubq.mrc"
    result = run_cli(model_path("1ubi.pdb.gz"), "--pixel-size", 1.5, "--box", 40,
                     "--output", out, "--fluence", 30, "--mtf", "k3", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    vol = read_mrc(out)
    assert vol.data.shape == (40, 40, 40)
    assert vol.pixel_size == pytest.approx(1.5)
    expected = simulate_template(ubiquitin, 1.5, 40, fluence=30.0, mtf="k3")
    np.testing.assert_allclose(vol.data, expected.numpy(), rtol=1e-5, atol=1e-5)
    # no overwrite without --overwrite; the file is left as it was
    before = out.read_bytes()
    again = run_cli(model_path("1ubi.pdb.gz"), "--pixel-size", 2, "--box", 32, "-o", out)
    assert again.exit_code == 2
    assert "exists" in again.output
    assert out.read_bytes() == before
    forced = run_cli(model_path("1ubi.pdb.gz"), "--pixel-size", 2, "--box", 32, "-o", out,
                     "--overwrite")
    assert forced.exit_code == 0, forced.output
    assert read_mrc(out).data.shape == (32, 32, 32)


def one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:")
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in result.output


def test_cli_bad_inputs(tmp_path):
    model = model_path("1ubi.pdb.gz")
    out = tmp_path / "t.mrc"
    one_line_error(run_cli(tmp_path / "missing.pdb", "--pixel-size", 1, "--box", 64, "-o",
                           out), "missing.pdb")
    junk = tmp_path / "notes.pdb"
    junk.write_text("this is not a structure\n")
    one_line_error(run_cli(junk, "--pixel-size", 1, "--box", 64, "-o", out), "notes.pdb")
    one_line_error(run_cli(model, "--pixel-size", -1, "--box", 64, "-o", out), "pixel-size")
    one_line_error(run_cli(model, "--pixel-size", 1, "--box", 16, "-o", out),
                   "box 16 too small for model")
    one_line_error(run_cli(model, "--pixel-size", 1, "--box", 64, "-o", out, "--mtf", "k9"),
                   "unknown MTF")
    one_line_error(run_cli(model, "--pixel-size", 1, "--box", 64, "-o", out, "--fluence", 0),
                   "--fluence")
    one_line_error(run_cli(model, "--pixel-size", 1, "--box", 64,
                           "-o", tmp_path / "no_dir" / "t.mrc"), "no_dir")
    one_line_error(run_cli(model, "--pixel-size", 1, "--box", 64, "-o", out, "--device",
                           "gpu0"), "--device")
    if not torch.cuda.is_available():
        one_line_error(run_cli(model, "--pixel-size", 1, "--box", 64, "-o", out, "--device",
                               "cuda"), "CUDA is not available")
    assert not out.exists()


def test_mounted_under_difftm_simulate(tmp_path):
    main = pytest.importorskip("difftm.cli.main")
    out = tmp_path / "t.mrc"
    result = CliRunner().invoke(main.app, ["simulate", "template", str(model_path(
        "1ubi.pdb.gz")), "--pixel-size", "2", "--box", "32", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()
