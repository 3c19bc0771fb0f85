"""Published split files on disk: the registry of split names, building, hash-checked loading, verifying.

A split named ``<name>`` lives in ``splits/<name>.csv`` with its SHA-256 in ``splits/SHA256SUMS``
(sha256sum format). Every reader goes through :func:`load_split`, which refuses a file whose hash does not
match, so a result can always name the exact split it was computed on.
"""

from __future__ import annotations

import hashlib
import io
import tomllib
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import resources
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bmbench import atomic, paths
from bmbench.classes import CLASS_CODES, CLASS_INDEX
from bmbench.datasets import DatasetSpec, get_dataset
from bmbench.errors import BmbenchError, SplitIntegrityError
from bmbench.splits.algorithm import ROLES, TEST, SplitRow, derive_holdout, derive_split, render_split_csv

SUMS_NAME = "SHA256SUMS"
CARD_NAME = "README.md"


@dataclass(frozen=True)
class SplitSpec:
    """A published split: its name, the data set it splits, the number of folds and validation fraction."""

    name: str
    dataset: DatasetSpec
    folds: int
    val_fraction: float
    description: str
    kind: str = "cv"
    """``cv`` (k-fold cross-validation) or ``holdout`` (one fold, ``fold0``, with a fixed test part)."""
    test_fraction: float = 0.2
    """Hold-out only, without ``test_ids``: per class, the first floor(test_fraction * n) ids by key test."""
    test_ids: str | None = None
    """Hold-out only: a published test-id list, relative to the splits folder (``sources/<file>.csv``)."""
    test_ids_sha256: str | None = None
    source: str = ""
    """Where the test-id list comes from (repository, path, commit), for the split card."""
    licence: str = ""
    notes: str = ""
    """Caveats the split card states (e.g. that an encoder pre-trained on these images)."""

    @property
    def filename(self) -> str:
        """The file name of the split inside the splits folder."""
        return f"{self.name}.csv"

    def derive(self) -> tuple[SplitRow, ...]:
        """Re-derive the split's rows from the data set's list of ids (computed once per process)."""
        return _derive_cached(self)

    def render(self) -> bytes:
        """The exact bytes of the published split file."""
        return render_split_csv(self.derive(), self.folds)


@cache
def _derive_cached(spec: SplitSpec) -> tuple[SplitRow, ...]:
    ids_by_class = {code: spec.dataset.image_ids(code) for code in CLASS_CODES}
    if spec.kind == "cv":
        return tuple(derive_split(spec.name, ids_by_class, folds=spec.folds, val_fraction=spec.val_fraction))
    test_ids = None
    if spec.test_ids is not None:
        from bmbench.splits.sources import read_test_ids

        test_ids = read_test_ids(spec.test_ids, spec.test_ids_sha256 or "",
                                 {code: frozenset(ids) for code, ids in ids_by_class.items()})
    return tuple(derive_holdout(spec.name, ids_by_class, test_ids=test_ids, test_fraction=spec.test_fraction,
                                val_fraction=spec.val_fraction))


_KINDS = {"cv", "holdout"}


@cache
def split_specs() -> dict[str, SplitSpec]:
    """All published splits, from the packaged ``splits.toml``."""
    text = resources.files("bmbench.resources").joinpath("splits.toml").read_text(encoding="utf-8")
    table = tomllib.loads(text)["splits"]
    specs = {}
    for name, entry in table.items():
        spec = SplitSpec(
            name=name,
            dataset=get_dataset(entry["dataset"]),
            folds=int(entry["folds"]),
            val_fraction=float(entry["val_fraction"]),
            description=str(entry["description"]),
            kind=str(entry.get("kind", "cv")),
            test_fraction=float(entry.get("test_fraction", 0.2)),
            test_ids=entry.get("test_ids"),
            test_ids_sha256=entry.get("test_ids_sha256"),
            source=str(entry.get("source", "")),
            licence=str(entry.get("licence", "")),
            notes=str(entry.get("notes", "")),
        )
        if spec.kind not in _KINDS or (spec.kind == "holdout") != (spec.folds == 1):
            raise ValueError(f"splits.toml [{name}]: kind must be cv (folds >= 2) or holdout (folds = 1)")
        specs[name] = spec
    return specs


