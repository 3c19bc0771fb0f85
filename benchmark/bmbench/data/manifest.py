"""The image manifest: image id, label, SHA-256 and size of every file of the BM release.

``splits/bm-manifest-v1.csv`` lets bmbench recognise the release's images in copies that lost the file
names (the Hugging Face mirror has none): an image's SHA-256 names its id. It is written from a real copy by
``bmbench data manifest --data PATH``; for the published manifest the copy must be the real, complete BM
set (every id, nothing else). ``--out`` writes a manifest of any copy elsewhere (tests, the synthetic set).

Format: UTF-8 CSV, ``\\n`` line ends, header ``image_id,label,sha256,size``, one row per image sorted by id;
``sha256`` is the lowercase hex digest of the file's bytes, ``size`` its length in bytes.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bmbench import atomic
from bmbench.classes import CLASS_CODES
from bmbench.data.layout import DataIndex
from bmbench.errors import BmbenchError

MANIFEST_NAME = "bm-manifest-v1.csv"
HEADER = ("image_id", "label", "sha256", "size")
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
ID_RE = re.compile(r"^(?P<code>[A-Z]{3})_(?P<num>\d{5})$")
CHUNK = 256


@dataclass(frozen=True)
class ManifestRow:
    """One image of the manifest."""

    image_id: str
    label: str
    sha256: str
    size: int

    @property
    def number(self) -> int:
        """The image's number within its class (``ART_00042`` -> 42)."""
        return int(self.image_id[4:])


def default_manifest_path() -> Path:
    """``bm-manifest-v1.csv`` in the local splits folder (``$BMBENCH_SPLITS``), else beside the published splits."""
    from bmbench import paths

    return (paths.local_splits_dir() or paths.published_splits_dir()) / MANIFEST_NAME


def how_to_create_manifest(path: Path) -> str:
    """What to say while the published manifest does not exist yet."""
    return (f"the image manifest {path} does not exist yet: no SHA-256 manifest of the BM release has been "
            "committed to this checkout. Create it from a real copy of the TCIA release with\n"
            "  bmbench data manifest --data /path/to/BM_cytomorphology_data\n"
            "(and commit it), or pass --manifest PATH to use a manifest made elsewhere.")


def _hash_chunk(items: list[tuple[str, str, str]]) -> list[ManifestRow]:
    rows = []
    for image_id, label, path in items:
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
        rows.append(ManifestRow(image_id, label, digest.hexdigest(), size))
    return rows


def build_manifest(index: DataIndex, *, workers: int | None = None,
                   progress: Callable[[int], None] | None = None) -> list[ManifestRow]:
    """Hash every image of ``index`` in a process pool; rows sorted by image id."""
    from bmbench.parallel import map_chunks

    items = [(r.image_id, r.code, str(r.path)) for r in index.records]
    chunks = [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]
    rows = [row for part in map_chunks(_hash_chunk, chunks, workers=workers, progress=progress,
                                       sizes=[len(c) for c in chunks]) for row in part]
    return sorted(rows, key=lambda r: r.image_id)


def render_manifest(rows: list[ManifestRow]) -> str:
    """The manifest's exact text."""
    lines = [",".join(HEADER)] + [f"{r.image_id},{r.label},{r.sha256},{r.size}" for r in rows]
    return "\n".join(lines) + "\n"


def read_manifest(path: Path) -> list[ManifestRow]:
    """Parse and validate a manifest; errors name the file, the line and the fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BmbenchError(f"manifest {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BmbenchError(f"cannot read manifest {path}: {err}") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != HEADER:
        raise BmbenchError(f"{path}, line 1: expected the header {','.join(HEADER)}, found {','.join(header or [])!r}")
    rows: list[ManifestRow] = []
    seen: dict[str, int] = {}
    for lineno, cells in enumerate(reader, start=2):
        if not cells:
            continue
        if len(cells) != 4:
            raise BmbenchError(f"{path}, line {lineno}: expected 4 values ({','.join(HEADER)}), found {len(cells)}")
        image_id, label, sha, size = (c.strip() for c in cells)
        m = ID_RE.match(image_id)
        if m is None or m["code"] != label or label not in CLASS_CODES:
            raise BmbenchError(f"{path}, line {lineno}: image id {image_id!r} and label {label!r} must be "
                               "<CODE>_<5 digits> of one of the 21 class codes, with the label equal to the code")
        if not SHA_RE.match(sha):
            raise BmbenchError(f"{path}, line {lineno}: sha256 must be 64 lowercase hex digits, not {sha!r}")
        if not size.isdigit():
            raise BmbenchError(f"{path}, line {lineno}: size must be a byte count, not {size!r}")
        if image_id in seen:
            raise BmbenchError(f"{path}, line {lineno}: image id {image_id} already listed on line {seen[image_id]}")
        seen[image_id] = lineno
        rows.append(ManifestRow(image_id, label, sha, int(size)))
    if not rows:
        raise BmbenchError(f"{path}: the manifest lists no image")
    return rows


@dataclass(frozen=True)
class ManifestOutcome:
    """What ``write_manifest`` wrote."""

    path: Path
    rows: int
    dataset: str
    synthetic: bool
    complete: bool
    unchanged: bool


def write_manifest(index: DataIndex, out: Path | None = None, *, force: bool = False, workers: int | None = None,
                   progress: Callable[[int], None] | None = None) -> ManifestOutcome:
    """Write the manifest of ``index`` atomically: the published one (real, complete BM only) or ``out``."""
    expected = {i for code in CLASS_CODES for i in index.dataset.image_ids(code)}
    found = {r.image_id for r in index.records}
    complete = found == expected and not index.misplaced and not index.duplicates
    if out is None:
        if index.dataset.synthetic:
            raise BmbenchError(f"{index.root} is the SYNTHETIC demo set; the published manifest "
                               f"{MANIFEST_NAME} must come from the real BM release. Use --out to write a "
                               "manifest of this copy elsewhere.")
        if not complete:
            missing = sorted(expected - found)
            raise BmbenchError(
                f"{index.root} is not the complete BM release ({len(found):,} of {len(expected):,} ids, "
                f"{len(missing):,} missing, {len(index.misplaced) + len(index.duplicates)} misplaced or duplicate "
                "files); the published manifest needs every image. `bmbench data verify --data "
                f"{index.root}` lists the differences; --out writes a manifest of a partial copy elsewhere."
            )
    path = out if out is not None else default_manifest_path()
    text = render_manifest(build_manifest(index, workers=workers, progress=progress))
    unchanged = path.is_file() and path.read_text(encoding="utf-8") == text
    if path.is_file() and not unchanged and not force:
        old = set(path.read_text(encoding="utf-8").splitlines())
        differ = sum(1 for line in text.splitlines() if line not in old)
        raise BmbenchError(f"{path} exists and differs from this copy in {differ:,} row(s) (different files, "
                           "e.g. a re-encoded image). Check the copy with `bmbench data verify`; pass --force to "
                           "replace the manifest.")
    if not unchanged:
        atomic.write_text(path, text)
    return ManifestOutcome(path, len(found), index.dataset.id, index.dataset.synthetic, complete, unchanged)


def manifest_layout_counts(rows: list[ManifestRow]) -> dict[str, int]:
    """Per class, the highest image number in the manifest (what the TCIA sub-folder names end at)."""
    counts = dict.fromkeys(CLASS_CODES, 0)
    for r in rows:
        counts[r.label] = max(counts[r.label], r.number)
    return counts
