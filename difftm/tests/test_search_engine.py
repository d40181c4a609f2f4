"""The search engine end to end on small planted images: recovery, invariance, resume, errors."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest
import torch

from difftm.geometry.grids import orientation_grid
from difftm.search.accumulator import aligned_span
from difftm.search.config import SearchConfig
from difftm.search.engine import SearchInterrupted, build_correlator, run_search
from difftm.search.results import load_results

from search_helpers import blob_volume, plant, white_noise, write_inputs

PX = 2.0
STEPS = (30.0, 30.0)
PLANTS = [((40, 50), 37), ((90, 100), 301), ((60, 140), 480)]  # (y, x), search index


def _planted(tmp_path, seed=0, shape=(128, 176), box=24, amplitude=30.0):
    vol = blob_volume(box, seed=11)
    cfg = SearchConfig(micrograph=tmp_path / "x.mrc", template=tmp_path / "y.mrc",
                       output=tmp_path / "o", pixel_size=PX, defocus_u=9000.0,
                       defocus_range=0, whiten=False)
    angles = orientation_grid(*STEPS)
    corr = build_correlator(cfg, np.zeros(shape, np.float32) + white_noise(shape, 99), vol,
                            angles, torch.zeros(1, dtype=torch.float64), torch.device("cpu"))
    image = white_noise(shape, seed)
    for (y, x), idx in PLANTS:
        t = corr.templates(torch.tensor([idx]))[0].numpy()
        plant(image, t, y, x, amplitude)
    return image, vol, angles


def _config(tmp_path, mic, tpl, out="out", **kw):
    base = dict(micrograph=mic, template=tpl, output=tmp_path / out, pixel_size=PX,
                defocus_u=9000.0, defocus_range=0.0, out_of_plane_step=STEPS[0],
                in_plane_step=STEPS[1], whiten=False, device="cpu")
    base.update(kw)
    return SearchConfig(**base)


def test_planted_templates_are_found_at_their_centres_and_poses(tmp_path):
    image, vol, angles = _planted(tmp_path)
    mic, tpl = write_inputs(tmp_path, image, vol, PX)
    res = run_search(_config(tmp_path, mic, tpl, batch_size=7))
    snr = res.maps["snr"]
    for (y, x), idx in PLANTS:
        win = snr[y - 2 : y + 3, x - 2 : x + 3]
        assert np.unravel_index(np.argmax(win), win.shape) == (2, 2)
        assert res.best_index[y, x] == idx
        assert snr[y, x] > 7.0
        np.testing.assert_allclose(
            [res.maps["rot"][y, x], res.maps["tilt"][y, x], res.maps["psi"][y, x]],
            angles[idx].numpy(), atol=1e-3)
    # z-score map is (MIP - mean) / sigma, sigma a standard deviation over all poses
    v = res.valid_mask()
    np.testing.assert_allclose(
        res.maps["zscore"][v],
        (res.maps["snr"][v] - res.maps["mean"][v]) / res.maps["sigma"][v], rtol=1e-4, atol=1e-4)
    assert res.metadata["n_search"] == angles.shape[0]


def test_results_do_not_depend_on_batch_size_or_chunking_and_resume_is_exact(tmp_path):
    image, vol, _ = _planted(tmp_path, seed=1)
    mic, tpl = write_inputs(tmp_path, image, vol, PX)
    coarse = dict(out_of_plane_step=45.0, in_plane_step=40.0)
    one = run_search(_config(tmp_path, mic, tpl, "b1", batch_size=1, chunk_batches=10_000,
                             **coarse))
    many = run_search(_config(tmp_path, mic, tpl, "b16", batch_size=5, chunk_batches=3,
                              **coarse))
    np.testing.assert_array_equal(one.best_index, many.best_index)
    for name in one.maps:  # exact fixed-point sums: bit-identical for any batching
        np.testing.assert_array_equal(one.maps[name], many.maps[name])
    # crash after 2 chunks, then resume with the same command: identical to uninterrupted
    # runs with other batch sizes (chunks of 3 batches of 3, rounded up to a multiple of the
    # accumulator block: 96 search positions; the grid has 198)
    cfg = _config(tmp_path, mic, tpl, "crash", batch_size=3, chunk_batches=3, **coarse)
    with pytest.raises(SearchInterrupted):
        run_search(cfg, stop_after_chunks=1)
    assert (tmp_path / "crash" / "checkpoint.npz").exists()
    resumed = run_search(cfg)
    assert resumed.metadata["timings"]["resumed_from"] == aligned_span(3, 9) == 96
    for name in many.maps:
        np.testing.assert_array_equal(resumed.maps[name], many.maps[name])
    np.testing.assert_array_equal(resumed.best_index, many.best_index)
    assert not (tmp_path / "crash" / "checkpoint.npz").exists()
    again = load_results(tmp_path / "crash")
    np.testing.assert_array_equal(again.maps["snr"], many.maps["snr"])


def test_defocus_planes_and_flatfield_maps(tmp_path):
    vol = blob_volume(24, seed=11)
    mic, tpl = write_inputs(tmp_path, white_noise((128, 176), 5), vol, PX)
    res = run_search(_config(tmp_path, mic, tpl, defocus_range=400.0, defocus_step=200.0,
                             batch_size=8, out_of_plane_step=45.0, in_plane_step=45.0))
    assert res.metadata["n_defocus"] == 5
    assert res.metadata["n_search"] == 5 * res.metadata["n_orientations"]
    offsets = set(np.unique(res.maps["defocus_offset"][res.valid_mask()]).tolist())
    assert offsets <= {-400.0, -200.0, 0.0, 200.0, 400.0}
    v = res.valid_mask()
    assert abs(res.metadata["global_sd"] - 1.0) < 0.1  # small image: few independent samples
    np.testing.assert_allclose(
        res.maps["snr_flatfield"][v],
        (res.maps["snr"][v] - res.metadata["global_mean"]) / res.metadata["global_sd"],
        rtol=1e-4, atol=1e-4)
    assert (res.maps["sigma"][v] > 0).all()


def test_bad_inputs_get_one_clear_error(tmp_path):
    vol = blob_volume(24)
    small = white_noise((20, 20), 0)
    mic, tpl = write_inputs(tmp_path, small, vol, PX)
    with pytest.raises(ValueError, match="smaller than the template"):
        run_search(_config(tmp_path, mic, tpl, "e1"))
    img = white_noise((64, 64), 0)
    img[3, 3] = np.nan
    mic, tpl = write_inputs(tmp_path, white_noise((64, 64), 0), vol, PX)
    with mrcfile.new(mic, overwrite=True) as m:
        m.set_data(img)
        m.voxel_size = PX
    with pytest.raises(ValueError, match="NaN"):
        run_search(_config(tmp_path, mic, tpl, "e2"))
    mic, tpl = write_inputs(tmp_path, white_noise((64, 64), 0), vol, PX)
    with pytest.raises(ValueError, match="pixel size"):
        run_search(_config(tmp_path, mic, tpl, "e3", pixel_size=3.0))


def test_output_folder_of_another_run_is_refused_unless_overwrite(tmp_path):
    image, vol, _ = _planted(tmp_path, seed=3)
    mic, tpl = write_inputs(tmp_path, image, vol, PX)
    run_search(_config(tmp_path, mic, tpl, "same", batch_size=16))
    with pytest.raises(FileExistsError, match="another search"):
        run_search(_config(tmp_path, mic, tpl, "same", in_plane_step=45.0))
    res = run_search(_config(tmp_path, mic, tpl, "same", in_plane_step=45.0, overwrite=True))
    assert res.metadata["in_plane_step"] == 45.0


def test_empty_orientation_grid_is_an_error(tmp_path, monkeypatch):
    import difftm.search.engine as engine

    monkeypatch.setattr(engine, "orientation_grid",
                        lambda *a, **k: torch.zeros((0, 3), dtype=torch.float64))
    mic, tpl = write_inputs(tmp_path, white_noise((64, 64), 0), blob_volume(24), PX)
    with pytest.raises(ValueError, match="orientation grid is empty"):
        run_search(_config(tmp_path, mic, tpl, "empty"))


def test_slow_fft_sizes_are_padded_and_maps_keep_the_micrograph_shape(tmp_path):
    """127 x 178 (prime, 2 x 89) is searched on a 128 x 180 grid whose padding is seeded
    white noise: the maps have the micrograph's shape, the planted templates are found where
    they are, and noise correlations keep zero mean and unit variance up to the edges."""
    from difftm.search.preprocess import fast_shape

    shape = (127, 178)
    assert fast_shape(shape) == (128, 180)
    image, vol, _ = _planted(tmp_path, shape=shape, seed=3)
    mic, tpl = write_inputs(tmp_path, image, vol, PX)
    res = run_search(_config(tmp_path, mic, tpl, "slow", batch_size=7))
    assert res.maps["snr"].shape == shape and res.best_index.shape == shape
    for (y, x), idx in PLANTS:
        assert res.best_index[y, x] == idx
        win = res.maps["snr"][y - 3 : y + 4, x - 3 : x + 4]
        assert win.max() == res.maps["snr"][y, x] > 15
    # pure noise of the same slow size: unit-variance correlations everywhere in the image
    noise = white_noise(shape, seed=8)
    # (no edge taper here: it lowers the variance next to the edges on purpose)
    cfg = SearchConfig(micrograph=tmp_path / "n.mrc", template=tmp_path / "t.mrc",
                       output=tmp_path / "n", pixel_size=PX, defocus_u=9000.0, edge_taper=0)
    corr = build_correlator(cfg, noise, vol, orientation_grid(40.0, 40.0),
                            torch.zeros(1, dtype=torch.float64), torch.device("cpu"))
    assert corr.shape == (128, 180) and corr.image_shape == shape
    cc = corr.correlate(torch.arange(0, 96))[:, : shape[0], : shape[1]].double()
    assert abs(float(cc.mean())) < 0.05 and abs(float(cc.std()) - 1.0) < 0.05
    # next to the padded edges (templates overhang into the fill): still unit variance; the
    # mean of these few correlated pixels is noisier
    edge = torch.cat([cc[:, :, -6:].reshape(-1), cc[:, -6:, :].reshape(-1)])
    assert abs(float(edge.std()) - 1.0) < 0.08 and abs(float(edge.mean())) < 0.25
