"""A disk about to be full, for the output-safety tests of both suites (issue 15).

Two ways: a real tmpfs mounted over the output folder and filled to the brim (needs root and
``mount``), and, anywhere on Linux, temporary files created in the folder made into links to
``/dev/full`` (every write fails with ENOSPC). Test modules take the fixture with
``full_disk = full_disk_fixture("4m")``.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def run(cmd: list[str]) -> bool:
    """Run a system command quietly; True when it succeeded."""
    return subprocess.run(cmd, capture_output=True).returncode == 0


def _can_mount() -> bool:
    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount")):
        return False
    probe = Path(tempfile.mkdtemp(prefix="mount_probe_"))
    try:
        if not run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)]):
            return False
        run(["umount", str(probe)])
        return True
    finally:
        probe.rmdir()


#: True where this process may mount a tmpfs (root with ``mount``).
CAN_MOUNT = _can_mount()


def umount(folder: Path) -> None:
    """Unmount ``folder`` (lazily if it is busy)."""
    if not run(["umount", str(folder)]):
        run(["umount", "-l", str(folder)])


@dataclass
class FullDisk:
    """An output folder whose disk can be filled: ``fill(leave)`` leaves ``leave`` bytes."""

    folder: Path
    fill: Callable[..., None]
    kind: str


def fill_tmpfs(folder: Path, leave: int = 0) -> None:
    """Fill the tmpfs under ``folder`` with ``filler.bin``, then free ``leave`` bytes."""
    filler = folder / "filler.bin"
    block = b"\0" * (1 << 16)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while True:
            os.write(fd, block)
    except OSError as err:
        assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)
    size = filler.stat().st_size
    os.truncate(filler, max(size - leave, 0))


def full_disk_fixture(size: str = "4m"):
    """A pytest fixture (params tmpfs of ``size`` and dev-full) yielding a :class:`FullDisk`."""

    @pytest.fixture(params=["tmpfs", "dev-full"])
    def full_disk(request, tmp_path, monkeypatch) -> Iterator[FullDisk]:
        folder = tmp_path / "disk"
        folder.mkdir()
        if request.param == "tmpfs":
            if not CAN_MOUNT:
                pytest.skip("needs root and mount for a real tmpfs")
            assert run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)])
            try:
                yield FullDisk(folder, lambda leave=0: fill_tmpfs(folder, leave), "tmpfs")
            finally:
                umount(folder)
            return
        if not Path("/dev/full").exists():
            pytest.skip("no /dev/full")
        real = tempfile.mkstemp

        def fill(leave: int = 0) -> None:
            def mkstemp(suffix=None, prefix=None, dir=None, text=False):  # noqa: A002
                fd, name = real(suffix, prefix, dir, text)
                if dir is None or Path(dir).resolve() != folder.resolve() and \
                        folder.resolve() not in Path(dir).resolve().parents:
                    return fd, name
                os.close(fd)
                os.unlink(name)
                os.symlink("/dev/full", name)
                return os.open(name, os.O_RDWR), name

            monkeypatch.setattr(tempfile, "mkstemp", mkstemp)

        yield FullDisk(folder, fill, "dev-full")

    return full_disk
