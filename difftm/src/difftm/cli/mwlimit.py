"""``difftm mwlimit``: expected 2DTM SNR and the molecular-weight limit from theory.

Every assumption is an option whose default is the literature value or a typical 2DTM
experiment (docs/THEORY.md derives the formulas and lists the sources).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console

from difftm.cli.errors import check_number, check_physical, user_errors

console = Console(soft_wrap=True, highlight=False)
err_console = Console(stderr=True)

DEFAULT_MASSES_KDA = (5, 10, 20, 50, 100, 200, 500, 1000, 2000)


def _mwlimit(
    mass: Annotated[list[float] | None, typer.Option(
        "--mass", metavar="KDA",
        help="Target mass in kDa (repeatable) [a range from 5 to 2000 kDa].")] = None,
    model: Annotated[Path | None, typer.Option(
        "--model", help="Atomic model (PDB/mmCIF, optionally gzip): its own scattering "
        "power instead of average protein.")] = None,
    preset: Annotated[str | None, typer.Option(
        help="Start from a published parameter set: henderson1995, rickgauer2017 or "
             "zhang_ideal (options given explicitly still apply on top).")] = None,
    voltage: Annotated[float | None, typer.Option(help="Voltage, kV [300].")] = None,
    cs: Annotated[float | None, typer.Option(help="Spherical aberration, mm [2.7].")] = None,
    amplitude_contrast: Annotated[float | None, typer.Option(
        help="Amplitude contrast [0.07].")] = None,
    defocus: Annotated[float | None, typer.Option(
        help="Underfocus, A [10000].")] = None,
    phase_plate: Annotated[bool | None, typer.Option(
        "--phase-plate/--no-phase-plate",
        help="Ideal phase plate (90 degrees, in focus) [no].")] = None,
    pixel_size: Annotated[float | None, typer.Option(
        help="Pixel size, A; the signal is integrated to its Nyquist [1.0].")] = None,
    lowpass: Annotated[float | None, typer.Option(help="Search low-pass limit, A.")] = None,
    highpass: Annotated[float | None, typer.Option(
        help="Ignore frequencies below 1/HIGHPASS, A (band-pass, or whitening of strong "
             "low-frequency background).")] = None,
    fluence: Annotated[float | None, typer.Option(help="Total exposure, e-/A^2 [30].")] = None,
    exposure: Annotated[str | None, typer.Option(
        help="Radiation damage: none, summed or dose-weighted [dose-weighted].")] = None,
    cooling: Annotated[str | None, typer.Option(
        help="ln2 or lhe: liquid helium multiplies the critical exposure by 1.5 "
             "(Naydenova et al. 2022: 1.2-1.8) [ln2].")] = None,
    critical_exposure_scale: Annotated[float | None, typer.Option(
        help="Multiplier of the critical exposure, overriding --cooling.")] = None,
    detector: Annotated[str | None, typer.Option(
        help="perfect, counting (pixel-aperture DQE), k3, falcon4 (DQE(0) x MTF^2) or a "
             "two-column DQE file (fraction of Nyquist, DQE) [k3].")] = None,
    dqe0: Annotated[float | None, typer.Option(
        help="DQE at zero frequency [detector's: 1 for perfect/counting, 0.8 for k3/falcon4]."
    )] = None,
    b_factor: Annotated[float | None, typer.Option(
        help="Extra image B-factor, A^2 (motion, drift) [0].")] = None,
    thickness: Annotated[float | None, typer.Option(
        help="Ice or cell thickness, nm [30].")] = None,
    mean_free_path: Annotated[float | None, typer.Option(
        help="Inelastic mean free path, nm [395 at 300 kV, scaled with the voltage].")] = None,
    energy_filter: Annotated[bool | None, typer.Option(
        "--energy-filter/--no-energy-filter", help="Zero-loss energy filter [yes].")] = None,
    background_noise: Annotated[float | None, typer.Option(
        help="Extra noise variance in units of the shot noise (cellular background) [0].")
    ] = None,
    particle_density: Annotated[float | None, typer.Option(
        help="Copies of the target per square micrometre: the search's whitening by the "
             "image's own spectrum then down-weights their signal [0].")] = None,
    solvent_potential: Annotated[float | None, typer.Option(
        help="Mean inner potential of the displaced medium, V [3.5, vitreous ice].")] = None,
    atomic_b_factor: Annotated[float | None, typer.Option(
        help="B-factor of the atoms of a mass-based target, A^2 [20].")] = None,
    hydrogens: Annotated[bool | None, typer.Option(
        "--hydrogens/--no-hydrogens",
        help="Mass-based targets include hydrogens [yes].")] = None,
    image_size: Annotated[str, typer.Option(
        help="Searched image, HxW pixels (detection threshold).")] = "4096x4096",
    orientations: Annotated[float, typer.Option(
        help="Orientations searched (2.5/1.5 degree C1 grid).")] = 1_584_480,
    defocus_planes: Annotated[int, typer.Option(help="Defocus planes searched.")] = 13,
    false_positives: Annotated[float, typer.Option(
        help="Expected false positives per image at the threshold.")] = 1.0,
    threshold: Annotated[float | None, typer.Option(
        help="Detection threshold (overrides the search-space one).")] = None,
    resolution: Annotated[float, typer.Option(
        help="Target resolution for the alignment limit, A.")] = 3.0,
    kappa: Annotated[float, typer.Option(
        help="Required angular accuracy = KAPPA * resolution / diameter (radians).")] = 1.0,
    align_highpass: Annotated[float | None, typer.Option(
        help="Alignment uses only the signal between 1/ALIGN_HIGHPASS and 1/resolution "
             "(SNR at the threshold and angular precision within KAPPA d/D in that band) "
             "[the preset's; else all frequencies up to 1/resolution].")] = None,
    voxel: Annotated[float | None, typer.Option(
        help="Voxel size of a --model's 3D spectrum, A [half the pixel size; coarser when "
             "the box would exceed 256].")] = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Write every number as JSON here.")] = None,
    figure: Annotated[Path | None, typer.Option(
        help="Write a PNG of SNR vs mass with the threshold here.")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace existing output files.")] = False,
) -> None:
    """Expected 2DTM SNR of targets and the smallest detectable/alignable mass.

    Theory of image formation (weak phase, matched filter): SNR^2 = fluence x integral of
    DQE x (2 sigma_e CTF)^2 x damage x B-factor envelope x the target's orientation-averaged
    power spectrum, with the thickness loss and extra background. Prints a table; --json and
    --figure write the numbers and a plot.
    """
    from difftm.io.atomic import atomic_output, check_writable
    from difftm.theory.limits import PUBLISHED, SearchSpace, mass_limits, snr_curve
    from difftm.theory.snr import ImagingParameters, SnrCalculator

    for path in (json_path, figure):
        if path is not None:
            check_writable(path, overwrite)
    if figure is not None and figure.suffix.lower() != ".png":
        raise ValueError(f"{figure}: the figure is written as PNG; use a .png name")
    options = {
        "voltage_kv": voltage, "cs_mm": cs, "amplitude_contrast": amplitude_contrast,
        "defocus": defocus, "phase_plate": phase_plate, "pixel_size": pixel_size,
        "lowpass": lowpass, "highpass": highpass, "fluence": fluence, "exposure": exposure,
        "cooling": cooling, "critical_exposure_scale": critical_exposure_scale,
        "detector": detector, "dqe0": dqe0, "b_factor": b_factor, "thickness_nm": thickness,
        "inelastic_mfp_nm": mean_free_path, "energy_filter": energy_filter,
        "background_noise": background_noise, "solvent_potential": solvent_potential,
        "atomic_b_factor": atomic_b_factor, "hydrogens": hydrogens,
        "particle_density": particle_density,
    }
    base = ImagingParameters()
    preset_entry = None
    if preset is not None:
        names = {p.name: p for p in PUBLISHED}
        if preset not in names:
            raise ValueError(f"--preset must be one of {', '.join(names)}, got {preset!r}")
        preset_entry = names[preset]
        base = preset_entry.params
    params = base.with_(**{k: v for k, v in options.items() if v is not None})
    # the plausible ranges of difftm.physics.limits (the one table), named by their options
    for name, option, value in (
            ("voltage", "--voltage", params.voltage_kv), ("cs", "--cs", params.cs_mm),
            ("amplitude_contrast", "--amplitude-contrast", params.amplitude_contrast),
            ("defocus", "--defocus", params.defocus),
            ("pixel_size", "--pixel-size", params.pixel_size),
            ("fluence", "--fluence", params.fluence),
            ("ctf_bfactor", "--b-factor", params.b_factor),
            ("thickness", "--thickness", params.thickness_nm),
            ("lowpass", "--lowpass", params.lowpass),
            ("highpass", "--highpass", params.highpass)):
        check_physical(name, value, option)
    check_number("--mean-free-path", params.inelastic_mfp_nm, 1.0, 1e5, "nm")
    check_number("--critical-exposure-scale", params.critical_exposure_scale, 0.0, 100.0,
                 low_open=True)
    check_number("--atomic-b-factor", params.atomic_b_factor, 0.0, 1e4, "A^2")
    check_number("--solvent-potential", params.solvent_potential, 0.0, 100.0, "V")
    try:
        params.validate()
    except ValueError as err:
        raise ValueError(f"bad imaging parameters: {err}") from None
    for opt, value, low in (("--resolution", resolution, 0.0), ("--kappa", kappa, 0.0),
                            ("--orientations", orientations, 1.0),
                            ("--false-positives", false_positives, 0.0),
                            ("--voxel", voxel, 0.0)):
        if value is None:
            continue
        check_number(opt, value, low, None, low_open=low == 0.0)
    check_number("--defocus-planes", defocus_planes, 1, None)
    check_number("--threshold", threshold, 0.0, None, low_open=True)
    check_number("--align-highpass", align_highpass, resolution, None, low_open=True)
    try:
        h, w = (int(v) for v in image_size.lower().split("x"))
        if h < 1 or w < 1:
            raise ValueError
    except ValueError:
        raise ValueError(f"--image-size must be HxW in pixels, got {image_size!r}") from None
    masses_kda = sorted(mass) if mass else list(DEFAULT_MASSES_KDA)
    for m in masses_kda:
        check_number("--mass", m, 0.0, 1e6, unit="kDa", low_open=True)
    space = SearchSpace(image_pixels=float(h * w), orientations=float(orientations),
                        defocus_planes=int(defocus_planes), false_positives=false_positives)
    t = threshold if threshold is not None else space.threshold()

    calc = SnrCalculator(params)
    rows = [calc.snr_of_mass(m * 1e3) for m in masses_kda]
    model_info = None
    if model is not None:
        from difftm.io.models import load_model
        from difftm.theory.snr import model_spectrum

        atoms = load_model(model)
        spec = model_spectrum(atoms, voxel_size=voxel or params.pixel_size / 2.0,
                              solvent_potential=params.solvent_potential)
        res = calc.snr(spec)
        model_info = {"name": Path(model).name, "mass_da": spec.mass_da, "snr": res.snr,
                      "snr_with_difftm_template": res.snr_template,
                      "angular_precision_deg": res.angular_precision_deg,
                      "snr_from_mass_only": calc.snr_of_mass(spec.mass_da).snr}
    if align_highpass is None and preset_entry is not None:
        align_highpass = preset_entry.align_highpass
    limits = mass_limits(params, space, resolution, kappa, threshold=threshold,
                         align_highpass=align_highpass)

    console.print(f"{'mass (kDa)':>10} {'SNR':>9} {'vs threshold':>12}")
    for m, r in zip(masses_kda, rows, strict=True):
        mark = "detected" if r.snr >= t else "-"
        console.print(f"{m:10g} {r.snr:9.2f} {mark:>12}")
    if model_info is not None:
        console.print(f"model {model_info['name']}: {model_info['mass_da'] / 1e3:.1f} kDa, SNR "
                      f"{model_info['snr']:.2f} (with difftm's solvent-free template "
                      f"{model_info['snr_with_difftm_template']:.2f}; average protein of that "
                      f"mass {model_info['snr_from_mass_only']:.2f})")

    def kda(v: float | None) -> str:
        return "not below 1e6 kDa" if v is None else f"{v / 1e3:.1f} kDa"
    console.print(f"detection threshold {t:.2f} ({h}x{w} px, {orientations:g} orientations x "
                  f"{defocus_planes} defocus planes, {false_positives:g} false positive(s))")
    console.print(f"smallest detectable mass: {kda(limits.detectable_mass_da)}")
    console.print(f"smallest alignable mass at {resolution:g} A (SNR at the threshold and "
                  f"angular accuracy {kappa:g} d/D with the signal to {resolution:g} A"
                  + (f" from {align_highpass:g} A" if align_highpass else "") + "): "
                  f"{kda(limits.alignable_mass_da)}")
    if preset_entry is not None:
        console.print(f"published ({preset_entry.source}): ~{preset_entry.published_kda:g} kDa "
                      f"({preset_entry.criterion}); calibrated here: {preset_entry.calibrated}")

    result = {"parameters": params.__dict__ | {"preset": preset},
              "threshold": t, "limits": limits.to_dict(),
              "targets": [{"mass_kda": m, **r.to_dict()} for m, r in
                          zip(masses_kda, rows, strict=True)],
              "model": model_info}
    import tempfile

    from difftm.io.atomic import output_unit

    with tempfile.TemporaryDirectory(prefix="difftm_mwlimit_") as scratch:
        drawn = None
        if figure is not None:  # drawn first, then moved into place with the JSON
            from difftm.report.theory_figures import plot_snr_vs_mass

            found = [v / 1e3 for v in (limits.detectable_mass_da, limits.alignable_mass_da)
                     if v]
            lo = min([masses_kda[0], 5.0] + [0.5 * v for v in found]) * 1e3
            hi = max(masses_kda[-1], 2000.0) * 1e3
            grid = np.geomspace(lo, hi, 40)
            curve = snr_curve(params, grid, resolution, kappa)
            drawn = plot_snr_vs_mass(
                curve, t, Path(scratch) / "figure.png", limits.detectable_mass_da,
                limits.alignable_mass_da, model=model_info,
                title=f"{preset or 'difftm mwlimit'}: {params.fluence:g} e/A^2, "
                f"{params.detector}, "
                f"{'phase plate' if params.phase_plate else f'{params.defocus:g} A'}")
        # the JSON and the figure as one unit: both or neither
        with output_unit():
            if json_path is not None:
                with atomic_output(json_path, overwrite=overwrite) as tmp:
                    tmp.write_text(json.dumps(result, indent=1, default=float))
            if drawn is not None:
                with atomic_output(figure, overwrite=overwrite) as tmp:
                    tmp.write_bytes(drawn.read_bytes())
    for path in (json_path, figure):
        if path is not None:
            console.print(f"wrote {path}")
    if not math.isfinite(t):
        raise ValueError("the detection threshold is not finite")


def register(app: typer.Typer) -> None:
    """Attach ``difftm mwlimit`` to ``app``."""
    app.command("mwlimit")(user_errors(_mwlimit))
