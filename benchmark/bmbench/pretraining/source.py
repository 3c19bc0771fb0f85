"""What every in-domain data source hands the pre-training: indexable images, labels, and a split.

PatchCamelyon (HDF5), Comparison Detector (COCO JSON + BMP) and Hugging Face copies of either all end up
as a :class:`PretrainData`: one pool of items (``source.image(i)`` -> RGB ``PIL.Image``), their integer
labels, and the positions of the train / val / test parts. :class:`SourceDataPath` feeds that pool to the
unchanged training loop through the plain data path (same sampler, transforms and seeding as fine-tuning);
only the per-item decoding differs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from bmbench.errors import BmbenchError
from bmbench.datapaths.plain import PlainDataPath
from bmbench.recipe import Recipe


@dataclass(frozen=True)
class InDomainSet:
    """An in-domain pre-training data set: its classes (label order), name aliases and where to get it."""

    id: str
    title: str
    classes: tuple[str, ...]
    aliases: dict[str, str]
    download: str
    data_env: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_index(self, name: object) -> int | None:
        """The label of a class name as data sets spell it (``ASC-US``, ``ascus``, ``Herpes``), or None."""
        key = normalise_name(name)
        key = self.aliases.get(key, key)
        return self.classes.index(key) if key in self.classes else None


def normalise_name(name: object) -> str:
    """Lower case, letters and digits only: ``ASC-US`` -> ``ascus``, ``No tumor`` -> ``notumor``."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


PCAM = InDomainSet(
    id="pcam",
    title="PatchCamelyon (Veeling et al. 2018)",
    classes=("normal", "metastasis"),
    aliases={"0": "normal", "false": "normal", "notumor": "normal", "notumour": "normal", "negative": "normal",
             "nometastasis": "normal", "1": "metastasis", "true": "metastasis", "tumor": "metastasis",
             "tumour": "metastasis", "positive": "metastasis", "metastatic": "metastasis"},
    download=(
        "PatchCamelyon: download the six files camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5.gz from "
        "the official release (https://github.com/basveeling/pcam, files on Zenodo: "
        "https://zenodo.org/record/2546921), put them in one folder (gzipped or not) and pass it with --data "
        "(or export BMBENCH_PCAM_DATA). A Hugging Face copy works too: --data hf:<id> or a local "
        "save_to_disk/parquet path."
    ),
    data_env="BMBENCH_PCAM_DATA",
)

CD = InDomainSet(
    id="cd",
    title="Comparison Detector cervical cells (Liang et al. 2021)",
    classes=("ascus", "asch", "lsil", "hsil", "scc", "agc", "trichomonas", "candida", "flora", "herps",
             "actinomyces"),
    aliases={"herpes": "herps"},
    download=(
        "Comparison Detector: download the release linked from https://github.com/kuku-sichuan/ComparisonDetector "
        "(train.json, test.json and the train/ and test/ image folders), unpack it and pass its folder with "
        "--data (or export BMBENCH_CD_DATA). A Hugging Face copy with one image per cell works too: "
        "--data hf:<id> or a local save_to_disk/parquet path."
    ),
    data_env="BMBENCH_CD_DATA",
)

IN_DOMAIN_SETS: dict[str, InDomainSet] = {PCAM.id: PCAM, CD.id: CD}


def in_domain_set(name: str) -> InDomainSet:
    """The data set called ``name`` (``pcam`` or ``cd``)."""
    try:
        return IN_DOMAIN_SETS[name]
    except KeyError:
        raise BmbenchError(f"--dataset must be one of {', '.join(IN_DOMAIN_SETS)}, not {name!r}") from None


class ImageSource(Protocol):
    """Random access to the RGB image of item ``index`` (picklable: DataLoader workers get a copy)."""

    def __len__(self) -> int: ...
    def image(self, index: int) -> Image.Image: ...


@dataclass
class PretrainData:
    """One pool of items with labels, and the positions of its train, val and test parts."""

    spec: InDomainSet
    source: ImageSource
    labels: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    """Provenance for the checkpoint's metadata: format, root, split rule, dropped items, ..."""

    def counts(self) -> dict[str, Any]:
        """Images per part and per class (for the log and the metadata)."""
        out: dict[str, Any] = {}
        for part in ("train", "val", "test"):
            positions = getattr(self, part)
            per_class = np.bincount(self.labels[positions], minlength=self.spec.num_classes)
            out[part] = {"images": int(len(positions)),
                         "per_class": {c: int(n) for c, n in zip(self.spec.classes, per_class, strict=True)}}
        return out

    def check(self) -> None:
        """Refuse a pool whose parts are empty or whose labels are out of range (a clear error, not a crash)."""
        for part in ("train", "val", "test"):
            if len(getattr(self, part)) == 0:
                raise BmbenchError(f"the {self.spec.id} data ({self.info.get('root', '?')}) has no {part} images")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= self.spec.num_classes):
            raise BmbenchError(f"the {self.spec.id} labels must lie in 0..{self.spec.num_classes - 1}")


class SourceDataset(Dataset[tuple[torch.Tensor, int]]):
    """Items ``positions`` of an :class:`ImageSource`, transformed, with integer labels."""

    def __init__(self, source: ImageSource, positions: np.ndarray, labels: np.ndarray,
                 transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.source = source
        self.positions = np.asarray(positions, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        position = int(self.positions[index])
        return self.transform(self.source.image(position)), int(self.labels[position])


class SourceDataPath(PlainDataPath):
    """The plain data path (sampler, transforms, seeding, workers) over an :class:`ImageSource`."""

    def __init__(self, recipe: Recipe, source: ImageSource, labels: np.ndarray, num_classes: int, *, seed: int,
                 pin_memory: bool = False) -> None:
        super().__init__(recipe, [], labels, num_classes, seed=seed, fold=0, pin_memory=pin_memory)
        self.source = source

    def _dataset(  # type: ignore[override]
            self, positions: np.ndarray, transform: Callable[[Image.Image], torch.Tensor]) -> SourceDataset:
        return SourceDataset(self.source, positions, self.labels, transform)


def as_rgb(value: Any, where: str) -> Image.Image:
    """An RGB ``PIL.Image`` from what data sets store: a PIL image, an HxWx3 (or HxW) uint8 array, or bytes."""
    if isinstance(value, Image.Image):
        return value if value.mode == "RGB" else value.convert("RGB")
    if isinstance(value, dict) and value.get("bytes") is not None:
        import io

        return as_rgb(Image.open(io.BytesIO(value["bytes"])), where)
    if isinstance(value, dict) and value.get("path"):
        return as_rgb(Image.open(value["path"]), where)
    array = np.asarray(value)
    if array.dtype != np.uint8:
        if array.size and np.issubdtype(array.dtype, np.floating) and float(array.max()) <= 1.0:
            array = np.round(array * 255.0)
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4)):
        return Image.fromarray(array).convert("RGB")
    raise BmbenchError(f"{where}: cannot read an image from a value of shape {array.shape}")


def positions(start: int, count: int) -> np.ndarray:
    """``start, start + 1, ..., start + count - 1`` as int64."""
    return np.arange(start, start + count, dtype=np.int64)
