"""Finished search results: the maps, their files, and loading them back.

Files written into the output folder (all maps float32 MRC with the micrograph pixel size):
``snr.mrc`` (the MIP, 2DTM SNR in noise-sigma units), ``snr_flatfield.mrc`` (the MIP after
cisTEM's global flat-field: (MIP - global mean) / global sd), ``mean.mrc``, ``sigma.mrc``
(standard deviation, not variance), ``zscore.mrc`` ((MIP - mean) / sigma),
``rot.mrc``/``tilt.mrc``/``psi.mrc`` (RELION Euler angles of the best pose, degrees),
``defocus_offset.mrc`` (Angstrom, relative to the micrograph defocus), ``results.npz`` (one
bundle with all maps, the best search index and metadata) and ``config.yaml``.
Pixels whose template would leave the micrograph (within ``border`` of the edge) are set to
0 in the maps and excluded from statistics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from difftm.search.checkpoint import atomic_save

MAP_NAMES = ("snr", "snr_flatfield", "zscore", "mean", "sigma", "rot", "tilt", "psi",
             "defocus_offset")
BUNDLE_NAME = "results.npz"


@dataclass
class SearchResult:
    """Maps and metadata of one finished search.

    Attributes:
        maps: name -> (H, W) float32 array (see module docstring for names).
        best_index: (H, W) int64 flat search index of the best pose.
        metadata: pixel_size, n_search, n_orientations, n_defocus, border, valid_pixels,
            defocus_u/v/angle, voltage, cs, amplitude_contrast, fingerprint, threads (CPU
            threads used), orientations (the explicit orientation file, or None for the
            grid), template_centre_angstrom (model point at the template centre, when the
            template records it), timings (seconds: the whole search, over resumed
            sessions or parts; seconds_this_run; threads; batch_size...)...
    """

    maps: dict[str, np.ndarray]
    best_index: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    #: the output folder it was loaded from or saved to (None otherwise)
    folder: Path | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """Map shape (H, W)."""
        return tuple(self.maps["snr"].shape)  # type: ignore[return-value]

    def valid_mask(self) -> np.ndarray:
        """(H, W) bool: pixels where the whole template lies inside the micrograph."""
        h, w = self.shape
        b0, b1 = self.metadata["border_low"], self.metadata["border_high"]
        mask = np.zeros((h, w), dtype=bool)
        mask[b0 : h - b1, b0 : w - b1] = True
        return mask

    def save(self, folder: Path) -> None:
        """Write the bundle and one MRC per map into ``folder`` (atomic per file); the
        result then knows its folder (:attr:`folder`)."""
        from difftm.io.mrc import write_mrc

        folder = Path(folder)
        px = float(self.metadata["pixel_size"])
        for name, arr in self.maps.items():
            write_mrc(folder / f"{name}.mrc", arr.astype(np.float32), px, overwrite=True)
        payload = {f"map_{k}": v for k, v in self.maps.items()}
        payload["best_index"] = self.best_index
        payload["metadata"] = np.array(json.dumps(self.metadata))
        atomic_save(folder / BUNDLE_NAME, lambda fh: np.savez_compressed(fh, **payload))
        self.folder = folder.resolve()


def result_fingerprint(folder: Path) -> str | None:
    """Fingerprint stored in the results bundle of ``folder`` (None if there is no bundle),
    read without loading the maps; ``"unreadable"`` for a damaged bundle."""
    path = Path(folder) / BUNDLE_NAME
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            return str(json.loads(str(data["metadata"])).get("fingerprint"))
    except Exception:
        return "unreadable"


def load_results(folder: Path) -> SearchResult:
    """Load a finished search from its output folder.

    Raises:
        FileNotFoundError: no ``results.npz`` (the search did not finish).
        ValueError: the bundle is unreadable.
    """
    path = Path(folder) / BUNDLE_NAME
    if not path.exists():
        hint = " (a checkpoint exists: run the same search command again to finish it)" if (
            Path(folder) / "checkpoint.npz").exists() else ""
        raise FileNotFoundError(f"{path}: no search results here{hint}")
    try:
        with np.load(path) as data:
            maps = {k[4:]: data[k] for k in data.files if k.startswith("map_")}
            best_index = data["best_index"]
            metadata = json.loads(str(data["metadata"]))
    except Exception as err:
        raise ValueError(f"{path}: unreadable results bundle ({one_line_reason(err)})") from err
    check_bundle(path, maps, metadata)
    return SearchResult(maps=maps, best_index=best_index, metadata=metadata,
                        folder=Path(folder).resolve())


#: Metadata every reader of a bundle (peaks, refine, reports, dataset tables) relies on.
REQUIRED_METADATA = ("pixel_size", "n_search", "box", "border_low", "border_high",
                     "valid_pixels", "defocus_u", "defocus_v", "defocus_angle", "voltage",
                     "cs", "amplitude_contrast")


def one_line_reason(err: BaseException) -> str:
    """A short reason for a damaged bundle: a missing array is named, not a bare KeyError."""
    if isinstance(err, KeyError):
        return f"no {err.args[0]!r} array" if err.args else "missing array"
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def check_bundle(path: Path, maps: dict[str, np.ndarray], metadata: Any) -> None:
    """Refuse a bundle that lacks a map or a metadata entry its readers need.

    Args:
        path: the bundle, named in the message.
        maps: the maps read from it.
        metadata: the decoded metadata.

    Raises:
        ValueError: one line naming ``path`` and the first missing map or key.
    """
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: damaged results bundle (metadata is not a mapping); "
                         "run the search again")
    missing_maps = [m for m in MAP_NAMES if m not in maps]
    if missing_maps:
        raise ValueError(f"{path}: damaged results bundle: no map {missing_maps[0]!r}"
                         + (f" (and {len(missing_maps) - 1} more)" if len(missing_maps) > 1
                            else "") + "; run the search again")
    shapes = {maps[m].shape for m in MAP_NAMES}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"{path}: damaged results bundle: maps of shapes "
                         f"{sorted(shapes)}, expected one 2D shape; run the search again")
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise ValueError(f"{path}: damaged results bundle: metadata has no {missing[0]!r}"
                         + (f" (and {len(missing) - 1} more: {', '.join(missing[1:])})"
                            if len(missing) > 1 else "") + "; run the search again")
