"""``bmbench data import-hf``: a Hugging Face copy of the BM images, written back into the TCIA layout.

Mirrors such as ``ekim15/bone_marrow_cell_dataset`` (parquet; columns ``image`` and ``label``; their own
80/10/10 split; no file names) hold the images without their ids, so bmbench's published split cannot be
applied to them directly. This importer recovers the ids through the manifest (``splits/bm-manifest-v1.csv``,
see :mod:`bmbench.data.manifest`): the SHA-256 of each image's *encoded bytes* names its image id and class,
and the file is written, byte for byte, to where the TCIA release keeps it
(``BM_cytomorphology_data/<CODE>[/<0001-1000>]/<CODE>_<nnnnn>.jpg``). Images that match no manifest entry are
counted and reported, never written. The images are read with ``datasets`` as raw bytes
(``Image(decode=False)``), never decoded and re-encoded.

A mirror that re-encoded the JPEGs (or resized them) cannot be matched this way: every image is then
reported as unmatched, and the TCIA download is the way to get the data.

Sources: ``hf:<owner>/<name>`` (or a bare ``<owner>/<name>`` that is not a local path; streamed from the
Hub, needs network), a local ``save_to_disk`` folder, a parquet file, or a folder of parquet files. The
tree is built in a hidden sibling folder and renamed into place at the end, so an interrupted import
leaves nothing that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from bmbench.classes import CLASS_CODES, CLASS_INDEX, cell_classes
from bmbench.data.layout import ABBREVIATIONS_FILE, DATA_FOLDER, SYNTHETIC_MARKER
from bmbench.data.manifest import (ManifestRow, default_manifest_path, how_to_create_manifest,
                                   manifest_layout_counts, read_manifest)
from bmbench.errors import BmbenchError

BM_SUBFOLDER = 1000
"""The release splits a class of 1,000 or more images into sub-folders of 1,000 (``0001-1000``, ...)."""
SAVE_TO_DISK_FILES = ("dataset_dict.json", "state.json")


def tcia_relpath(code: str, number: int, class_count: int, synthetic: bool = False) -> PurePosixPath:
    """Where image ``number`` of class ``code`` lies below ``BM_cytomorphology_data`` in the release layout.

    Classes with 1,000 or more images (in the real release) get sub-folders of 1,000 whose last one ends at
    the class count (``ART/19001-19630/ART_19630.jpg``); the others hold their files directly. The SYNTHETIC
    set uses its own generator's layout (sub-folders of 100).
    """
    if synthetic:
        from bmbench.data.synthetic import image_relpath

        return image_relpath(code, number, class_count)
    name = f"{code}_{number:05d}.jpg"
    if cell_classes()[CLASS_INDEX[code]].count >= BM_SUBFOLDER:
        start = (number - 1) // BM_SUBFOLDER * BM_SUBFOLDER + 1
        end = min(start + BM_SUBFOLDER - 1, class_count)
        return PurePosixPath(code, f"{start:04d}-{end:04d}", name)
    return PurePosixPath(code, name)


def _is_save_to_disk(path: Path) -> bool:
    return path.is_dir() and any((path / f).is_file() for f in SAVE_TO_DISK_FILES)


def open_source(source: str) -> list[tuple[str, Any]]:
    """``(split name, datasets.Dataset or IterableDataset)`` for every split of ``source``."""
    import datasets

    path = Path(source).expanduser()
    hub_id = source[3:] if source.startswith("hf:") else None
    if hub_id is None and not path.exists():
        if source.count("/") == 1 and not source.startswith((".", "/", "~")):
            hub_id = source
        else:
            raise BmbenchError(f"{source}: no such file or folder (give a save_to_disk folder, a parquet file or "
                               "folder, or hf:<owner>/<name> for a data set on the Hugging Face Hub)")
    if hub_id is not None:
        try:
            loaded: Any = datasets.load_dataset(hub_id, streaming=True)
        except Exception as err:  # hub, network and format errors come in many types
            raise BmbenchError(
                f"cannot open the Hugging Face data set {hub_id!r} ({type(err).__name__}: {err}). Offline, "
                "download its parquet files elsewhere and pass their folder (or a save_to_disk folder) instead."
            ) from None
    elif _is_save_to_disk(path):
        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as err:
            raise BmbenchError(f"{path}: not a readable save_to_disk folder ({type(err).__name__}: {err})") from None
    else:
        files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
        if not files or any(f.suffix != ".parquet" for f in files):
            raise BmbenchError(f"{path}: expected a save_to_disk folder ({' or '.join(SAVE_TO_DISK_FILES)} inside), "
                               "a .parquet file, or a folder holding .parquet files")
        try:
            loaded = datasets.load_dataset("parquet", data_files={"data": [str(f) for f in files]}, streaming=True)
        except Exception as err:
            raise BmbenchError(f"{path}: cannot read the parquet files ({type(err).__name__}: {err})") from None
    if isinstance(loaded, datasets.Dataset | datasets.IterableDataset):
        return [("data", loaded)]
    return list(loaded.items())


def _image_column(ds: Any, wanted: str | None) -> str:
    import datasets

    columns = list(ds.column_names or []) if getattr(ds, "column_names", None) else list((ds.features or {}).keys())
    if wanted is not None:
        if columns and wanted not in columns:
            raise BmbenchError(f"the data set has no column {wanted!r}; its columns: {', '.join(columns)}")
        return wanted
    for name, feature in (ds.features or {}).items():
        if isinstance(feature, datasets.Image):
            return str(name)
    if "image" in columns:
        return "image"
    raise BmbenchError(f"no image column found (columns: {', '.join(columns) or 'unknown'}); pass --image-column")


def _label_codes(ds: Any, column: str) -> list[str | None] | None:
    """Class code of each ClassLabel index, when the label names are the 21 codes; else None (not checked)."""
    import datasets

    feature = (ds.features or {}).get(column)
    if not isinstance(feature, datasets.ClassLabel):
        return None
    codes = [n.strip().upper() if n.strip().upper() in CLASS_INDEX else None for n in feature.names]
    return codes if any(codes) else None


def iter_encoded(ds: Any, image_column: str, label_column: str | None) -> Iterator[tuple[bytes | None, Any]]:
    """``(encoded image bytes, raw label)`` for every row; bytes are None when a row holds no readable image."""
    import datasets

    if isinstance((ds.features or {}).get(image_column), datasets.Image):
        ds = ds.cast_column(image_column, datasets.Image(decode=False))
    for row in ds:
        value = row.get(image_column)
        label = row.get(label_column) if label_column else None
        data: bytes | None = None
        if isinstance(value, dict):
            data = value.get("bytes")
            if data is None and value.get("path") and os.path.isfile(value["path"]):
                data = Path(value["path"]).read_bytes()
        elif isinstance(value, bytes | bytearray):
            data = bytes(value)
        yield data, label


@dataclass
class ImportReport:
    """What an import found and wrote."""

    root: Path
    manifest: Path
    rows_read: int = 0
    matched: int = 0
    written: int = 0
    unmatched: int = 0
    unreadable: int = 0
    repeated: int = 0
    """Rows whose bytes were already written (the same image twice in the source)."""
    label_disagreements: int = 0
    labels_checked: bool = False
    missing: list[str] = field(default_factory=list)
    per_split: dict[str, dict[str, int]] = field(default_factory=dict)
    synthetic: bool = False

    @property
    def complete(self) -> bool:
        return not self.missing


def import_hf(source: str, out: Path, manifest: Path | None = None, *, synthetic: bool = False,
              image_column: str | None = None, label_column: str | None = "label",
              progress: Callable[[int], None] | None = None) -> ImportReport:
    """Write the images of ``source`` that the manifest knows into ``out/BM_cytomorphology_data``.

    ``synthetic`` marks the tree as the SYNTHETIC demo set (for testing with a synthetic manifest).
    """
    from bmbench.data.synthetic import SYNTHETIC_NOTE, abbreviations_csv

    manifest_path = Path(manifest) if manifest is not None else default_manifest_path()
    if not manifest_path.is_file():
        raise BmbenchError(how_to_create_manifest(manifest_path) if manifest is None
                           else f"manifest {manifest_path} does not exist")
    rows = read_manifest(manifest_path)
    by_sha: dict[str, list[ManifestRow]] = {}
    for r in rows:
        by_sha.setdefault(r.sha256, []).append(r)
    counts = manifest_layout_counts(rows)
    out = Path(out)
    final = out / DATA_FOLDER
    if final.exists() or final.is_symlink():
        raise BmbenchError(f"{final} already exists; pass another --out or delete it")
    splits = open_source(source)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{DATA_FOLDER}.import-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    report = ImportReport(root=final, manifest=manifest_path, synthetic=synthetic)
    written: set[str] = set()
    try:
        tmp.mkdir()
        for split_name, ds in splits:
            column = _image_column(ds, image_column)
            names = ds.column_names or list((ds.features or {}).keys())
            label_col = label_column if label_column and (not names or label_column in names) else None
            label_codes = _label_codes(ds, label_col) if label_col else None
            report.labels_checked = report.labels_checked or label_codes is not None
            tally = report.per_split.setdefault(split_name, {"rows": 0, "matched": 0, "unmatched": 0})
            for data, label in iter_encoded(ds, column, label_col):
                report.rows_read += 1
                tally["rows"] += 1
                if progress is not None:
                    progress(1)
                if data is None:
                    report.unreadable += 1
                    continue
                entries = by_sha.get(hashlib.sha256(data).hexdigest())
                if entries is None:
                    report.unmatched += 1
                    tally["unmatched"] += 1
                    continue
                report.matched += 1
                tally["matched"] += 1
                if label_codes is not None and isinstance(label, int) and 0 <= label < len(label_codes) \
                        and label_codes[label] is not None and label_codes[label] != entries[0].label:
                    report.label_disagreements += 1
                fresh = [e for e in entries if e.image_id not in written]
                if not fresh:
                    report.repeated += 1
                for e in fresh:  # identical files in the release share a hash: each id gets the bytes
                    target = tmp / tcia_relpath(e.label, e.number, counts[e.label], synthetic)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                    written.add(e.image_id)
        for code in CLASS_CODES:
            (tmp / code).mkdir(exist_ok=True)
        (tmp / ABBREVIATIONS_FILE).write_text(abbreviations_csv(), encoding="utf-8", newline="")
        if synthetic:
            marker = {"synthetic": True, "imported_by": "bmbench data import-hf", "source": source,
                      "note": SYNTHETIC_NOTE}
            (tmp / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8", newline="")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.written = len(written)
    report.missing = sorted(r.image_id for r in rows if r.image_id not in written)
    return report