def get_split_spec(name: str) -> SplitSpec:
    """Look a split up by name, with the list of known names in the error."""
    specs = split_specs()
    if name not in specs:
        raise BmbenchError(f"unknown split {name!r}; published splits: {', '.join(specs)}")
    return specs[name]


def split_for_dataset(dataset_id: str) -> SplitSpec:
    """The published split of a data set (``bm`` -> ``bm-cv5-v1``, ``synthetic`` -> ``synthetic-cv5-v1``)."""
    for spec in split_specs().values():
        if spec.dataset.id == dataset_id:
            return spec
    raise BmbenchError(f"no published split for data set {dataset_id!r}")


def check_folds(folds: Sequence[int] | None, split: SplitSpec | Split) -> tuple[int, ...]:
    """The folds of ``split`` that ``--folds`` asks for (every fold when None), each checked against the split
    first: a fold it lacks is refused (exit 2) naming the fold and the valid range, before any fold runs.

    The one rule for ``run``, ``probe``, ``embed``, ``explain``, ``grid`` and ``lr-find``
    (:func:`bmbench.cli.common.parse_folds` applies it in the CLI)."""
    n = split.folds
    chosen = tuple(folds) if folds is not None else tuple(range(n))
    bad = [f for f in chosen if not 0 <= f < n]
    if bad:
        raise BmbenchError(f"--folds must be between 0 and {n - 1} (split {split.name} has {n} fold"
                           f"{'s' if n != 1 else ''}); got {', '.join(map(str, bad))}")
    return chosen


def default_splits_dir() -> Path:
    """The published split files: the package's own folder (the repository's ``splits/`` links to it)."""
    return paths.published_splits_dir()


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def read_sums(splits_dir: Path) -> dict[str, str]:
    """Parse ``SHA256SUMS`` (``<hex>  <file>`` lines) into file name -> hash."""
    path = splits_dir / SUMS_NAME
    if not path.is_file():
        raise SplitIntegrityError(
            f"{path} is missing: the published hashes are needed to check any split. "
            "Restore it from the bmbench repository (git checkout splits/) or run `bmbench splits build`."
        )
    sums: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name:
            raise SplitIntegrityError(f"{path}, line {lineno}: expected '<sha256>  <file name>', got {line!r}")
        sums[name.lstrip("*")] = digest.lower()
    return sums


def render_sums(hashes: dict[str, str]) -> str:
    """``SHA256SUMS`` text for file name -> hash, sorted by name."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(hashes.items()))


@dataclass(frozen=True)
class Split:
    """A loaded, hash-checked split: ids, labels (class indices) and roles (n images x k folds)."""

    spec: SplitSpec
    sha256: str
    path: Path
    fixed_ids: np.ndarray = field(repr=False)
    """The image ids as fixed-width unicode (numpy ``U``), as parsed or cached; :attr:`image_ids` is their
    object-array form, built on first use (the scorer needs neither: it compares Arrow strings)."""
    labels: np.ndarray
    roles: np.ndarray = field(repr=False)

    @cached_property
    def image_ids(self) -> np.ndarray:
        """The image ids (an object array of ``str``), in split row order."""
        return self.fixed_ids.astype(object)

    @property
    def name(self) -> str:
        """The split's name."""
        return self.spec.name

    @property
    def folds(self) -> int:
        """Number of folds."""
        return self.spec.folds

    @cached_property
    def test_fold(self) -> np.ndarray:
        """The fold in which each image is tested; -1 for an image a hold-out split never tests."""
        tested = self.roles == TEST
        return np.where(tested.any(axis=1), np.argmax(tested, axis=1), -1).astype(np.int8)

    @cached_property
    def id_index(self):  # -> pandas.Index; pandas imported lazily with the split
        """A hash index from image id to row position (the look-up where pyarrow is missing)."""
        import pandas as pd

        return pd.Index(self.image_ids)

    @cached_property
    def arrow_ids(self) -> Any:
        """The image ids as an Arrow string array (needs pyarrow)."""
        from bmbench.arrow_columns import strings

        return strings(self.fixed_ids)

    @cached_property
    def _run_order(self) -> np.ndarray:
        """The test images grouped by fold, ascending, in split order within a fold (a run's predictions.csv)."""
        tested = np.flatnonzero(self.test_fold >= 0)
        return tested[np.argsort(self.test_fold[tested], kind="stable")]

    def positions_of(self, ids: Any) -> np.ndarray:
        """The row position of each of ``ids`` (an Arrow string array, a pandas string column or a sequence of
        ``str``), -1 for one not in the split: :func:`bmbench.splits.lookup.positions`, else pandas' index."""
        try:
            from bmbench.splits.lookup import positions
        except ImportError:  # no pyarrow
            return self.id_index.get_indexer(ids)
        return positions(ids, self.arrow_ids, [lambda: None, lambda: self._run_order])

    def members(self, fold: int, role: str) -> np.ndarray:
        """Row positions of the images that play ``role`` (train/val/test) in ``fold``."""
        return np.flatnonzero(self.roles[:, fold] == ROLES.index(role))

    def provenance(self) -> dict[str, str]:
        """What every result records about its split: name, SHA-256 and data set id."""
        return {"name": self.name, "sha256": self.sha256, "dataset": self.spec.dataset.id}


