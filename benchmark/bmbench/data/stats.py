"""Channel mean and standard deviation of a data set, as in the paper's Table 2: streaming and exact.

Convention (Table 2): pixel values scaled to 0..1, one mean and one (population) standard deviation per RGB
channel over all pixels of all images. Images are decoded one at a time (Pillow, OpenCV fallback) in a
process pool, chunk by chunk, so memory stays flat on the 171,374-image release. Each chunk returns the
pixel count and a histogram of the 8-bit values per channel (3 x 256 integers: these ARE the sufficient
statistics of 8-bit data); integer tallies add exactly, so the result does not depend on the chunking, the
order or the number of processes, and unlike float sums or Welford updates there is no rounding or
cancellation error at all. Mean and variance follow from the exact sums with one correctly rounded division
each.

Use it to check a copy against Table 2 (``bmbench data stats --data PATH``) and to derive statistics for new
data: a folder that is not in the BM layout is read as a plain folder of images (``.jpg``, ``.png``,
``.bmp``, ``.tif``), recursively.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bmbench.errors import BmbenchError, DataNotFoundError
from bmbench.records.data_stats import DataStatsDocument, PerChannel, StatsData, Table2Row, Undecodable

CHANNELS = ("red", "green", "blue")
CONVENTION = ("pixel values / 255, per RGB channel, over all pixels of all images; population standard "
              "deviation (Glüge et al. 2023, Table 2)")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
CHUNK = 128
"""Images per process-pool task."""


@dataclass(frozen=True)
class ChunkSums:
    """One chunk's exact tallies: images, pixels per channel, and the histogram of 8-bit values per channel."""

    images: int
    pixels: int
    histogram: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    """``histogram[c][v]``: how many pixels of channel c have the value v (0..255)."""
    undecodable: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ChannelStats:
    """Mean and standard deviation per RGB channel (0..1 scale) and what they were computed over."""

    images: int
    pixels: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    undecodable: tuple[tuple[str, str], ...] = ()


def chunk_sums(paths: Sequence[str]) -> ChunkSums:
    """Decode ``paths`` (in a worker) and tally their pixel values; undecodable files are listed, not counted."""
    from PIL import Image

    from bmbench.data.decode import DecodeError, decode_image

    images = pixels = 0
    hist = np.zeros(768, dtype=np.int64)
    bad: list[tuple[str, str]] = []
    for path in paths:
        try:
            array, _ = decode_image(path)
        except DecodeError as err:
            bad.append((path, f"Pillow: {err.pillow_reason}; OpenCV: {err.opencv_reason}"))
            continue
        # Pillow's C histogram of an RGB image: 256 red counts, then green, then blue (4x numpy's bincount).
        hist += np.asarray(Image.fromarray(array).histogram(), dtype=np.int64)
        images += 1
        pixels += array.shape[0] * array.shape[1]
    rows = hist.reshape(3, 256)
    histogram = tuple(tuple(int(v) for v in row) for row in rows)
    return ChunkSums(images, pixels, histogram, tuple(bad))  # type: ignore[arg-type]


def combine(chunks: Sequence[ChunkSums]) -> ChannelStats:
    """Add the chunks' histograms (exact) and derive mean and standard deviation on the 0..1 scale."""
    images = sum(c.images for c in chunks)
    n = sum(c.pixels for c in chunks)
    if n == 0:
        raise BmbenchError("no image could be decoded, so there are no statistics to compute")
    counts = [[sum(c.histogram[k][v] for c in chunks) for v in range(256)] for k in range(3)]
    s1 = [sum(h * v for v, h in enumerate(row)) for row in counts]
    s2 = [sum(h * v * v for v, h in enumerate(row)) for row in counts]
    mean = tuple(s / (255 * n) for s in s1)
    # n * sum(x^2) - sum(x)^2 is n^2 times the variance of the 8-bit values: exact in Python integers.
    std = tuple(math.sqrt((n * q - s * s) / (n * n * 255 * 255)) for s, q in zip(s1, s2, strict=True))
    bad = tuple(b for c in chunks for b in c.undecodable)
    return ChannelStats(images, n, mean, std, bad)  # type: ignore[arg-type]


def channel_statistics(paths: Sequence[Path | str], *, workers: int | None = None,
                       progress: Callable[[int], None] | None = None, chunk: int = CHUNK) -> ChannelStats:
    """Channel mean/std of the images at ``paths`` (Table 2 convention), over a process pool."""
    from bmbench.parallel import map_chunks

    names = [str(p) for p in paths]
    if not names:
        raise BmbenchError("no images to compute statistics over")
    chunks = [names[i:i + chunk] for i in range(0, len(names), chunk)]
    return combine(map_chunks(chunk_sums, chunks, workers=workers, progress=progress, sizes=[len(c) for c in chunks]))


