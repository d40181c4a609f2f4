"""Atomic writes and the on-disk checkpoint of a running search.

A checkpoint holds the merged accumulator of every finished chunk and the next search index
to compute. It is written to a temporary file in the output folder, flushed and fsynced,
then moved over the previous checkpoint with ``os.replace``, so a crash at any moment leaves
either the old or the new checkpoint, never a half-written one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

from difftm.io.atomic import atomic_output
from difftm.search.accumulator import Accumulator

CHECKPOINT_NAME = "checkpoint.npz"


def atomic_save(path: Path, writer: Callable[[IO], None]) -> None:
    """Write ``path`` atomically (replacing it) with ``writer(file_object)``, fsynced."""
    with atomic_output(path, overwrite=True) as tmp, open(tmp, "wb") as fh:
        writer(fh)
        fh.flush()
        os.fsync(fh.fileno())


def save_checkpoint(folder: Path, acc: Accumulator, next_index: int, fingerprint: str,
                    seconds: float = 0.0, threads: int | None = None) -> None:
    """Atomically save the accumulator state and progress of a search.

    ``seconds`` is the correlation time spent on the indices before ``next_index`` over all
    sessions so far, so that the timings of a resumed search cover the whole search;
    ``threads`` the CPU thread count the correlations ran with (torch's multi-threaded CPU
    FFTs round differently for different thread counts, so a resumed search reuses it).
    """
    arrays = acc.to_numpy()
    arrays["next_index"] = np.array(next_index, dtype=np.int64)
    arrays["fingerprint"] = np.array(fingerprint)
    arrays["seconds"] = np.array(float(seconds), dtype=np.float64)
    if threads is not None:
        arrays["threads"] = np.array(int(threads), dtype=np.int64)
    atomic_save(Path(folder) / CHECKPOINT_NAME, lambda fh: np.savez(fh, **arrays))


def _read_checkpoint(folder: Path, keys: tuple[str, ...] | None) -> dict | None:
    """Arrays ``keys`` (all if None) of the checkpoint in ``folder``; None if there is none.

    Raises:
        ValueError: the checkpoint exists but cannot be read.
    """
    path = Path(folder) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            return {k: data[k] for k in (data.files if keys is None else keys)}
    except Exception as err:  # corrupt zip, truncated file, missing entry
        raise ValueError(f"{path}: unreadable checkpoint ({err}); remove it to restart") from err


def checkpoint_fingerprint(folder: Path) -> str | None:
    """Fingerprint of the checkpoint in ``folder`` (None if none), without loading the maps.

    Raises:
        ValueError: the checkpoint exists but cannot be read.
    """
    arrays = _read_checkpoint(folder, ("fingerprint",))
    return None if arrays is None else str(arrays["fingerprint"])


def _checkpoint_scalar(folder: Path, key: str):
    path = Path(folder) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            return data[key].item() if key in data.files else None
    except Exception as err:
        raise ValueError(f"{path}: unreadable checkpoint ({err}); remove it to restart") from err


def checkpoint_seconds(folder: Path) -> float:
    """Correlation seconds recorded in the checkpoint of ``folder`` (0 if none or not recorded).

    Raises:
        ValueError: the checkpoint exists but cannot be read.
    """
    value = _checkpoint_scalar(folder, "seconds")
    return 0.0 if value is None else float(value)


def checkpoint_threads(folder: Path) -> int | None:
    """CPU thread count recorded in the checkpoint of ``folder`` (None if none or not recorded).

    Raises:
        ValueError: the checkpoint exists but cannot be read.
    """
    value = _checkpoint_scalar(folder, "threads")
    return None if value is None else int(value)


def load_checkpoint(folder: Path) -> tuple[Accumulator, int, str] | None:
    """Return ``(accumulator, next_index, fingerprint)`` or None if there is no checkpoint.

    Raises:
        ValueError: the checkpoint exists but cannot be read.
    """
    arrays = _read_checkpoint(folder, None)
    if arrays is None:
        return None
    acc = Accumulator.from_numpy(arrays)
    return acc, int(arrays["next_index"]), str(arrays["fingerprint"])
