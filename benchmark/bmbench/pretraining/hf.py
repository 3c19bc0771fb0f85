"""PatchCamelyon or Comparison Detector from a Hugging Face data set (one image per item, one label).

Sources: ``hf:<id>`` (``datasets.load_dataset``, cached in the usual Hugging Face cache), a local
``save_to_disk`` folder (``datasets.load_from_disk``), or a parquet file / folder of parquet files. The
image column is ``image`` or ``img`` and the label column ``label`` or ``labels`` unless named. Labels map
by class *name* where the data set has names (a ``ClassLabel`` feature or strings; case and punctuation are
ignored, so ``ASC-US`` is ``ascus``); bare integers or booleans, and a two-name ``ClassLabel`` whose names
are not recognised, are taken in the bmbench order of the classes (PCam: 0 normal, 1 metastasis; CD: the 11
categories in order). The log and the metadata say which rule applied.

Splits: ``train`` trains; ``validation`` (or ``valid``/``val``/``dev``) selects the checkpoint, else 20 % of
``train`` rows, chosen by the SHA-256 key rule of bmbench's splits on the row number; ``test`` is reported,
else none is (the val part stands in and the metadata records ``test_accuracy: null``).

Hub access never hangs offline: with ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` set only the cache is read,
otherwise the endpoint must answer a 5-second connection probe before ``datasets`` is asked (its own retries
take tens of seconds without a network).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from bmbench.data.source import cache_dir
from bmbench.errors import BmbenchError, DataNotFoundError
from bmbench.pretraining.source import InDomainSet, PretrainData, as_rgb
from bmbench.splits.algorithm import n_val, split_key

HF_PREFIX = "hf:"
IMAGE_COLUMNS = ("image", "img")
LABEL_COLUMNS = ("label", "labels")
VAL_SPLITS = ("validation", "valid", "val", "dev")
VAL_FRACTION = 0.2
PROBE_TIMEOUT_S = 5.0

Log = Callable[[str], None]


def is_hf_source(value: str) -> bool:
    """Whether ``--data`` names a Hugging Face source: ``hf:<id>``, a save_to_disk folder, or parquet."""
    if value.startswith(HF_PREFIX):
        return True
    path = Path(value).expanduser()
    if path.is_file():
        return path.suffix == ".parquet"
    if path.is_dir():
        return _is_saved(path) or next(path.rglob("*.parquet"), None) is not None
    return False


def _is_saved(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` s (name lookup included)."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "", parsed.port or (80 if parsed.scheme == "http" else 443)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


@contextlib.contextmanager
def _offline_flags(offline: bool) -> Iterator[None]:
    """Make already imported ``datasets``/``huggingface_hub`` honour an offline switch set after their import
    (they read the environment once, at import time; without this they would retry the network)."""
    if not offline:
        yield
        return
    import datasets.config
    import huggingface_hub.constants as hub

    saved = (hub.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE)
    hub.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE = saved


def _load_hub(name: str) -> Any:
    import datasets

    offline = _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("HF_DATASETS_OFFLINE"))
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    if not offline and not _reachable(endpoint):
        raise BmbenchError(
            f"cannot reach {endpoint} to load the Hugging Face data set {name!r} (no network?). If it is already "
            "in your Hugging Face cache, set HF_HUB_OFFLINE=1 to use the cached copy; otherwise download it on "
            "a machine with network access and pass its save_to_disk folder or parquet files with --data PATH."
        )
    try:
        with _offline_flags(offline):
            return datasets.load_dataset(name)
    except Exception as err:  # the hub raises many types; all of them mean "not loadable"
        where = "is not in the local Hugging Face cache (offline mode is on)" if offline else "cannot be loaded"
        raise BmbenchError(f"the Hugging Face data set {name!r} {where} ({type(err).__name__}: {err}). Check "
                           "the id, or pass a local save_to_disk folder or parquet files with --data PATH.") from None


def _load_local(path: Path) -> Any:
    import datasets

    try:
        if path.is_dir() and _is_saved(path):
            return datasets.load_from_disk(str(path))
        hf_cache = str(cache_dir() / "hf-datasets")
        if path.is_file():
            return datasets.load_dataset("parquet", data_files={"train": str(path)}, cache_dir=hf_cache)
        return datasets.load_dataset("parquet", data_dir=str(path), cache_dir=hf_cache)
    except Exception as err:  # arrow / json / file errors: all mean "not a readable copy"
        raise BmbenchError(f"{path}: cannot be read as a Hugging Face data set ({type(err).__name__}: {err})") from None


def _splits(loaded: Any, where: str) -> dict[str, Any]:
    """``{'train': ds, 'val': ds | None, 'test': ds | None}`` from a Dataset or DatasetDict."""
    import datasets

    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded, "val": None, "test": None}
    names = list(loaded.keys())
    if "train" not in loaded:
        raise BmbenchError(f"{where}: has no 'train' split (splits: {', '.join(names) or 'none'})")
    val = next((loaded[n] for n in VAL_SPLITS if n in loaded), None)
    return {"train": loaded["train"], "val": val, "test": loaded["test"] if "test" in loaded else None}


def _column(ds: Any, wanted: str | None, candidates: Sequence[str], what: str, option: str, where: str) -> str:
    columns = list(ds.column_names)
    if wanted is not None:
        if wanted not in columns:
            raise BmbenchError(f"{where}: has no column {wanted!r} (columns: {', '.join(columns)})")
        return wanted
    for name in candidates:
        if name in columns:
            return name
    raise BmbenchError(f"{where}: no {what} column found (looked for {', '.join(candidates)}; columns: "
                       f"{', '.join(columns)}); name it with {option}")


def _labels(ds: Any, column: str, spec: InDomainSet, where: str, notes: list[str]) -> np.ndarray:
    """The labels of ``ds`` in bmbench's order of ``spec.classes``."""
    values = list(ds.select_columns([column])[column])
    feature = ds.features[column]
    names = getattr(feature, "names", None)
    if names:
        index = [spec.class_index(n) for n in names]
        raw = np.asarray(values, dtype=np.int64)
        if raw.size and (raw.min() < 0 or raw.max() >= len(names)):
            raise BmbenchError(f"{where}: column {column!r} holds labels outside 0..{len(names) - 1} "
                               "(unlabelled rows?)")
        if all(i is not None for i in index) and len(set(index)) == len(index):
            notes.append(f"labels mapped by the ClassLabel names {list(names)}")
            return np.asarray(index, dtype=np.int64)[raw]
        if not (len(names) == spec.num_classes == 2):  # only a binary set may fall back to the label order
            unknown = [n for n, i in zip(names, index, strict=True) if i is None]
            raise BmbenchError(f"{where}: label names {unknown or list(names)} do not match the {spec.id} classes "
                               f"{', '.join(spec.classes)} (names are matched ignoring case and punctuation)")
        notes.append(f"ClassLabel names {list(names)} taken in order as {list(spec.classes)}")
        return raw
    if values and isinstance(values[0], str):
        mapping = {v: spec.class_index(v) for v in set(values)}
        unknown = sorted(v for v, i in mapping.items() if i is None)
        if unknown:
            raise BmbenchError(f"{where}: labels {unknown[:5]} are not {spec.id} classes ({', '.join(spec.classes)})")
        notes.append("labels mapped by their names")
        return np.asarray([mapping[v] for v in values], dtype=np.int64)
    try:
        labels = np.asarray(values, dtype=np.int64)
    except (TypeError, ValueError):
        raise BmbenchError(f"{where}: column {column!r} does not hold one class per image") from None
    if labels.ndim != 1:
        raise BmbenchError(f"{where}: column {column!r} holds {labels.shape[1:]} values per image, expected one label")
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise BmbenchError(f"{where}: integer labels must lie in 0..{spec.num_classes - 1} for {spec.id}, found "
                           f"{int(labels.min())}..{int(labels.max())}")
    notes.append(f"integer labels taken in the order {list(spec.classes)}")
    return labels