@dataclass(frozen=True)
class StatsSource:
    """The images a ``bmbench data stats`` call covers and how they were found."""

    root: Path
    paths: tuple[Path, ...]
    dataset: str | None
    """``bm``, ``synthetic``, or None for a plain folder of images."""
    synthetic: bool
    expected_images: int | None


def find_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted; hidden files and folders skipped)."""
    found: list[Path] = []
    for base, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(base) / f for f in sorted(files)
                  if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return found


def stats_source(option: str | None) -> StatsSource:
    """The BM (or synthetic) images of ``--data``; a folder not in the BM layout is read as a plain image folder."""
    from bmbench.data.layout import scan_data
    from bmbench.data.source import resolve_data

    root = resolve_data(option)
    try:
        index = scan_data(root)
    except DataNotFoundError:
        if not root.is_dir():
            raise
        paths = find_images(root)
        if not paths:
            raise BmbenchError(f"{root} holds neither the BM layout nor any image file "
                               f"({', '.join(sorted(IMAGE_SUFFIXES))})") from None
        return StatsSource(root.resolve(), tuple(paths), None, False, None)
    return StatsSource(index.root, tuple(r.path for r in index.records), index.dataset.id, index.dataset.synthetic,
                       index.dataset.total)


def table2_comparison(stats: ChannelStats, dataset: str = "bm") -> list[Table2Row]:
    """Per channel: this data's mean/std, Table 2's (4 decimals) and the differences."""
    from bmbench.recipe import channel_stats

    mean, std = channel_stats(dataset)
    return [Table2Row(channel=ch, mean=stats.mean[k], table2_mean=mean[k], mean_diff=stats.mean[k] - mean[k],
                      std=stats.std[k], table2_std=std[k], std_diff=stats.std[k] - std[k])
            for k, ch in enumerate(CHANNELS)]


def _per_channel(values: Sequence[float]) -> PerChannel:
    return PerChannel(**dict(zip(CHANNELS, values, strict=True)))


def stats_document(source: StatsSource, stats: ChannelStats) -> DataStatsDocument:
    """What ``bmbench data stats --json`` writes: the statistics, the data they cover, Table 2 for BM data."""
    return DataStatsDocument(
        data=StatsData(root=str(source.root), dataset=source.dataset, synthetic=source.synthetic),
        images=stats.images, pixels_per_channel=stats.pixels, mean=_per_channel(stats.mean),
        std=_per_channel(stats.std), convention=CONVENTION,
        undecodable=[Undecodable(file=f, reason=r) for f, r in stats.undecodable],
        table2=table2_comparison(stats) if source.dataset == "bm" else None)


def render_stats(console: Any, source: StatsSource, stats: ChannelStats) -> None:
    """A Rich table of the statistics; beside Table 2's BM row when the data is the real BM set."""
    from rich.markup import escape
    from rich.table import Table

    label = {"bm": "BM (real data)", "synthetic": "[bold red]SYNTHETIC[/] demo data (not real cells)"}.get(
        source.dataset or "", "a folder of images")
    real_bm = source.dataset == "bm"
    console.print(f"channel statistics of {label}")
    table = Table()
    table.add_column("channel")
    table.add_column("mean", justify="right")
    table.add_column("std", justify="right")
    if real_bm:
        for col in ("Table 2 mean", "diff", "Table 2 std", "diff"):
            table.add_column(col, justify="right")
        for row in table2_comparison(stats):
            table.add_row(row.channel, f"{row.mean:.4f}", f"{row.std:.4f}", f"{row.table2_mean:.4f}",
                          f"{row.mean_diff:+.4f}", f"{row.table2_std:.4f}", f"{row.std_diff:+.4f}")
    else:
        for k, ch in enumerate(CHANNELS):
            table.add_row(ch, f"{stats.mean[k]:.4f}", f"{stats.std[k]:.4f}")
    console.print(table)
    console.print(f"{stats.images:,} images, {stats.pixels:,} pixels per channel, from {escape(str(source.root))}; "
                  "pixel values / 255, population std over all pixels", highlight=False)
    if source.expected_images is not None and source.expected_images != stats.images + len(stats.undecodable):
        console.print(f"[yellow]note:[/] the data set has {source.expected_images:,} images, this copy "
                      f"{len(source.paths):,}; `bmbench data verify` lists the differences")
    if real_bm:
        console.print("Table 2 gives 4 decimals; differences within ±0.0001 are rounding.")
    if stats.undecodable:
        console.print(f"[yellow]{len(stats.undecodable)} undecodable file(s) left out[/], e.g. "
                      f"{escape(stats.undecodable[0][0])}: {escape(stats.undecodable[0][1])}")
