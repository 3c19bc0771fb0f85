"""Find and index the bone-marrow images exactly as users download them.

The TCIA release unpacks to ``BM_cytomorphology_data/`` with one folder per class code. Classes with
1,000 or more images are split into sub-folders of 1,000 (``ART/19001-19630/ART_19630.jpg``), smaller
classes hold their files directly (``ABE/ABE_00001.jpg``); ``abbreviations.csv`` lies beside the class
folders. The Kaggle re-upload wraps this in ``bone_marrow_cell_dataset/`` (with or without the
``BM_cytomorphology_data`` level), and users point at the folder itself or at one above it. So
:func:`find_data_root` searches a few levels down for the folder holding the most class folders, and
:func:`scan_data` walks every class folder recursively (the depth is never assumed) with ``os.scandir``:
the full 171,374-file tree indexes in about a second.

Nothing here opens an image; :mod:`bmbench.data.verify` checks the index against the published list.
"""

from __future__ import annotations

import csv
import gc
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bmbench.classes import CLASS_CODES, NUM_CLASSES
from bmbench.datasets import BM, SYNTHETIC, DatasetSpec, how_to_get_data
from bmbench.errors import BmbenchError, DataNotFoundError

DATA_FOLDER = "BM_cytomorphology_data"
"""The top folder of the TCIA release."""

SYNTHETIC_MARKER = "bmbench-synthetic.json"
"""A file of this name in the data root marks the generated (synthetic) demo set."""

ABBREVIATIONS_FILE = "abbreviations.csv"
"""The class-code legend the release ships beside the class folders."""

MAX_SEARCH_DEPTH = 3
"""How many folder levels below the given path :func:`find_data_root` looks."""

_MAX_SEARCH_FOLDERS = 20_000
"""Stop the root search after listing this many folders (someone pointed at ``/`` or a home folder)."""

IMAGE_NAME_RE = re.compile(r"^(?P<code>[A-Z]{3})_(?P<num>\d{5})\.(?i:jpe?g)$")
"""An image file name: ``<CODE>_<5 digits>.jpg`` (``.jpeg`` and any case of the extension accepted)."""

