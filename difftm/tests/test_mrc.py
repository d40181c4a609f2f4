"""MRC reading/writing: real old-header micrograph, round trips, and bad files."""

from __future__ import annotations

import os
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from difftm.io.mrc import read_mrc, read_mrc_header, write_mrc

_DEFAULT_SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SHARED = Path(os.environ.get("DIFFTM_SHARED_DATA", _DEFAULT_SHARED))
MICROGRAPH = SHARED / "micrographs" / "Ucsf_stack_1142_DW.mrc"


@pytest.fixture
def real_micrograph() -> Path:
    if not MICROGRAPH.exists():
        pytest.skip(f"shared test data not found at {MICROGRAPH}")
    return MICROGRAPH


def test_real_micrograph_old_header(real_micrograph):
    image = read_mrc(real_micrograph)
    assert image.data.shape == (927, 959)
    assert image.data.dtype == np.float32
    # values documented in shared/data/README.md
    assert image.data.mean(dtype=np.float64) == pytest.approx(6802.13, abs=0.01)
    assert image.data.std(dtype=np.float64) == pytest.approx(8.896, abs=0.001)
    assert image.data.min() == pytest.approx(6768.2, abs=0.05)
    # header says 1.0 A with cell = grid: no calibration, flagged
    assert image.pixel_size == 1.0
    assert not image.pixel_size_calibrated
    assert any("no calibration" in w for w in image.warnings)
    assert image.nversion == 0
    header = read_mrc_header(real_micrograph)
    assert header["shape"] == (927, 959)
    assert not header["pixel_size_calibrated"]


def test_round_trip_2d_keeps_pixel_size_and_stats(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(37, 51)).astype(np.float32)
    out = write_mrc(tmp_path / "a.mrc", data, pixel_size=1.23)
    image = read_mrc(out)
    np.testing.assert_array_equal(image.data, data)
    assert image.pixel_size == pytest.approx(1.23, rel=1e-6)
    assert image.pixel_size_calibrated
    assert image.warnings == []
    with mrcfile.open(out) as mrc:  # strict mode: a valid MRC2014 file
        assert 20140 <= int(mrc.header.nversion) <= 20149
        assert float(mrc.header.dmax) == pytest.approx(float(data.max()))
        assert float(mrc.header.dmin) == pytest.approx(float(data.min()))
        assert float(mrc.header.dmean) == pytest.approx(float(data.mean()), rel=1e-5)
        assert float(mrc.header.rms) == pytest.approx(float(data.std()), rel=1e-4)
    assert mrcfile.validate(str(out), print_file=open(os.devnull, "w"))


def test_round_trip_volume_and_torch_and_single_section(tmp_path):
    vol = torch.arange(4 * 5 * 6, dtype=torch.float64).reshape(4, 5, 6)
    write_mrc(tmp_path / "v.mrc", vol, pixel_size=2.5)
    image = read_mrc(tmp_path / "v.mrc")
    assert image.data.shape == (4, 5, 6)
    assert image.data[1, 2, 3] == vol[1, 2, 3].item()
    assert image.pixel_size == pytest.approx(2.5)
    # a 3D file with one section comes back 2D
    write_mrc(tmp_path / "one.mrc", np.ones((1, 8, 9), np.float32), pixel_size=1.5)
    assert read_mrc(tmp_path / "one.mrc").data.shape == (8, 9)


def test_no_overwrite_unless_asked(tmp_path):
    path = tmp_path / "x.mrc"
    write_mrc(path, np.zeros((4, 4)), pixel_size=1.0)
    with pytest.raises(FileExistsError, match="x.mrc"):
        write_mrc(path, np.ones((4, 4)), pixel_size=1.0)
    assert read_mrc(path).data.max() == 0.0  # untouched
    write_mrc(path, np.ones((4, 4)), pixel_size=1.0, overwrite=True)
    assert read_mrc(path).data.min() == 1.0
    # no temporary files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mrc"]


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        write_mrc(tmp_path / "n.mrc", np.array([[1.0, np.nan]]), pixel_size=1.0)
    with pytest.raises(ValueError, match="pixel size"):
        write_mrc(tmp_path / "p.mrc", np.ones((3, 3)), pixel_size=-1.0)
    with pytest.raises(ValueError, match="2D or 3D"):
        write_mrc(tmp_path / "d.mrc", np.ones(3), pixel_size=1.0)
    assert list(tmp_path.iterdir()) == []


def test_missing_truncated_and_not_mrc(tmp_path, real_micrograph):
    with pytest.raises(FileNotFoundError, match="nope.mrc"):
        read_mrc(tmp_path / "nope.mrc")
    truncated = tmp_path / "t.mrc"
    truncated.write_bytes(real_micrograph.read_bytes()[:100_000])
    with pytest.raises(ValueError, match="truncated") as err:
        read_mrc(truncated)
    assert "t.mrc" in str(err.value) and "\n" not in str(err.value)
    text = tmp_path / "text.mrc"
    text.write_text("this is not an image\n" * 100)
    with pytest.raises(ValueError, match="text.mrc") as err:
        read_mrc(text)
    assert "\n" not in str(err.value)
    tiny = tmp_path / "tiny.mrc"
    tiny.write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="not an MRC"):
        read_mrc(tiny)


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_nonfinite_values_reported(tmp_path):
    path = tmp_path / "nan.mrc"
    with mrcfile.new(path) as mrc:  # written by another program
        mrc.set_data(np.array([[1.0, np.nan], [np.inf, 2.0]], dtype=np.float32))
    with pytest.raises(ValueError, match="2 of 4 values are NaN or infinite"):
        read_mrc(path)
    image = read_mrc(path, allow_nonfinite=True)
    assert any("NaN" in w for w in image.warnings)


def test_zero_voxel_size_flagged(tmp_path):
    path = tmp_path / "z.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.ones((6, 7), np.float32))
        mrc.voxel_size = 0.0
    image = read_mrc(path)
    assert image.pixel_size == 1.0 and not image.pixel_size_calibrated


@pytest.mark.parametrize("order", [(2, 1, 3), (3, 1, 2), (2, 3, 1)])
def test_axis_order_in_the_header_is_honoured(tmp_path, order):
    """A volume stored with columns/rows/sections along other axes reads back as [z, y, x]."""
    import mrcfile

    rng = np.random.default_rng(0)
    vol = rng.standard_normal((4, 5, 6)).astype(np.float32)  # [z, y, x]
    # array axes of the file are (sections, rows, columns) = axes (maps, mapr, mapc)
    along = (order[2], order[1], order[0])
    stored = np.ascontiguousarray(vol.transpose([3 - a for a in along]))
    path = tmp_path / "perm.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(stored)
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = order
        mrc.voxel_size = 2.0
    np.testing.assert_array_equal(read_mrc(path).data, vol)


def test_impossible_axis_order_is_refused(tmp_path):
    import mrcfile

    path = tmp_path / "bad_axes.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((3, 4), dtype=np.float32))
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = (1, 1, 3)
    with pytest.raises(ValueError, match="axis order"):
        read_mrc(path)


def test_image_stored_transposed_reads_as_y_x(tmp_path):
    import mrcfile

    img = np.arange(12, dtype=np.float32).reshape(3, 4)  # [y, x]
    path = tmp_path / "t.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.ascontiguousarray(img.T))  # columns run along y
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = (2, 1, 3)
    np.testing.assert_array_equal(read_mrc(path).data, img)