class HFImages:
    """The image column of several ``datasets.Dataset`` parts as one pool (picklable for workers)."""

    def __init__(self, parts: list[Any], column: str, where: str) -> None:
        self.parts = [p.select_columns([column]) for p in parts]
        self.offsets = np.cumsum([0, *(len(p) for p in parts)])
        self.column = column
        self.where = where

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def image(self, index: int) -> Image.Image:
        part = int(np.searchsorted(self.offsets, index, side="right") - 1)
        row = index - int(self.offsets[part])
        return as_rgb(self.parts[part][row][self.column], f"{self.where} row {row}")


def load_hf(spec: InDomainSet, value: str, *, image_column: str | None = None, label_column: str | None = None,
            log: Log | None = None) -> PretrainData:
    """``spec``'s data from a Hugging Face source (see the module docstring)."""
    if value.startswith(HF_PREFIX):
        name = value[len(HF_PREFIX):].strip()
        if not name:
            raise BmbenchError("--data hf: needs a data set id, e.g. --data hf:<owner>/<name>")
        where, loaded = f"hf:{name}", _load_hub(name)
    else:
        path = Path(value).expanduser()
        if not path.exists():
            raise DataNotFoundError(f"{path} does not exist.\n{spec.download}")
        where, loaded = str(path), _load_local(path)
    parts = _splits(loaded, where)
    train = parts["train"]
    image_col = _column(train, image_column, IMAGE_COLUMNS, "image", "--image-column", where)
    label_col = _column(train, label_column, LABEL_COLUMNS, "label", "--label-column", where)
    notes: list[str] = []
    pool = [train] + [parts[k] for k in ("val", "test") if parts[k] is not None]
    labels = [_labels(ds, label_col, spec, where, notes) for ds in pool]
    counts = [len(ds) for ds in pool]
    start = np.cumsum([0, *counts])
    if parts["val"] is not None:
        train_pos = np.arange(0, counts[0], dtype=np.int64)
        val_pos = np.arange(start[1], start[2], dtype=np.int64)
        val_rule = "the source's validation split"
    else:
        rows = sorted(range(counts[0]), key=lambda r: split_key(f"{spec.id}-hf-v1", "val", str(r)))
        val_set = np.zeros(counts[0], dtype=bool)
        val_set[rows[: n_val(counts[0], VAL_FRACTION)]] = True
        train_pos, val_pos = np.flatnonzero(~val_set).astype(np.int64), np.flatnonzero(val_set).astype(np.int64)
        val_rule = (f"no validation split: rows of train ordered by the SHA-256 of '{spec.id}-hf-v1:val:<row>', "
                    f"first floor({VAL_FRACTION} m + 0.5) = val")
    has_test = parts["test"] is not None
    test_pos = np.arange(start[-2], start[-1], dtype=np.int64) if has_test else val_pos
    if log is not None:
        log(f"{where}: {', '.join(f'{k} {len(v)}' for k, v in parts.items() if v is not None)} rows; image column "
            f"{image_col!r}, label column {label_col!r}; {notes[0] if notes else ''}"
            + ("" if has_test else "; no test split: the val part is reported in its place"))
    data = PretrainData(
        spec=spec, source=HFImages(pool, image_col, where), labels=np.concatenate(labels),
        train=train_pos, val=val_pos, test=test_pos,
        info={"format": "huggingface", "root": where, "image_column": image_col, "label_column": label_col,
              "label_mapping": sorted(set(notes)), "split_rule": val_rule, "has_test": has_test},
    )
    data.check()
    return data
