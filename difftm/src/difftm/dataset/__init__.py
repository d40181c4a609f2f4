"""Whole datasets: many micrographs, each with its own CTF, searched as one resumable job.

Reading order: ``inputs`` (micrographs and their CTF from a RELION ``micrographs_ctf.star``,
CTFFIND4/5 output files or a glob with one CTF) -> ``run`` (one search sub-folder per
micrograph, the dataset manifest, in process or as Dask tasks) -> ``combine`` (per-micrograph
and combined particle STAR files and the dataset HTML report).
"""
