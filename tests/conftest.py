"""Shared fixtures: loaded splits and a writer of valid (or deliberately broken) predictions files."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from bmbench.classes import CLASS_CODES, CLASS_INDEX, NUM_CLASSES
from bmbench.datasets import DatasetSpec
from bmbench.splits.algorithm import ROLES, derive_split
from bmbench.splits.store import Split, SplitSpec, load_split

PredsWriter = Callable[..., Path]
pytest_plugins = ["feature_fixtures"]  # the frozen-feature fixtures (image_cache) of the embed and probe tests


@pytest.fixture(scope="session")
def synthetic_split() -> Split:
    return load_split("synthetic-cv5-v1")


@pytest.fixture(scope="session")
def bm_split() -> Split:
    return load_split("bm-cv5-v1")


def prediction_rows(
    split: Split, folds: Sequence[int], *, accuracy: float = 0.7, probs: bool = True, seed: int = 0
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """CSV lines (without header) predicting the test images of ``folds``; also true and predicted labels."""
    rng = np.random.default_rng(seed)
    lines: list[str] = []
    true_all: list[int] = []
    pred_all: list[int] = []
    for fold in folds:
        for pos in split.members(fold, "test"):
            true = int(split.labels[pos])
            pred = true if rng.random() < accuracy else int(rng.integers(NUM_CLASSES))
            cells = [str(split.image_ids[pos]), str(fold), CLASS_CODES[pred]]
            if probs:
                p = rng.dirichlet(np.ones(NUM_CLASSES))
                cells += [f"{v:.8f}" for v in p / p.sum()]
            lines.append(",".join(cells))
            true_all.append(true)
            pred_all.append(pred)
    return lines, np.array(true_all), np.array(pred_all)


def header(probs: bool = True) -> str:
    return ",".join(["image_id", "fold", "pred", *([f"p_{c}" for c in CLASS_CODES] if probs else [])])


@pytest.fixture
def write_preds(tmp_path: Path, synthetic_split: Split) -> PredsWriter:
    """Write a valid predictions file for the synthetic split; ``mutate`` may edit its lines first."""

    def _write(
        folds: Sequence[int] = (0, 1, 2, 3, 4),
        *,
        probs: bool = True,
        mutate: Callable[[list[str]], list[str]] | None = None,
        name: str = "preds.csv",
    ) -> Path:
        lines, _, _ = prediction_rows(synthetic_split, folds, probs=probs)
        all_lines = [header(probs), *lines]
        if mutate is not None:
            all_lines = mutate(all_lines)
        path = tmp_path / name
        path.write_text("\n".join(all_lines) + "\n", encoding="utf-8")
        return path

    return _write


ISOLATED_UNSET = ("BMBENCH_DATA", "BMBENCH_SPLITS", "BMBENCH_ROOT", "BMBENCH_SUBMISSIONS", "BMBENCH_WEIGHTS")
"""The user's data, split overrides and root settings (bmbench.paths: the checkout is the root): unset in tests."""


def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The per-session BMBENCH_CACHE every test sees (the synthetic set and image caches are built there once)."""
    return tmp_path_factory.getbasetemp() / "bmbench-cache"


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The temporary cache from the very start: module- and session-scoped fixtures (set up before any
    function-scoped fixture) must not build image caches in the user's cache either."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BMBENCH_CACHE", str(session_cache(tmp_path_factory)))
        yield


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read the user's data, cache or split overrides: a per-session temporary cache."""
    monkeypatch.setenv("BMBENCH_CACHE", str(session_cache(tmp_path_factory)))
    for name in ISOLATED_UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("bmbench.paths._root_override", None)  # a CLI test's --root must not leak


@pytest.fixture(scope="session")
def isolated_environ(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], dict[str, str]]:
    """``os.environ`` as a test sees it, for module- and session-scoped fixtures (they are set up before the
    function-scoped override above, and a thread they start may read the environment between two tests)."""
    import os

    def build() -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ISOLATED_UNSET}
        env["BMBENCH_CACHE"] = str(session_cache(tmp_path_factory))
        return env

    return build


