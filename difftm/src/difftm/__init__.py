"""difftm: 2D template matching for cryo-EM.

Layers (see docs/ARCHITECTURE.md): ``io`` (MRC, STAR, atomic models), ``physics`` (wavelength,
CTF, scattering potential, dose, MTF), ``geometry`` (Euler angles, SO(3) grids, symmetry),
``fourier`` (Fourier-slice projector, filters, padding), ``simulate`` (templates and
micrographs), ``search`` (the 2DTM engine), ``stats`` (thresholds, p-value, peaks),
``report`` (figures, HTML) and ``cli`` (the ``difftm`` command).
"""

__version__ = "0.1.0"
