"""Check a data folder against the published image list, decode every file, and say what is wrong.

:func:`verify_data` compares a :class:`~bmbench.data.layout.DataIndex` with the ids the data set
defines (``<CODE>_00001`` .. ``<CODE>_<count>`` per class), then decodes every image in a process pool
(Pillow first, OpenCV fallback; workers get paths in chunks and send back only what is noteworthy),
and checks each file's format by its magic bytes, not its extension.
:func:`render_verify_report` prints the result with Rich: one row per class, the problem lists (first
ten of each) and a one-line verdict that says how to fix what failed.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bmbench.classes import CLASS_CODES, cell_classes
from bmbench.data.decode import EXPECTED_SHAPE, check_chunk
from bmbench.data.layout import DataIndex
from bmbench.parallel import available_cpus, map_chunks
from bmbench.datasets import TCIA_URL, DatasetSpec

LIST_LIMIT = 10
"""How many entries of each problem list the report prints before "... and N more"."""
MAGIC: tuple[tuple[str, bytes, int], ...] = (
    ("JPEG", b"\xff\xd8\xff", 0), ("PNG", b"\x89PNG\r\n\x1a\n", 0), ("GIF", b"GIF8", 0),
    ("BMP", b"BM", 0), ("TIFF", b"II*\x00", 0), ("TIFF", b"MM\x00*", 0), ("WEBP", b"WEBP", 8),
)
"""(format, signature, offset) of the image formats a decoder might meet."""
SUFFIX_FORMAT = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".bmp": "BMP",
                 ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}
"""The format each image extension promises."""


def sniff_format(path: str | os.PathLike[str]) -> str | None:
    """The image format that ``path``'s first bytes show (``"JPEG"``, ``"PNG"``, ...), or None if unknown.

    Opened non-blocking and read only if it is a regular file (a FIFO named ``.jpg`` must not hang).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        head = os.read(fd, 16)
    except OSError:
        return None
    finally:
        os.close(fd)
    for name, signature, offset in MAGIC:
        if head[offset : offset + len(signature)] == signature:
            return name
    return None


