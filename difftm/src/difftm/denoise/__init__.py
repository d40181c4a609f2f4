"""A small convolutional denoiser, studied for the accelerated search's coarse pass.

The ablation (benchmarks/denoiser_ablation.py, docs/ACCELERATED.md) found that it does not
separate true particles from noise better than the raw, whitened micrograph (the matched
filter on whitened data is already close to optimal for shot noise; on held-out targets the
denoised coarse maps ranked true particles lower), so the search does not use it and no
weights ship. :mod:`difftm.denoise.model` holds the network and tiled inference,
:mod:`difftm.denoise.train` the simulated training pairs and the training loop, kept so the
ablation can be rerun and improved.
"""
