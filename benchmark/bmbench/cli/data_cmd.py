"""``bmbench data``: verify a BM data folder, generate the synthetic demo set."""

from __future__ import annotations

from pathlib import Path

import typer

from bmbench.cli.common import console, progress_bar, user_errors

app = typer.Typer(help="Check the bone-marrow images and generate the embedded SYNTHETIC demo data.",
                  no_args_is_help=True)

DATA_OPTION = typer.Option(
    None, "--data", help="BM_cytomorphology_data folder (or its parent), or 'synthetic'. Default: $BMBENCH_DATA."
)


def data_root(option: str | None) -> Path:
    """Resolve ``--data``, showing a progress bar if the synthetic set must be generated first."""
    from bmbench.data.layout import DATA_FOLDER
    from bmbench.data.source import SYNTHETIC, resolve_data, synthetic_dir

    if (option or "") == SYNTHETIC and not (synthetic_dir() / DATA_FOLDER).is_dir():
        from bmbench.datasets import SYNTHETIC as SPEC

        with progress_bar("generating SYNTHETIC demo data", SPEC.total) as advance:
            return resolve_data(option, progress=advance)
    return resolve_data(option)


@app.command("verify")
@user_errors
def verify(
    data: str | None = DATA_OPTION,
    decode: bool = typer.Option(True, "--decode/--no-decode", help="Decode every image (Pillow, OpenCV fallback)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Decoding processes (default: all cores)."),
) -> None:
    """Check per-class counts, missing and unexpected ids, and that every image decodes.

    Exits 0 only when the folder holds exactly the images of the published split.
    """
    from bmbench.data.layout import scan_data
    from bmbench.data.verify import render_verify_report, verify_data

    index = scan_data(data_root(data))
    if decode:
        with progress_bar("decoding images", len(index.records)) as advance:
            report = verify_data(index, decode=True, workers=workers, progress=advance)
    else:
        report = verify_data(index, decode=False)
    render_verify_report(report, console)
    if not report.ok:
        raise typer.Exit(1)


@app.command("synth")
@user_errors
def synth(
    out: Path | None = typer.Option(None, "--out", help="Folder to write into (default: bmbench's cache, "
                                    "which is what --data synthetic uses)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generator; the same seed gives the same bytes."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Processes (default: all cores)."),
) -> None:
    """Write the SYNTHETIC demo data set in the exact TCIA layout (3,118 images, 21 classes)."""
    from bmbench.data.source import synthetic_dir
    from bmbench.data.synthetic import generate_synthetic
    from bmbench.datasets import SYNTHETIC

    target = out or synthetic_dir(seed)
    with progress_bar("generating SYNTHETIC demo data", SYNTHETIC.total) as advance:
        root = generate_synthetic(target, seed=seed, workers=workers, progress=advance)
    console.print(f"wrote {SYNTHETIC.total} SYNTHETIC images to {root}")
    console.print(f"use it with: --data {root}" if out else "use it with: --data synthetic")
