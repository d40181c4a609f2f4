"""A small convolutional denoiser for the accelerated search's coarse pass (optional).

:mod:`difftm.denoise.model` holds the network, its weights file and tiled inference;
:mod:`difftm.denoise.train` simulates training pairs from atomic models and trains it
(``difftm train-denoiser``). docs/ACCELERATED.md has the ablation that decides its use.
"""
