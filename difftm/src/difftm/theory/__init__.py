"""Image-formation theory of 2DTM: expected SNR and the molecular-weight limit.

:mod:`difftm.theory.snr` gives the expected matched-filter SNR of a target (an atomic model or
a mass of average protein) under given imaging conditions; :mod:`difftm.theory.limits` the
smallest detectable and alignable masses. docs/THEORY.md derives every formula.
"""
