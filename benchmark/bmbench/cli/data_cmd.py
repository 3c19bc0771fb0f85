"""``bmbench data``: verify a BM data folder, generate the synthetic demo set."""

from __future__ import annotations

from pathlib import Path

import typer

from bmbench.classes import CLASS_CODES
from bmbench.cli.common import check_json_out, console, emit_json, human_console, json_option, progress_bar, user_errors

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
        raise typer.Exit(2)  # invalid input (exit-code policy in bmbench.errors)


@app.command("synth")
@user_errors
def synth(
    out: Path | None = typer.Option(None, "--out", help="Folder to write into (default: bmbench's cache, "
                                    "which is what --data synthetic uses)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generator; the same seed gives the same bytes."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Processes (default: all cores)."),
    counts: str = typer.Option("synthetic", "--counts", help="Images per class: 'synthetic' (the demo set, "
                               "3,118) or 'bm' (the real data's counts, 171,374: a real-size set for benchmarks)."),
    scale: float = typer.Option(1.0, "--scale", min=0.0001, max=1.0, help="Multiply the counts (e.g. 0.25)."),
) -> None:
    """Write the SYNTHETIC demo data set in the exact TCIA layout (3,118 images, 21 classes)."""
    import time

    from bmbench.data.source import synthetic_dir
    from bmbench.data.synthetic import generate_synthetic
    from bmbench.datasets import BM, SYNTHETIC
    from bmbench.errors import BmbenchError

    if counts not in ("synthetic", "bm"):
        raise BmbenchError(f"--counts must be 'synthetic' or 'bm', not {counts!r}")
    spec = BM if counts == "bm" else SYNTHETIC
    per_class = {code: max(1, round(n * scale)) for code, n in zip(CLASS_CODES, spec.counts, strict=True)}
    custom = counts != "synthetic" or scale != 1.0
    if custom and out is None:
        raise BmbenchError("--counts/--scale write a set other than the demo set: pass --out FOLDER "
                           "(the cache folder of --data synthetic holds the demo set only)")
    target = out or synthetic_dir(seed)
    total = sum(per_class.values())
    started = time.perf_counter()
    with progress_bar("generating SYNTHETIC data", total) as advance:
        root = generate_synthetic(target, seed=seed, workers=workers, progress=advance,
                                  counts=per_class if custom else None)
    seconds = time.perf_counter() - started
    console.print(f"wrote {total:,} SYNTHETIC images to {root} in {seconds:.1f} s ({total / seconds:,.0f} images/s)")
    console.print(f"use it with: --data {root}" if out else "use it with: --data synthetic")
    if custom:
        console.print("note: `bmbench run` reads the rows of synthetic-cv5-v1 (3,118 ids) from it; "
                      "`bmbench bench --data` and `bmbench data cache --all-images` read every image")


@app.command("stats")
@user_errors
def stats(
    data: str | None = DATA_OPTION,
    json_out: Path | None = json_option("Also write the statistics (JSON) to"),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Decoding processes (default: all cores)."),
) -> None:
    """Channel mean/std of a data set (Table 2 convention: 0..1 scale, per RGB channel, over all pixels).

    Streams over the images in a process pool; compares with Table 2's BM row for the real data. A folder
    that is not in the BM layout is read as a plain folder of images (statistics for new data).
    """
    from bmbench.data.stats import channel_statistics, render_stats, stats_document, stats_source

    check_json_out(json_out)  # refused before any work starts
    source = stats_source(data_root(data))
    with progress_bar("decoding images", len(source.paths)) as advance:
        result = channel_statistics(source.paths, workers=workers, progress=advance)
    render_stats(human_console(json_out), source, result)
    if json_out is not None:
        emit_json(json_out, stats_document(source, result))


@app.command("manifest")
@user_errors
def manifest(
    data: str | None = DATA_OPTION,
    out: Path | None = typer.Option(None, "--out", help="Write here instead of splits/bm-manifest-v1.csv (any "
                                    "copy, e.g. the synthetic set or a partial copy)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing manifest that differs."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Hashing processes (default: all cores)."),
) -> None:
    """Write splits/bm-manifest-v1.csv (image_id, label, sha256, size) from a real, complete copy of the data.

    `bmbench data import-hf` uses it to recognise images in copies without file names.
    """
    from bmbench.data.layout import scan_data
    from bmbench.data.manifest import write_manifest

    index = scan_data(data_root(data))
    with progress_bar("hashing images", len(index.records)) as advance:
        outcome = write_manifest(index, out, force=force, workers=workers, progress=advance)
    tag = " [bold red](SYNTHETIC data)[/]" if outcome.synthetic else ""
    state = "unchanged (identical)" if outcome.unchanged else "wrote"
    console.print(f"{state} {outcome.path}: {outcome.rows:,} images of {outcome.dataset}{tag}"
                  + ("" if outcome.complete else " [yellow](not the complete data set)[/]"))


@app.command("import-hf")
@user_errors
def import_hf(
    source: str = typer.Argument(..., help="hf:<owner>/<name> (Hub, needs network), a save_to_disk folder, a "
                                 "parquet file or a folder of parquet files."),
    out: Path = typer.Option(..., "--out", help="Folder to write BM_cytomorphology_data/ into."),
    manifest_path: Path | None = typer.Option(None, "--manifest", help="Manifest to match against (default "
                                              "splits/bm-manifest-v1.csv)."),
    image_column: str | None = typer.Option(None, "--image-column", help="Image column (default: the Image "
                                            "feature, else 'image')."),
    label_column: str = typer.Option("label", "--label-column", help="Label column, used to cross-check classes."),
    synthetic: bool = typer.Option(False, "--synthetic", help="The manifest is of the SYNTHETIC demo set (tests)."),
) -> None:
    """Write a Hugging Face copy of the BM images into the TCIA layout, naming each image by its SHA-256.

    Images are matched to published ids through the manifest; images that match nothing are counted, not
    written. A mirror that re-encoded the images cannot match (use the TCIA download then).
    """
    from bmbench.data.hf_import import import_hf as run_import

    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from bmbench.cli.common import err_console

    with Progress(SpinnerColumn(), TextColumn("importing images"), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task("import", total=None)
        report = run_import(source, out, manifest_path, synthetic=synthetic, image_column=image_column,
                            label_column=label_column, progress=lambda k: bar.advance(task, k))
    tag = " [bold red](SYNTHETIC)[/]" if report.synthetic else ""
    console.print(f"read {report.rows_read:,} images from {source}; matched {report.matched:,} to the manifest "
                  f"{report.manifest}{tag}")
    console.print(f"wrote {report.written:,} images to {report.root}")
    if report.unmatched:
        console.print(f"[yellow]{report.unmatched:,} image(s) match no manifest entry and were not written[/] "
                      "(not part of the release, or re-encoded by the mirror)")
    if report.unreadable:
        console.print(f"[yellow]{report.unreadable:,} row(s) hold no image bytes[/]")
    if report.repeated:
        console.print(f"{report.repeated:,} row(s) repeat an image already written")
    if report.labels_checked:
        console.print(f"labels: {report.label_disagreements:,} disagreement(s) with the manifest")
    if report.missing:
        console.print(f"[bold red]incomplete:[/] {len(report.missing):,} manifest image(s) were not in the source "
                      f"(e.g. {', '.join(report.missing[:5])}); `bmbench data verify --data {report.root}` lists them")
        raise typer.Exit(2)
    console.print(f"complete: every manifest image is present. Use it with: --data {report.root}")


@app.command("cache")
@user_errors
def cache(
    data: str | None = DATA_OPTION,
    all_images: bool = typer.Option(False, "--all-images", help="Cache every image found in the folder (what "
                                    "`bmbench bench` reads) instead of the rows of the published split."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Decoding processes (default: all cores)."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Decode again even if an up-to-date cache exists."),
    verify: bool = typer.Option(False, "--verify", help="Recompute the SHA-256 digests of an existing cache."),
) -> None:
    """Decode every image once into a memory-mapped uint8 array (N x 250 x 250 x 3) for the GPU data path.

    Runs reuse it; it is rebuilt when any source file changes (size or modification time).
    """
    from bmbench.data.cache import obtain_cache, open_cache, rows_for_index, rows_for_split, verify_cache
    from bmbench.data.layout import scan_data
    from bmbench.errors import BmbenchError
    from bmbench.splits.store import load_split, split_for_dataset

    index = scan_data(data_root(data))
    split = load_split(split_for_dataset(index.dataset.id).name)
    rows = rows_for_index(index, split) if all_images else rows_for_split(split, index.paths_for(split.image_ids,
                                                                                               split.name))
    if verify:
        existing = open_cache(rows)
        if existing is None:
            raise BmbenchError("there is no up-to-date cache to verify; run `bmbench data cache` first")
        with progress_bar("hashing the cache", len(rows)) as advance:
            problems = verify_cache(existing, workers=workers, progress=advance)
        for problem in problems:
            console.print(f"[red]{problem}[/]")
        if problems:
            raise typer.Exit(2)
        console.print(f"cache intact: {existing.folder} (checksum {existing.checksum[:16]}…)")
        return
    with progress_bar("decoding images into the cache", len(rows)) as advance:
        outcome = obtain_cache(rows, rebuild=rebuild, workers=workers, progress=advance)
    built = outcome.cache
    note = ("up to date (reused)" if outcome.reused else f"decoded {outcome.decoded:,} images in "
            f"{outcome.seconds:.1f} s ({outcome.decoded / max(outcome.seconds, 1e-9):,.0f} images/s)")
    tag = " [bold red]SYNTHETIC DATA[/]" if index.dataset.synthetic else ""
    console.print(f"image cache{tag}: {built.folder}")
    console.print(f"  {len(built):,} images, {built.images.nbytes / 2**30:.2f} GiB, {note}")
    console.print(f"  checksum {built.checksum}")
    if built.manifest.get("decoded_with_opencv"):
        opencv = ", ".join(built.manifest["decoded_with_opencv"])
        console.print(f"  decoded with OpenCV (Pillow refused them): {opencv}")
