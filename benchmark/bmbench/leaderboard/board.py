"""The board: where it lives, which entries it admits, and the ranked sections computed from its entries.

Two boards share the code and differ in policy: ``main`` (``leaderboard/`` in the repository) admits only
real-data, full, non-smoke results with code; ``demo`` (``runs/demo/board/``, built by ``make demo``)
admits SYNTHETIC and smoke results and labels them. A board folder holds ``entries/<name>.json``,
optionally ``predictions/<name>.csv.gz``, and the generated ``README.md`` and ``index.html``.

Sections: entries are ranked only against entries on the same data set *and* the same split (name and
SHA-256); the paper's rows, on the papers' own unpublished splits, form their own sections.
Every figure shown is computed here from the entry: from the confusion matrices through the official
scorer (:func:`bmbench.scoring.score.score_confusions`), or for a paper's rows from its per-class
figures where it gives them, else as it printed them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bmbench.classes import CLASS_CODES, NUM_CLASSES
from bmbench.datasets import DATASETS
from bmbench.leaderboard import stats
from bmbench.leaderboard.published import derived_metrics
from bmbench.leaderboard.schema import ConfusionResults, Entry, MeanStd, PublishedResults
from bmbench.metric_registry import BY_NAME, FOLD_METRICS, PAPER_METRICS, PER_FOLD_METRICS, PROBABILITY_METRICS
from bmbench.protocols import protocol_text
from bmbench.scoring.score import score_confusions

BOARD_KINDS: tuple[str, ...] = ("main", "demo")
HOME_SPLITS = {"main": "bm-cv5-v1", "demo": "synthetic-cv5-v1"}
"""The published split whose section every board shows, even before its first entry."""
OTHER_METRICS: tuple[str, ...] = PER_FOLD_METRICS
"""Metrics with one value per fold (mean ± std over folds), shown after the paper-convention ones."""
IN_DOMAIN_DATA: tuple[str, ...] = ("patchcamelyon", "comparison detector", "dinobloom", "hematology", "haematology",
                                   "blood", "bone marrow", "cytology", "pathology")
"""Words that mark a pre-training data set as in-domain (medical cell or tissue images) for the filter."""


def repo_root() -> Path:
    """The working root (kept for callers of the old name; :mod:`bmbench.paths` owns locations)."""
    from bmbench import paths

    return paths.root()


@dataclass(frozen=True)
class Board:
    """A board folder and its admission policy."""

    kind: str
    root: Path

    @property
    def entries_dir(self) -> Path:
        """``entries/``: one JSON file per result."""
        return self.root / "entries"

    @property
    def predictions_dir(self) -> Path:
        """``predictions/``: optional gzipped predictions files, ``<name>.csv.gz``."""
        return self.root / "predictions"

    @property
    def readme(self) -> Path:
        """The generated Markdown board."""
        return self.root / "README.md"

    @property
    def html(self) -> Path:
        """The generated self-contained HTML board."""
        return self.root / "index.html"

    @property
    def is_demo(self) -> bool:
        """The demo board admits SYNTHETIC and smoke results; the main board never does."""
        return self.kind == "demo"

    @property
    def home_split(self) -> str:
        """The published split this board is about."""
        return HOME_SPLITS[self.kind]

    @property
    def title(self) -> str:
        """Heading of the generated pages."""
        return "bmbench leaderboard" if not self.is_demo else "bmbench DEMO leaderboard (SYNTHETIC data)"


def get_board(kind: str = "main", root: Path | None = None) -> Board:
    """The ``main`` board (``leaderboard/``) or the ``demo`` board (``runs/demo/board/``), or ``root`` if given."""
    if kind not in BOARD_KINDS:
        from bmbench.errors import BmbenchError

        raise BmbenchError(f"unknown board {kind!r}; use one of {', '.join(BOARD_KINDS)}")
    from bmbench import paths

    default = paths.leaderboard_dir() if kind == "main" else paths.demo_board_dir()
    return Board(kind=kind, root=Path(root) if root is not None else default)


def is_synthetic(dataset: str) -> bool:
    """Whether a data set id is synthetic (unknown ids count as not synthetic; the check refuses them)."""
    spec = DATASETS.get(dataset)
    return bool(spec and spec.synthetic)


def external_data_kind(pretraining_data: Sequence[str]) -> str:
    """``none``, ``ImageNet``, ``in-domain`` (any medical cell or tissue images) or ``other``: the page filter."""
    if not pretraining_data:
        return "none"
    lowered = [d.lower() for d in pretraining_data]
    if any(word in d for d in lowered for word in IN_DOMAIN_DATA):
        return "in-domain"
    if all(d.startswith("imagenet") for d in lowered):
        return "ImageNet"
    return "other"


def may_have_seen_test_images(entry: Entry) -> bool:
    """DinoBloom pre-trained on this data set, so its pre-training may have seen the test images."""
    text = " ".join([entry.name, entry.backbone, entry.encoder.id if entry.encoder else "", *entry.pretraining_data])
    return "dinobloom" in text.lower()


@dataclass(frozen=True)
class Row:
    """One entry as the board shows it: figures, per-class means, statistics and its place in the section."""

    entry: Entry
    precision: MeanStd | None
    recall: MeanStd | None
    f1: MeanStd | None
    fold_metrics: dict[str, MeanStd | None]
    per_fold_macro_f1: dict[int, float] | None
    per_class: dict[str, dict[str, float]] | None
    mean_confusion: np.ndarray | None
    derived: bool
    ci: tuple[float, float] | None
    draws: np.ndarray | None = field(default=None, repr=False, compare=False)
    candidate: stats.Candidate | None = field(default=None, repr=False, compare=False)
    rank: int = 0
    tier: int | None = None
    rank_ci: tuple[int, int] | None = None
    comparison: stats.Comparison | None = None

    @property
    def name(self) -> str:
        """The entry's name."""
        return self.entry.name

    @property
    def ranked(self) -> bool:
        """Whether the row takes a rank: not superseded, and an F1 to rank by."""
        return self.entry.status != "superseded" and self.f1 is not None