def load_split(name: str, splits_dir: Path | None = None) -> Split:
    """Read split ``name`` after checking its SHA-256 against the published ``SHA256SUMS``.

    Without ``splits_dir`` the file comes from the local splits folder (:func:`bmbench.paths.local_splits_dir`)
    when it holds one, else from the package. With ``splits_dir``, that folder's own ``SHA256SUMS`` must
    list the file too. Either way the file must hash to the published SHA-256; the file is hashed once and
    its parsed arrays come from the cache of :mod:`bmbench.splits.cache` when that holds them.
    """
    spec = get_split_spec(name)
    if splits_dir is not None:
        folder = Path(splits_dir)
    else:
        local = paths.local_splits_dir()
        folder = local if local is not None and (local / spec.filename).is_file() else default_splits_dir()
    path = folder / spec.filename
    if not path.is_file():
        raise SplitIntegrityError(
            f"split file {path} is missing. Restore it (git checkout splits/) or regenerate it with "
            "`bmbench splits build`, or point BMBENCH_SPLITS at the folder that holds it."
        )
    data = path.read_bytes()
    digest = sha256_hex(data)
    if splits_dir is not None:
        _check_hash(path, digest, read_sums(folder).get(spec.filename), folder / SUMS_NAME)
    published = default_splits_dir() / SUMS_NAME
    _check_hash(path, digest, read_sums(default_splits_dir()).get(spec.filename), published)
    return _split_from_arrays(spec, path, digest, data)


def _check_hash(path: Path, digest: str, expected: str | None, sums: Path) -> None:
    """Refuse a split file whose SHA-256 is not the one ``sums`` lists."""
    if expected is None:
        raise SplitIntegrityError(f"{sums} has no hash for {path.name}; it cannot be trusted.")
    if digest != expected:
        local = "" if path.parent.resolve() == default_splits_dir().resolve() else (
            f" A local splits folder ({path.parent}) may only hold the published files: remove it, or unset "
            "BMBENCH_SPLITS.")
        raise SplitIntegrityError(
            f"{path} has SHA-256 {digest}, but {sums} publishes {expected}: the split was modified. "
            "Restore it with `git checkout splits/` (or `bmbench splits build`); results on a modified "
            f"split are not comparable.{local}"
        )


def _split_from_arrays(spec: SplitSpec, path: Path, digest: str, data: bytes) -> Split:
    """The split's arrays from the parsed-split cache, else parsed from ``data`` (and cached)."""
    from bmbench.splits import cache

    arrays = cache.load_arrays(digest, spec.folds)
    if arrays is None:
        arrays = _parse_split(spec, path, data)
        cache.store_arrays(digest, *arrays)
    ids, labels, roles = arrays
    return Split(spec=spec, sha256=digest, path=path, fixed_ids=ids, labels=labels, roles=roles)