def format_mismatches(items: Iterable[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(image id, extension, format found) for each (id, path) whose content is not what its extension says.

    Such a file (a PNG renamed ``.jpg``) still decodes -- decoders read the content -- so it is *reported*
    with a notice, not refused; the BM release holds JPEG files only, so it means the file was replaced.
    """
    out = []
    for image_id, path in items:
        suffix = os.path.splitext(path)[1].lower()
        promised = SUFFIX_FORMAT.get(suffix)
        if promised is None:
            continue
        found = sniff_format(path)
        if found is not None and found != promised:
            out.append((image_id, suffix, found))
    return out


@dataclass(frozen=True)
class ClassCheck:
    """One class: how many images the data set defines, how many were found, and which ids differ."""

    code: str
    name: str
    expected: int
    found: int
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Exactly the expected ids were found."""
        return not self.missing and not self.unexpected


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify_data`; paths of misplaced/duplicate/ignored files are relative to root."""

    root: Path
    dataset: DatasetSpec
    classes: tuple[ClassCheck, ...]
    misplaced: tuple[Path, ...]
    duplicates: tuple[Path, ...]
    ignored: tuple[Path, ...]
    decoded: bool
    """False when decoding was skipped."""
    opencv_fallback: tuple[str, ...] = ()
    """Image ids that Pillow refused and OpenCV decoded."""
    undecodable: tuple[tuple[str, str], ...] = ()
    """(image id, reason) for files neither decoder reads."""
    wrong_shape: tuple[tuple[str, tuple[int, ...]], ...] = ()
    """Decoded but not 250 x 250 x 3: a warning, not a failure."""
    warnings: tuple[str, ...] = ()
    """Other remarks that do not fail the check (e.g. an unreadable ``abbreviations.csv``)."""
    format_mismatch: tuple[tuple[str, str, str], ...] = ()
    """(image id, extension, format by magic bytes) where they disagree: a notice, not a failure."""

    @property
    def missing(self) -> tuple[str, ...]:
        """All missing ids, class by class."""
        return tuple(i for c in self.classes for i in c.missing)

    @property
    def unexpected(self) -> tuple[str, ...]:
        """All ids found that the data set does not define, class by class."""
        return tuple(i for c in self.classes for i in c.unexpected)

    @property
    def expected_total(self) -> int:
        return sum(c.expected for c in self.classes)

    @property
    def found_total(self) -> int:
        return sum(c.found for c in self.classes)

    @property
    def ok(self) -> bool:
        """Every expected id present, no unexpected/misplaced/duplicate image, and (if decoded) all decode."""
        return (
            all(c.ok for c in self.classes)
            and not self.misplaced
            and not self.duplicates
            and not (self.decoded and self.undecodable)
        )


def _class_checks(index: DataIndex) -> tuple[ClassCheck, ...]:
    found_by_code: dict[str, list[str]] = {code: [] for code in CLASS_CODES}
    for record in index.records:
        found_by_code[record.code].append(record.image_id)
    checks = []
    for cell in cell_classes():
        expected_ids = index.dataset.image_ids(cell.code)
        found = found_by_code[cell.code]
        found_set = set(found)
        expected_set = set(expected_ids)
        checks.append(
            ClassCheck(
                code=cell.code,
                name=cell.name,
                expected=len(expected_ids),
                found=len(found),
                missing=tuple(i for i in expected_ids if i not in found_set),
                unexpected=tuple(sorted(i for i in found if i not in expected_set)),
            )
        )
    return tuple(checks)


def _chunks(items: Sequence[tuple[str, str]], size: int) -> Iterable[list[tuple[str, str]]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _decode_all(
    items: Sequence[tuple[str, str]],
    *,
    workers: int,
    chunk_size: int,
    progress: Callable[[int], None] | None,
) -> list[tuple[str, str, str | tuple[int, ...]]]:
    chunks = list(_chunks(items, chunk_size))
    results = map_chunks(check_chunk, chunks, workers=workers, sizes=[len(c) for c in chunks], progress=progress)
    return [finding for _done, found in results for finding in found]


def verify_data(
    index: DataIndex,
    *,
    decode: bool = True,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_size: int | None = None,
) -> VerifyReport:
    """Compare ``index`` with the ids of ``index.dataset`` and (unless ``decode=False``) decode every image.

    Decoding runs in ``workers`` processes (default: the CPUs available to this process; 1 decodes in this process, as
    does a job smaller than one chunk). ``progress``, if given, is called with the number of files
    finished since its previous call (an increment, as ``rich.progress.Progress.advance`` takes), its
    arguments summing to ``len(index.records)``. ``chunk_size`` (files per task) defaults to at most 256.
    """
    classes = _class_checks(index)
    warnings: list[str] = []
    if index.abbreviations_error:
        warnings.append(f"{index.abbreviations_error} (ignored: the file only explains the class codes)")
    opencv_fallback: list[str] = []
    undecodable: list[tuple[str, str]] = []
    wrong_shape: list[tuple[str, tuple[int, ...]]] = []
    mismatched: list[tuple[str, str, str]] = []
    if decode:
        items = [(r.image_id, str(r.path)) for r in index.records]
        mismatched = format_mismatches(items)
        n_workers = max(1, workers if workers is not None else available_cpus())
        if chunk_size is None:
            chunk_size = max(1, min(256, math.ceil(len(items) / (n_workers * 4)) if items else 1))
        n_workers = min(n_workers, max(1, math.ceil(len(items) / chunk_size)))
        for image_id, kind, detail in _decode_all(
            items, workers=n_workers, chunk_size=chunk_size, progress=progress
        ):
            if kind == "error":
                undecodable.append((image_id, str(detail)))
            else:
                assert isinstance(detail, tuple)
                if kind == "opencv":
                    opencv_fallback.append(image_id)
                if detail != EXPECTED_SHAPE:
                    wrong_shape.append((image_id, detail))
    return VerifyReport(
        root=index.root,
        dataset=index.dataset,
        classes=classes,
        misplaced=index.misplaced,
        duplicates=index.duplicates,
        ignored=index.ignored,
        decoded=decode,
        opencv_fallback=tuple(sorted(opencv_fallback)),
        undecodable=tuple(sorted(undecodable)),
        wrong_shape=tuple(sorted(wrong_shape)),
        warnings=tuple(warnings),
        format_mismatch=tuple(sorted(mismatched)),
    )


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (plural or word + 's')}"


def _print_list(console: Console, heading: str, items: Sequence[str], style: str) -> None:
    if not items:
        return
    console.print(f"[{style}]{escape(heading)}[/] ({len(items):,}):")
    for item in items[:LIST_LIMIT]:
        console.print(f"  {escape(item)}", highlight=False)
    if len(items) > LIST_LIMIT:
        console.print(f"  ... and {len(items) - LIST_LIMIT:,} more", highlight=False)


def _shape_text(shape: tuple[int, ...]) -> str:
    return " x ".join(str(s) for s in shape)


def render_verify_report(report: VerifyReport, console: Console) -> None:
    """Print ``report``: a per-class table, the problem lists and a one-line verdict."""
    title = report.dataset.title
    if report.dataset.synthetic and "SYNTHETIC" not in title.upper():
        title = f"SYNTHETIC: {title}"
    table = Table(title=f"Data check: {escape(title)}", caption=escape(str(report.root)), show_footer=True)
    table.add_column("Code", footer="All")
    table.add_column("Class")
    table.add_column("Expected", justify="right", footer=f"{report.expected_total:,}")
    table.add_column("Found", justify="right", footer=f"{report.found_total:,}")
    table.add_column("Missing", justify="right", footer=f"{len(report.missing):,}")
    table.add_column("Unexpected", justify="right", footer=f"{len(report.unexpected):,}")
    table.add_column("Status", justify="center")
    for c in report.classes:
        table.add_row(
            c.code,
            escape(c.name),
            f"{c.expected:,}",
            f"{c.found:,}",
            f"{len(c.missing):,}" if c.missing else "0",
            f"{len(c.unexpected):,}" if c.unexpected else "0",
            "[green]✓[/]" if c.ok else "[bold red]✗[/]",
        )
    console.print(table)
    if report.dataset.synthetic:
        console.print(
            "[bold yellow]SYNTHETIC data: images generated by bmbench for demos and tests, "
            "not real cells. Results on it mean nothing clinically.[/]"
        )

    _print_list(console, "Missing images", report.missing, "bold red")
    _print_list(console, "Unexpected images, not in the published list", report.unexpected, "bold red")
    _print_list(
        console, "Misplaced files, not in their own class folder", [str(p) for p in report.misplaced], "bold red"
    )
    _print_list(
        console, "Duplicate files, extra copies of an id already found", [str(p) for p in report.duplicates], "bold red"
    )
    _print_list(console, "Undecodable files", [f"{i}: {r}" for i, r in report.undecodable], "bold red")
    _print_list(
        console, "Decoded with OpenCV after Pillow failed", list(report.opencv_fallback), "yellow"
    )
    _print_list(
        console,
        f"Warning: decoded, but not {_shape_text(EXPECTED_SHAPE)} (height x width x channels)",
        [f"{i}: {_shape_text(s)}" for i, s in report.wrong_shape],
        "yellow",
    )
    _print_list(
        console,
        "Notice: the content is not the format the extension says (decoded by its content; accepted)",
        [f"{i}: {suffix} file holds {found}" for i, suffix, found in report.format_mismatch],
        "yellow",
    )
    _print_list(console, "Ignored files, not images of the data set", [str(p) for p in report.ignored], "dim")
    for warning in report.warnings:
        console.print(f"[yellow]Warning:[/] {escape(warning)}")

    decoded_note = "" if report.decoded else " (file names only: images were not decoded)"
    image_list = "image list" if report.dataset.synthetic else "published image list"
    if report.ok:
        extra = []
        if report.opencv_fallback:
            extra.append(f"{_plural(len(report.opencv_fallback), 'file')} decoded with OpenCV after Pillow failed")
        if report.wrong_shape:
            extra.append(f"{_plural(len(report.wrong_shape), 'file')} not {_shape_text(EXPECTED_SHAPE)}")
        if report.format_mismatch:
            extra.append(f"{_plural(len(report.format_mismatch), 'file')} whose content is not the format "
                         "of its extension")
        tail = f"; note: {', '.join(extra)}" if extra else ""
        console.print(
            f"[bold green]✓ OK:[/] {escape(str(report.root))} matches the {image_list} of "
            f"{escape(title)}: {report.dataset.total:,} images{decoded_note}{escape(tail)}.",
            highlight=False,
        )
        return

    problems: list[str] = []
    fixes: list[str] = []
    if report.missing:
        problems.append(_plural(len(report.missing), "missing image"))
        if report.dataset.synthetic:
            fixes.append("delete the synthetic data folder and let bmbench generate it again")
        else:
            fixes.append(
                f"download the data again from TCIA ({TCIA_URL}) and unpack it completely "
                "(an interrupted download or unzip leaves files out)"
            )
    if report.unexpected:
        problems.append(_plural(len(report.unexpected), "unexpected image"))
        fixes.append("remove the files whose ids are beyond their class's published count")
    if report.misplaced:
        problems.append(_plural(len(report.misplaced), "misplaced file"))
        fixes.append("move each misplaced file into the folder of its class (the letters before the '_')")
    if report.duplicates:
        problems.append(_plural(len(report.duplicates), "duplicate file"))
        fixes.append("delete the extra copies listed above")
    if report.decoded and report.undecodable:
        problems.append(_plural(len(report.undecodable), "undecodable file"))
        fixes.append("replace the undecodable files with fresh copies from the download")
    console.print(
        f"[bold red]✗ FAILED:[/] {escape(str(report.root))} does not match the {image_list} of "
        f"{escape(title)}: {', '.join(problems)}{decoded_note}.",
        highlight=False,
    )
    console.print(f"[bold]Fix:[/] {escape('; '.join(fixes))}.", highlight=False)