def _ms(value: dict[str, Any] | None) -> MeanStd | None:
    return None if value is None else MeanStd(mean=value["mean"], std=value["std"])


def _test_train_ratio(entry: Entry, confusions: dict[int, np.ndarray]) -> dict[int, float]:
    """Per fold: test images / images outside the test part (train + val), for the corrected t-test."""
    spec = DATASETS.get(entry.split.dataset)
    if spec is None:
        return {}
    total = int(spec.total)
    out = {}
    for fold, cm in confusions.items():
        n_test = int(cm.sum())
        if 0 < n_test < total:
            out[fold] = n_test / (total - n_test)
    return out


def compute_row(entry: Entry, paired: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> Row:
    """Everything the board shows about one entry, computed from what the entry carries.

    Confusion-matrix metrics are recomputed by the official scorer; probability metrics are the entry's
    stated ones, which ``leaderboard check`` recomputes from the stored predictions file.
    """
    if isinstance(entry.results, ConfusionResults):
        confusions = {f.fold: np.asarray(f.confusion, dtype=np.int64) for f in entry.results.folds}
        score = score_confusions(confusions)
        summary = score["summary"]
        per_class = {code: {m: score["per_class"][code][m]["mean"] for m in PAPER_METRICS} for code in CLASS_CODES}
        per_fold = {p["fold"]: p["macro_f1"] for p in score["per_fold"]}
        ordered = [confusions[f] for f in sorted(confusions)]
        draws = stats.bootstrap_f1_draws(ordered, seed=stats.entry_seed(entry.name))
        return Row(
            entry=entry,
            **{m: _ms(summary[m]) for m in PAPER_METRICS},
            fold_metrics={**{m: _ms(summary[m]) for m in FOLD_METRICS},
                          **{m: getattr(entry.metrics, m) for m in PROBABILITY_METRICS}},
            per_fold_macro_f1=per_fold,
            per_class=per_class,
            mean_confusion=np.mean(ordered, axis=0),
            derived=True,
            ci=stats.percentile_interval(draws),
            draws=draws,
            candidate=stats.Candidate(entry.name, per_fold, _test_train_ratio(entry, confusions), paired),
        )
    if not isinstance(entry.results, PublishedResults):
        raise TypeError(f"unknown results kind {type(entry.results).__name__}")
    derived = derived_metrics(entry)
    figures = derived if derived is not None else {m: getattr(entry.metrics, m) for m in PAPER_METRICS}
    per_class = None
    if entry.results.per_class is not None:
        per_class = {code: {m: getattr(entry.results.per_class[code], m).mean for m in PAPER_METRICS}
                     for code in CLASS_CODES}
    return Row(
        entry=entry,
        **figures,
        fold_metrics={m: getattr(entry.metrics, m) for m in OTHER_METRICS},
        per_fold_macro_f1=None,
        per_class=per_class,
        mean_confusion=None,
        derived=derived is not None,
        ci=None,
        candidate=stats.Candidate(entry.name, None),
    )


@dataclass(frozen=True)
class Section:
    """Entries ranked together: one data set, one split (name and SHA-256)."""

    dataset: str
    split_name: str
    split_sha256: str | None
    description: str | None
    rows: tuple[Row, ...]

    @property
    def synthetic(self) -> bool:
        """Whether the section's data set is synthetic."""
        return is_synthetic(self.dataset)

    @property
    def anchor(self) -> str:
        """A stable HTML id."""
        return "section-" + "".join(c if c.isalnum() else "-" for c in f"{self.dataset}-{self.split_name}")

    @property
    def title(self) -> str:
        """Heading: which split and data set, and whether it is a published split."""
        if self.split_sha256 is not None:
            head = f"Split {self.split_name} (SHA-256 {self.split_sha256[:12]}\u2026) \u00b7 data set {self.dataset}"
        else:
            head = f"Split {self.split_name} (not published) \u00b7 data set {self.dataset}"
        return head + (" \u00b7 SYNTHETIC" if self.synthetic else "")


def rank_rows(rows: Sequence[Row]) -> tuple[Row, ...]:
    """Order by F1 (then name); competition ranks, tiers, rank intervals and the comparison with the leader.

    Superseded entries, and published rows without an F1, are listed last, unranked (rank 0, shown as a
    dash) and never the leader.
    """
    ordered = sorted(rows, key=lambda r: (not r.ranked, r.entry.status == "superseded",
                                          -(r.f1.mean if r.f1 is not None else 0.0), r.name))
    active = [r for r in ordered if r.ranked]
    candidates = [r.candidate or stats.Candidate(r.name, None) for r in active]
    comparisons = stats.compare_with_leader(candidates, NUM_CLASSES)
    tiers = stats.assign_tiers(candidates, NUM_CLASSES)
    intervals = stats.rank_intervals({r.name: r.draws for r in active if r.draws is not None})
    out = []
    for row in ordered:
        if not row.ranked:
            out.append(replace(row, rank=0, comparison=None))
            continue
        f1 = row.f1.mean if row.f1 is not None else 0.0
        rank = 1 + sum(1 for other in active if other.f1 is not None and other.f1.mean > f1)
        out.append(replace(row, rank=rank, comparison=comparisons.get(row.name), tier=tiers.get(row.name),
                           rank_ci=intervals.get(row.name)))
    return tuple(out)


def _paired_predictions(board: Board, entries: Sequence[Entry], splits_dir: Path | None
                        ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(positions, true, predicted) of every entry with a stored predictions file, for image-level pairing."""
    from bmbench.leaderboard.entries import predictions_relpath
    from bmbench.leaderboard.stored import read_stored
    from bmbench.splits.store import load_split

    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    split = None
    for entry in entries:
        if entry.predictions is None:
            continue
        split = split or load_split(entry.split.name, splits_dir)
        rel = predictions_relpath(entry.name)
        preds = read_stored(board.root / rel, rel, split).predictions
        order = np.argsort(preds.positions, kind="stable")
        positions = preds.positions[order]
        out[entry.name] = (positions, split.labels[positions].astype(np.int64), preds.pred[order])
    return out


def one_fold_split(name: str) -> bool:
    """Whether ``name`` is a published split with a single fold (a hold-out)."""
    from bmbench.splits.store import split_specs

    spec = split_specs().get(name)
    return spec is not None and spec.folds == 1


def build_sections(board: Board, entries: Sequence[Entry], home_sha256: str | None,
                   splits_dir: Path | None = None) -> list[Section]:
    """Group entries by (data set, split name, split SHA-256), rank each group; the home split comes first.

    Fine-tuned and frozen-feature entries of one split share its section (they predict the same test
    images). On a one-fold published split the entries' stored predictions files are paired image by image.
    """
    groups: dict[tuple[str, str, str | None], list[Entry]] = {}
    home_dataset = "synthetic" if board.is_demo else "bm"
    home_key = (home_dataset, board.home_split, home_sha256)
    groups[home_key] = []
    for entry in entries:
        groups.setdefault((entry.split.dataset, entry.split.name, entry.split.sha256), []).append(entry)

    def order(key: tuple[str, str, str | None]) -> tuple[int, int, str, str, str]:
        dataset, name, sha = key
        return (0 if key == home_key else 1, 0 if sha is not None else 1, dataset, name, sha or "")

    sections = []
    for key in sorted(groups, key=order):
        members = groups[key]
        descriptions = sorted({e.split.description for e in members if e.split.description})
        paired: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        if key[2] is not None and one_fold_split(key[1]):
            paired = _paired_predictions(board, [e for e in members if e.has_confusions], splits_dir)
        sections.append(Section(
            dataset=key[0], split_name=key[1], split_sha256=key[2],
            description=descriptions[0] if descriptions else None,
            rows=rank_rows([compute_row(e, paired.get(e.name)) for e in members]),
        ))
    return sections


@dataclass(frozen=True)
class Column:
    """A column of the ranked tables: key (for ``#sort=<key>``), label, numeric or text, and what it means."""

    key: str
    label: str
    numeric: bool
    help: str


def _metric_column(name: str) -> Column:
    spec = BY_NAME[name]
    return Column(name, spec.label, True, spec.help + ("" if spec.higher_is_better else " (lower is better)"))


COLUMNS: tuple[Column, ...] = (
    Column("rank", "Rank", True, "position by F1 within the section (ties share a rank)"),
    Column("tier", "Tier", True, "tier 1: the leader and every entry not significantly worse than it; tier t+1: the "
           "best remaining entry and every remaining entry not significantly worse than it"),
    Column("name", "Name", False, "entry name (leaderboard/entries/<name>.json)"),
    Column("protocol", "Protocol", False, "fine-tune (trained end to end) or a frozen-feature protocol: linear probe, "
           "kNN-1, kNN-20, few-shot-n"),
    Column("backbone", "Backbone", False, "architecture (the encoder of a frozen-feature entry)"),
    Column("init", "Initialisation", False, "weights the training started from"),
    Column("pretraining", "External data", False, "data sets other than the benchmark's used for pre-training"),
    *(_metric_column(m) for m in PAPER_METRICS),
    Column("f1_ci", "F1 95 % CI", True, "seeded bootstrap interval over test images"),
    Column("rank_ci", "Rank 95 % CI", True, "bootstrap interval of the rank by F1 (same resamples as the F1 CI)"),
    Column("vs_leader", "vs leader", True, "corrected resampled t-test over folds (paired bootstrap over test images "
           "on a one-fold split) against the section's leader, Holm-adjusted p"),
    *(_metric_column(m) for m in OTHER_METRICS),
    Column("parameters", "Params", True, "trainable parameters (frozen-feature entries: the encoder's)"),
    Column("device_hours", "Device-h", True, "accelerator hours over all folds (CPU-only runs: 0)"),
    Column("weights", "Weights", False, "the trained checkpoint: download link, SHA-256 and licence"),
    Column("status", "Status", False, "reproduced here, submitted, reported in a paper, superseded"),
)
"""The ranked tables' columns, in order; the metric columns come from :mod:`bmbench.metric_registry`."""


@dataclass(frozen=True)
class Cell:
    """What a table cell shows, the value it sorts by (None sorts last) and an explanatory title."""

    text: str
    sort: float | str | None
    title: str | None = None


def pm(value: MeanStd | None, decimals: int = 3) -> str:
    """``0.787 ± 0.060`` (three decimals, as the paper prints), ``0.545`` without a std, ``—`` for none."""
    if value is None:
        return "—"
    return f"{value.mean:.{decimals}f}" + (f" ± {value.std:.{decimals}f}" if value.std is not None else "")


def count_text(count: int) -> str:
    """``145.0 M``, ``52.3 k`` or ``812``: a parameter count at a glance (the exact count is in the title)."""
    if count >= 1_000_000:
        return f"{count / 1e6:.1f} M"
    if count >= 1_000:
        return f"{count / 1e3:.1f} k"
    return str(count)


def vs_leader_cell(comparison: stats.Comparison | None) -> Cell:
    """``leader``, ``≈ (p = 0.41)``, ``below (p = 0.003)`` or ``—`` with the reason."""
    if comparison is None:
        return Cell("—", None)
    if comparison.verdict == "leader":
        return Cell("leader", 2.0, "the highest F1 in this section")
    if comparison.verdict == "n/a" or comparison.test is None or comparison.p_adjusted is None:
        return Cell("—", None, f"no comparison: {comparison.reason}")
    p = comparison.p_adjusted
    test = comparison.test
    shown = f"{p:.2g}" if p >= 0.001 else "< 0.001"
    unit = "folds" if test.t is not None else "test images"
    statistic = f", t = {test.t:.3g}" if test.t is not None else ""
    title = (f"{test.method} over {test.n} {unit}: macro-F1 difference {test.mean_difference:.4f}{statistic}, "
             f"p = {test.p:.3g}, Holm-adjusted p = {p:.3g}")
    if comparison.verdict == "tied":
        return Cell(f"≈ (p = {shown})", 1.0 + p, title + ": not distinguishable from the leader")
    return Cell(f"below (p {'= ' + shown if p >= 0.001 else shown})", p, title)


def status_text(entry: Entry) -> str:
    """The status, with SYNTHETIC / SMOKE / not re-scored labels where they apply."""
    labels = [entry.status]
    if is_synthetic(entry.split.dataset):
        labels.append("SYNTHETIC")
    if entry.smoke:
        labels.append("SMOKE")
    if isinstance(entry.results, PublishedResults) and entry.split.sha256 is not None:
        labels.append("not re-scored")
    return " · ".join(labels)


SEEN_TEST_IMAGES = ("DinoBloom pre-trained on this data set: its pre-training may have seen the test images")


def _metric_cell(name: str, value: MeanStd | None, note: str | None = None) -> Cell:
    spec = BY_NAME[name]
    if value is None:
        absent = "absent: needs the stored predictions with probabilities" if spec.needs_probabilities else "absent"
        return Cell("—", None, absent)
    return Cell(pm(value, spec.decimals), value.mean, note)


def row_cells(row: Row) -> dict[str, Cell]:
    """The cells of one row of a ranked table, by column key."""
    entry = row.entry
    params = entry.parameters if entry.parameters is not None else (entry.encoder.parameters if entry.encoder else None)
    hours = entry.compute.device_hours
    fm = row.fold_metrics
    if not row.derived:
        derived_note = "as published"
    elif isinstance(entry.results, PublishedResults):
        derived_note = "derived from the per-class figures"
    else:
        derived_note = "recomputed from the confusion matrices"
    about = ", ".join(entry.authors) + (f"; {entry.notes}" if entry.notes else "")
    if may_have_seen_test_images(entry):
        about += "; " + SEEN_TEST_IMAGES
    weights = entry.weights
    if row.rank:
        rank_cell = Cell(str(row.rank), float(row.rank))
    elif entry.status == "superseded":
        rank_cell = Cell("—", None, "superseded: not ranked")
    else:
        rank_cell = Cell("—", None, "no F1 to rank by (published figures only)")
    cells = {
        "rank": rank_cell,
        "tier": Cell(str(row.tier), float(row.tier)) if row.tier is not None else Cell("—", None),
        "name": Cell(entry.name + (" ‡" if may_have_seen_test_images(entry) else ""), entry.name.lower(), about),
        "protocol": Cell(protocol_text(entry.protocol), entry.protocol),
        "backbone": Cell(entry.encoder.id if entry.encoder else entry.backbone,
                         (entry.encoder.id if entry.encoder else entry.backbone).lower()),
        "init": Cell(entry.init, entry.init.lower()),
        "pretraining": Cell(", ".join(entry.pretraining_data) or "none", ", ".join(entry.pretraining_data).lower()),
        "f1_ci": Cell(f"{row.ci[0]:.3f}–{row.ci[1]:.3f}", row.ci[0]) if row.ci else Cell("—", None),
        "rank_ci": Cell(f"{row.rank_ci[0]}–{row.rank_ci[1]}" if row.rank_ci[0] != row.rank_ci[1]
                        else str(row.rank_ci[0]), float(row.rank_ci[0])) if row.rank_ci else Cell("—", None),
        "vs_leader": vs_leader_cell(row.comparison),
        "parameters": Cell(count_text(params) + ("†" if entry.parameters_note else ""), float(params),
                           entry.parameters_note or f"{params:,} parameters")
        if params is not None else Cell("—", None),
        "device_hours": Cell(f"{hours:.2f}", hours, entry.compute.hardware)
        if hours is not None else Cell("—", None),
        "weights": Cell("download", weights.url, f"SHA-256 {weights.sha256}"
                        + (f"; licence {weights.licence}" if weights.licence else ""))
        if weights is not None else Cell("—", None),
        "status": Cell(status_text(entry), status_text(entry)),
    }
    for name in PAPER_METRICS:
        cells[name] = _metric_cell(name, getattr(row, name), derived_note)
    for name in OTHER_METRICS:
        cells[name] = _metric_cell(name, fm.get(name))
    return cells


def tied_with_leader(row: Row) -> bool:
    """Whether the row is the leader or not distinguishable from it (the leader's group)."""
    return row.comparison is not None and row.comparison.verdict in ("leader", "tied")