def _parse_split(spec: SplitSpec, path: Path, data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse a split file whose hash was checked; structural checks guard against a forged SHA256SUMS."""
    import pandas as pd

    header = ["image_id", "label", *(f"fold{f}" for f in range(spec.folds))]
    # Default (Arrow-backed) strings parse several times faster than object or categorical dtypes.
    frame = pd.read_csv(io.BytesIO(data), na_filter=False)
    if list(frame.columns) != header:
        raise SplitIntegrityError(f"{path}: header must be {','.join(header)}")

    def codes(column: str, mapping: dict[str, int]) -> np.ndarray:
        """Map a column through ``mapping`` via its few distinct values (factorize), not per row."""
        row_codes, uniques = pd.factorize(frame[column])
        lookup = np.array([mapping.get(str(u), -1) for u in uniques], dtype=np.int16)
        out = lookup[row_codes]
        if (out < 0).any():
            raise SplitIntegrityError(f"{path}: column {column} holds a value outside {', '.join(mapping)}")
        return out

    labels = codes("label", CLASS_INDEX)
    role_codes = {role: i for i, role in enumerate(ROLES)}
    roles = np.stack([codes(f"fold{f}", role_codes) for f in range(spec.folds)], axis=1).astype(np.uint8)
    tests = (roles == TEST).sum(axis=1)
    if spec.kind == "cv" and not (tests == 1).all():
        raise SplitIntegrityError(f"{path}: every image must be in exactly one test fold")
    if not tests.any():
        raise SplitIntegrityError(f"{path}: the split has no test images")
    ids = frame["image_id"].to_numpy(dtype=str)
    if len(ids) != spec.dataset.total or len(set(ids.tolist())) != len(ids):
        raise SplitIntegrityError(f"{path}: expected {spec.dataset.total} distinct image ids, got {len(ids)}")
    return ids, labels.astype(np.int16), roles


@dataclass(frozen=True)
class SplitCheck:
    """Result of re-deriving one published split and comparing it with the files on disk."""

    name: str
    sha256: str | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when file, hash and card agree with the re-derivation."""
        return not self.problems


def build_splits(splits_dir: Path) -> list[Path]:
    """Write every published split, ``SHA256SUMS`` and the split card, each atomically."""
    from bmbench.splits.card import render_card

    written: list[Path] = []
    hashes: dict[str, str] = {}
    for spec in split_specs().values():
        data = spec.render()
        atomic.write_bytes(splits_dir / spec.filename, data)
        hashes[spec.filename] = sha256_hex(data)
        written.append(splits_dir / spec.filename)
    atomic.write_text(splits_dir / SUMS_NAME, render_sums(hashes))
    atomic.write_text(splits_dir / CARD_NAME, render_card(hashes))
    return [*written, splits_dir / SUMS_NAME, splits_dir / CARD_NAME]


def verify_splits(splits_dir: Path) -> list[SplitCheck]:
    """Re-derive every published split and check file bytes, ``SHA256SUMS`` and the card."""
    from bmbench.splits.card import render_card

    try:
        sums = read_sums(splits_dir)
    except SplitIntegrityError as err:
        return [SplitCheck(SUMS_NAME, None, (err.message,))]
    checks: list[SplitCheck] = []
    derived_hashes: dict[str, str] = {}
    for spec in split_specs().values():
        problems: list[str] = []
        expected = spec.render()
        derived_hashes[spec.filename] = sha256_hex(expected)
        path = splits_dir / spec.filename
        actual = path.read_bytes() if path.is_file() else None
        if actual is None:
            problems.append(f"{path} is missing")
        elif actual != expected:
            problems.append(f"{path} differs from the re-derived split")
        if sums.get(spec.filename) != derived_hashes[spec.filename]:
            problems.append(f"{SUMS_NAME} entry for {spec.filename} is not the re-derived hash")
        checks.append(SplitCheck(spec.name, derived_hashes[spec.filename], tuple(problems)))
    extra = sorted(set(sums) - set(derived_hashes))
    card = splits_dir / CARD_NAME
    card_problems = [f"{SUMS_NAME} lists unknown files: {', '.join(extra)}"] if extra else []
    if not card.is_file() or card.read_text(encoding="utf-8") != render_card(derived_hashes):
        card_problems.append(f"{card} is missing or out of date")
    checks.append(SplitCheck(CARD_NAME, None, tuple(card_problems)))
    return checks
