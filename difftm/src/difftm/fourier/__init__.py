"""difftm.fourier."""