_CLASS_SET = frozenset(CLASS_CODES)
_ROOT_FILES = frozenset({ABBREVIATIONS_FILE, SYNTHETIC_MARKER})


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image file: its id (``ABE_00001``), its class code and where it lies."""

    image_id: str
    code: str
    path: Path


@dataclass(frozen=True)
class DataIndex:
    """Every file found under a data root, sorted into images and everything else.

    ``records`` holds the images found in their own class folder (sorted by id, one per id);
    ``misplaced`` image files lying outside their own class folder (under another class folder or
    directly in the root); ``duplicates`` further files with an id already recorded; ``ignored`` every
    other file or folder (``.DS_Store``, ``Thumbs.db``, wrongly named files, non-class folders in the
    root, symlink loops). The paths in ``misplaced``, ``duplicates`` and ``ignored`` are relative to
    ``root``; record paths are absolute.
    """

    root: Path
    dataset: DatasetSpec
    records: tuple[ImageRecord, ...]
    misplaced: tuple[Path, ...] = ()
    duplicates: tuple[Path, ...] = ()
    ignored: tuple[Path, ...] = ()
    abbreviations: dict[str, str] | None = None
    abbreviations_error: str | None = field(default=None, compare=False)
    """Why ``abbreviations.csv`` could not be read (it is informative only, so scanning goes on)."""

    def by_id(self) -> dict[str, ImageRecord]:
        """The records keyed by image id (a new dict on every call)."""
        return {r.image_id: r for r in self.records}

    def counts(self) -> dict[str, int]:
        """Number of images found per class code, for all 21 codes in index order."""
        out = dict.fromkeys(CLASS_CODES, 0)
        for r in self.records:
            out[r.code] += 1
        return out

    def paths_for(self, image_ids: Iterable[str], split_name: str) -> list[Path]:
        """The files of ``image_ids`` in that order; refuses data that lacks any of them."""
        by_id = self.by_id()
        ids = [str(i) for i in image_ids]
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise BmbenchError(
                f"{len(missing)} images of split {split_name} are missing from {self.root} (e.g. "
                f"{', '.join(missing[:5])}). Check the folder with `bmbench data verify --data {self.root}`."
            )
        return [by_id[i].path for i in ids]


def _not_found(path: Path, reason: str) -> DataNotFoundError:
    codes = ", ".join(CLASS_CODES[:3])
    hint = ""
    if path.name in _CLASS_SET:
        hint = (
            f"\n'{path.name}' looks like a single class folder: point at the folder that holds all the "
            f"class folders (here probably {path.parent})."
        )
    return DataNotFoundError(
        f"No bone-marrow image data found at {path}: {reason}.{hint}\n"
        f"Expected the folder BM_cytomorphology_data/ with one folder per class code ({codes}, ..., "
        f"{CLASS_CODES[-1]}), or a folder up to {MAX_SEARCH_DEPTH} levels above it (such as the Kaggle "
        "bone_marrow_cell_dataset/ folder).\n"
        + how_to_get_data()
    )


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks; loops are caught by the visited-inode sets
    except OSError:
        return False


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _dir_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _sorted_entries(path: str | Path) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


def find_data_root(path: str | os.PathLike[str]) -> Path:
    """The folder holding the class folders: ``path`` itself or a folder up to 3 levels below it.

    Breadth-first, shallowest level first and names in sorted order within a level; the folder with the
    most class-code sub-folders wins (ties go to the first found). Hidden folders and class folders are
    not descended into, and symlinked folders are visited once. Raises :class:`DataNotFoundError` when
    ``path`` is missing, not a folder, or holds no class folder anywhere in reach.
    """
    start = Path(path).expanduser()
    if not start.exists():
        raise _not_found(start, "the path does not exist")
    if not start.is_dir():
        raise _not_found(start, "it is a file, not a folder")
    best: Path | None = None
    best_count = 0
    listed = 0
    visited: set[tuple[int, int]] = set()
    key = _dir_key(str(start))
    if key is not None:
        visited.add(key)
    level = [start]
    for depth in range(MAX_SEARCH_DEPTH + 1):
        next_level: list[Path] = []
        for folder in level:
            if listed >= _MAX_SEARCH_FOLDERS:
                break
            listed += 1
            try:
                entries = _sorted_entries(folder)
            except OSError as exc:
                if depth == 0:
                    raise _not_found(start, f"it cannot be read ({exc.strerror or exc})") from exc
                continue
            subdirs = [e for e in entries if _is_dir(e)]
            count = sum(1 for e in subdirs if e.name in _CLASS_SET)
            if count > best_count:
                best, best_count = folder, count
                if count == NUM_CLASSES:  # nothing later (same level or deeper) can beat it
                    return folder
            if depth == MAX_SEARCH_DEPTH:
                continue
            for e in subdirs:
                if e.name in _CLASS_SET or e.name.startswith("."):
                    continue
                key = _dir_key(e.path)
                if key is None or key in visited:
                    continue
                visited.add(key)
                next_level.append(Path(e.path))
        level = next_level
        if not level:
            break
    if best is None:
        raise _not_found(
            start,
            f"no class folders ({CLASS_CODES[0]}, {CLASS_CODES[1]}, ...) in it "
            f"or up to {MAX_SEARCH_DEPTH} levels below it",
        )
    return best


def read_abbreviations(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse ``abbreviations.csv``: ``Abbreviation;Meaning`` header, then one ``CODE;meaning`` a line.

    Tolerates a UTF-8 byte-order mark, ``\\r\\n`` line ends, blank lines, surrounding spaces and trailing
    empty cells (spreadsheet exports); a meaning that itself holds ``;`` is kept whole. A file that is
    not UTF-8 is read as Windows-1252. Raises :class:`BmbenchError` naming the file and line when the
    header is wrong, a row has no meaning or an empty code, or a code repeats.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise BmbenchError(f"cannot read {p}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    out: dict[str, str] = {}
    header_seen = False
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cells = [c.strip() for c in next(csv.reader([line], delimiter=";"))]
        while cells and not cells[-1]:
            cells.pop()
        if not header_seen:
            if not cells or not cells[0].lower().startswith("abbreviation"):
                raise BmbenchError(
                    f"{p}, line {lineno}: expected the header 'Abbreviation;Meaning', found {line.strip()!r}"
                )
            header_seen = True
            continue
        if len(cells) < 2 or not cells[0]:
            raise BmbenchError(
                f"{p}, line {lineno}: expected 'CODE;meaning' separated by a semicolon, found {line.strip()!r}"
            )
        code, meaning = cells[0], ";".join(cells[1:])
        if code in out:
            raise BmbenchError(f"{p}, line {lineno}: abbreviation {code!r} is listed twice")
        out[code] = meaning
    if not header_seen:
        raise BmbenchError(f"{p}, line 1: the file is empty; expected the header 'Abbreviation;Meaning'")
    return out


def scan_data(path: str | os.PathLike[str], dataset: DatasetSpec | None = None) -> DataIndex:
    """Find the data root under ``path`` (:func:`find_data_root`) and index every file below it.

    ``dataset`` overrides the expected data set; by default it is :data:`bmbench.datasets.SYNTHETIC`
    when the root holds :data:`SYNTHETIC_MARKER`, else :data:`bmbench.datasets.BM`. Files are visited
    in sorted order, files of a folder before its sub-folders, so the same tree always gives the same
    index (and the same choice of which copy of a duplicated id is kept).
    """
    root = find_data_root(path).resolve()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # 171k new objects would trigger many full collections: a third of the scan time
    try:
        return _scan_root(root, dataset)
    finally:
        if gc_was_enabled:
            gc.enable()


def _scan_root(root: Path, dataset: DatasetSpec | None) -> DataIndex:
    """Index the files of ``root`` (class folders recursively; other folders are listed, not walked)."""
    root_str = str(root)
    records: dict[str, ImageRecord] = {}
    misplaced: list[str] = []
    duplicates: list[str] = []
    ignored: list[str] = []
    visited: set[tuple[int, int]] = set()
    key = _dir_key(root_str)
    if key is not None:
        visited.add(key)
    has_marker = False
    has_abbreviations = False
    match = IMAGE_NAME_RE.match

    for entry in _sorted_entries(root):
        name = entry.name
        if _is_dir(entry):
            if name in _CLASS_SET:
                _scan_class(root / name, name, name, records, misplaced, duplicates, ignored, visited)
            else:
                ignored.append(name)  # a non-class folder (e.g. __MACOSX): listed once, not descended
        elif name in _ROOT_FILES and _is_file(entry):
            has_marker = has_marker or name == SYNTHETIC_MARKER
            has_abbreviations = has_abbreviations or name == ABBREVIATIONS_FILE
        else:
            m = match(name)
            if m is not None and m["code"] in _CLASS_SET and _is_file(entry):
                misplaced.append(name)  # an image lying loose in the root
            else:
                ignored.append(name)

    abbreviations: dict[str, str] | None = None
    abbreviations_error: str | None = None
    if has_abbreviations:
        try:
            abbreviations = read_abbreviations(root / ABBREVIATIONS_FILE)
        except BmbenchError as exc:
            abbreviations_error = exc.message

    if dataset is None:
        dataset = SYNTHETIC if has_marker else BM
    return DataIndex(
        root=root,
        dataset=dataset,
        records=tuple(records[k] for k in sorted(records)),
        misplaced=tuple(Path(p) for p in sorted(misplaced)),
        duplicates=tuple(Path(p) for p in sorted(duplicates)),
        ignored=tuple(Path(p) for p in sorted(ignored)),
        abbreviations=abbreviations,
        abbreviations_error=abbreviations_error,
    )


def _scan_class(
    class_dir: Path,
    rel_dir: str,
    code: str,
    records: dict[str, ImageRecord],
    misplaced: list[str],
    duplicates: list[str],
    ignored: list[str],
    visited: set[tuple[int, int]],
) -> None:
    """Walk one class folder to any depth (iteratively, no recursion limit)."""
    match = IMAGE_NAME_RE.match
    sep = os.sep
    stack: list[tuple[Path, str]] = [(class_dir, rel_dir)]
    while stack:
        abs_dir, rel = stack.pop()
        key = _dir_key(str(abs_dir))
        if key is None or key in visited:
            ignored.append(rel)  # unreadable, or a symlink loop back to a folder already walked
            continue
        visited.add(key)
        try:
            entries = _sorted_entries(abs_dir)
        except OSError:
            ignored.append(rel)
            continue
        subdirs: list[tuple[str, str]] = []
        for entry in entries:
            name = entry.name
            m = match(name)
            if m is not None:
                # Cheap path first: d_type says "regular file" for almost every entry without a stat.
                if not _is_file(entry):
                    if _is_dir(entry):
                        subdirs.append((abs_dir / name, rel + sep + name))
                    else:
                        ignored.append(rel + sep + name)
                    continue
                file_code = m["code"]
                if file_code == code:
                    image_id = f"{code}_{m['num']}"
                    if image_id in records:
                        duplicates.append(rel + sep + name)
                    else:
                        # parent / name parses one component: twice as fast as Path(entry.path)
                        records[image_id] = ImageRecord(image_id, code, abs_dir / name)
                elif file_code in _CLASS_SET:
                    misplaced.append(rel + sep + name)
                else:
                    ignored.append(rel + sep + name)
            elif _is_dir(entry):
                subdirs.append((abs_dir / name, rel + sep + name))
            else:
                ignored.append(rel + sep + name)
        stack.extend(reversed(subdirs))  # pop() then visits sub-folders in sorted order