def make_split(ids_by_class: Mapping[str, Sequence[str]], name: str = "baselines-test") -> Split:
    """A 5-fold split of ``ids_by_class`` built with the published algorithm (not hash-checked)."""
    rows = derive_split(name, ids_by_class, folds=5, val_fraction=0.2)
    counts = tuple(len(ids_by_class.get(code, ())) for code in CLASS_CODES)
    spec = SplitSpec(
        name=name,
        dataset=DatasetSpec(id="baselines-test", title="baselines test set", synthetic=True, counts=counts),
        folds=5,
        val_fraction=0.2,
        description="a split built by the baseline tests",
    )
    return Split(
        spec=spec,
        sha256="0" * 64,
        path=Path(f"{name}.csv"),
        fixed_ids=np.array([r.image_id for r in rows]),
        labels=np.array([CLASS_INDEX[r.label] for r in rows], dtype=np.int16),
        roles=np.array([[ROLES.index(role) for role in r.roles] for r in rows], dtype=np.uint8),
    )


@pytest.fixture(scope="session")
def cached_synthetic() -> Path:
    """The default synthetic set (3,118 images) in the session cache (``_session_cache``): the copy every
    `--data synthetic` run of the session reads, generated on first use by the package's own
    ``ensure_synthetic``."""
    from bmbench.data.source import ensure_synthetic

    return ensure_synthetic()


@pytest.fixture(scope="session")
def _baseline_feature_store() -> dict[tuple[str, ...], np.ndarray]:
    return {}


@pytest.fixture
def shared_baseline_features(monkeypatch: pytest.MonkeyPatch,
                             _baseline_feature_store: dict[tuple[str, ...], np.ndarray]) -> None:
    """The baselines' hand-crafted features of one image list, extracted once per session.

    Why: baseline_features_logreg extracts them from every image of the set in each run (11.6 s for the
    3,118 synthetic images at load 1); the runs of test_run and test_grid read the same session-cache
    images. The first extraction is the real one; later runs get a copy of its matrix (progress is told
    of every image, as after an extraction)."""
    import os

    from bmbench.engine import baselines

    real = baselines.extract_features

    def once(paths: Sequence[str | os.PathLike[str]], *, workers: int | None = None,
             progress: Callable[[int], None] | None = None) -> np.ndarray:
        key = tuple(os.fspath(p) for p in paths)
        if key not in _baseline_feature_store:
            _baseline_feature_store[key] = real(paths, workers=workers, progress=progress)
        elif progress is not None:
            progress(len(key))
        return _baseline_feature_store[key].copy()

    monkeypatch.setattr(baselines, "extract_features", once)


TINY_PER_CLASS = 15


@pytest.fixture(scope="session")
def tiny_image_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Split, list[Path]]:
    """A generated 15-images-per-class set and a 5-fold split of it (published algorithm, not hash-checked)."""
    from bmbench.data.layout import scan_data
    from bmbench.data.synthetic import generate_synthetic

    root = generate_synthetic(tmp_path_factory.mktemp("tiny"), seed=1,
                              counts=dict.fromkeys(CLASS_CODES, TINY_PER_CLASS), workers=2)
    index = scan_data(root)
    ids_by_class: dict[str, list[str]] = {code: [] for code in CLASS_CODES}
    for record in index.records:
        ids_by_class[record.code].append(record.image_id)
    split = make_split(ids_by_class, name="tiny-test")
    return split, index.paths_for(split.image_ids, split.name)


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of submissions/demo_cnn with single-process loading (same model.py), for fast runs."""
    import shutil

    from bmbench.submissions.registry import default_submissions_dir

    folder = tmp_path_factory.mktemp("subs") / "demo_cnn"
    shutil.copytree(default_submissions_dir() / "demo_cnn", folder)
    toml = (folder / "submission.toml").read_text().replace("num_workers = 2", "num_workers = 0")
    (folder / "submission.toml").write_text(toml)
    return folder


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slurm", action="store_true", default=False,
                     help="also run the tests marked slurm; they need a running cluster "
                          "(sudo bash scripts/slurm-local.sh start; .ci/run starts one)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without --slurm the slurm tests are deselected (a developer's `make test` needs no cluster)."""
    if config.getoption("--slurm"):
        return
    slurm = [item for item in items if item.get_closest_marker("slurm")]
    if slurm:
        config.hook.pytest_deselected(items=slurm)
        items[:] = [item for item in items if not item.get_closest_marker("slurm")]


def pytest_report_header(config: pytest.Config) -> str:
    if config.getoption("--slurm"):
        return "slurm tests: on (--slurm)"
    return "slurm tests: deselected (start a cluster with scripts/slurm-local.sh start, then pass --slurm)"
