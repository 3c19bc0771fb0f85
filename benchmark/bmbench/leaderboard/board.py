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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bmbench.classes import CLASS_CODES
from bmbench.datasets import DATASETS
from bmbench.leaderboard import stats
from bmbench.leaderboard.published import derived_metrics
from bmbench.leaderboard.schema import FOLD_METRICS, PAPER_METRICS, ConfusionResults, Entry, MeanStd, PublishedResults
from bmbench.scoring.score import score_confusions

BOARD_KINDS: tuple[str, ...] = ("main", "demo")
HOME_SPLITS = {"main": "bm-cv5-v1", "demo": "synthetic-cv5-v1"}
"""The published split whose section every board shows, even before its first entry."""


def repo_root() -> Path:
    """The bmbench checkout (as for the split files)."""
    return Path(__file__).resolve().parents[3]


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
    default = repo_root() / ("leaderboard" if kind == "main" else "runs/demo/board")
    return Board(kind=kind, root=Path(root) if root is not None else default)


def is_synthetic(dataset: str) -> bool:
    """Whether a data set id is synthetic (unknown ids count as not synthetic; the check refuses them)."""
    spec = DATASETS.get(dataset)
    return bool(spec and spec.synthetic)


@dataclass(frozen=True)
class Row:
    """One entry as the board shows it: figures, per-class means, statistics and its rank in the section."""

    entry: Entry
    precision: MeanStd
    recall: MeanStd
    f1: MeanStd
    fold_metrics: dict[str, MeanStd | None]
    per_fold_macro_f1: dict[int, float] | None
    per_class: dict[str, dict[str, float]] | None
    mean_confusion: np.ndarray | None
    derived: bool
    ci: tuple[float, float] | None
    rank: int = 0
    comparison: stats.Comparison | None = None

    @property
    def name(self) -> str:
        """The entry's name."""
        return self.entry.name


def _ms(value: dict[str, Any]) -> MeanStd:
    return MeanStd(mean=value["mean"], std=value["std"])


def compute_row(entry: Entry) -> Row:
    """Everything the board shows about one entry, computed from what the entry carries."""
    if isinstance(entry.results, ConfusionResults):
        confusions = {f.fold: np.asarray(f.confusion, dtype=np.int64) for f in entry.results.folds}
        score = score_confusions(confusions)
        summary = score["summary"]
        per_class = {code: {m: score["per_class"][code][m]["mean"] for m in PAPER_METRICS} for code in CLASS_CODES}
        return Row(
            entry=entry,
            **{m: _ms(summary[m]) for m in PAPER_METRICS},
            fold_metrics={m: _ms(summary[m]) for m in FOLD_METRICS},
            per_fold_macro_f1={p["fold"]: p["macro_f1"] for p in score["per_fold"]},
            per_class=per_class,
            mean_confusion=np.mean([confusions[f] for f in sorted(confusions)], axis=0),
            derived=True,
            ci=stats.bootstrap_f1_interval([confusions[f] for f in sorted(confusions)]),
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
        fold_metrics=dict.fromkeys(FOLD_METRICS),
        per_fold_macro_f1=None,
        per_class=per_class,
        mean_confusion=None,
        derived=derived is not None,
        ci=None,
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
    """Order by F1 (then name), competition ranks on F1, and the comparison with the leader.

    Superseded entries are listed last, unranked (rank 0, shown as a dash) and never the leader.
    """
    ordered = sorted(rows, key=lambda r: (r.entry.status == "superseded", -r.f1.mean, r.name))
    active = [r for r in ordered if r.entry.status != "superseded"]
    comparisons = stats.compare_with_leader([(r.name, r.per_fold_macro_f1) for r in active])
    out = []
    for row in ordered:
        if row.entry.status == "superseded":
            out.append(replace(row, rank=0, comparison=None))
            continue
        rank = 1 + sum(1 for other in active if other.f1.mean > row.f1.mean)
        out.append(replace(row, rank=rank, comparison=comparisons.get(row.name)))
    return tuple(out)


def build_sections(board: Board, entries: Sequence[Entry], home_sha256: str | None) -> list[Section]:
    """Group entries by (data set, split name, split SHA-256), rank each group; the home split comes first."""
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
        sections.append(Section(
            dataset=key[0], split_name=key[1], split_sha256=key[2],
            description=descriptions[0] if descriptions else None,
            rows=rank_rows([compute_row(e) for e in members]),
        ))
    return sections


@dataclass(frozen=True)
class Column:
    """A column of the ranked tables: key (for ``#sort=<key>``), label, numeric or text, and what it means."""

    key: str
    label: str
    numeric: bool
    help: str


COLUMNS: tuple[Column, ...] = (
    Column("rank", "Rank", True, "position by F1 within the section (ties share a rank)"),
    Column("name", "Name", False, "entry name (leaderboard/entries/<name>.json)"),
    Column("backbone", "Backbone", False, "architecture"),
    Column("init", "Initialisation", False, "weights the training started from"),
    Column("pretraining", "External data", False, "data sets other than the benchmark's used for pre-training"),
    Column("precision", "Precision", True,
           "paper convention: mean over classes of per-class means \u00b1 mean of per-class stds"),
    Column("recall", "Recall", True, "paper convention, as precision"),
    Column("f1", "F1", True, "paper convention, as precision; the board is ordered by it"),
    Column("f1_ci", "F1 95 % CI", True, "seeded bootstrap interval over test images"),
    Column("vs_leader", "vs leader", True, "paired t-test over folds against the section's leader (Holm-adjusted p)"),
    Column("macro_f1", "Macro F1", True, "mean \u00b1 sample std over folds"),
    Column("balanced_accuracy", "Balanced acc.", True, "mean \u00b1 sample std over folds"),
    Column("weighted_f1", "Weighted F1", True, "mean \u00b1 sample std over folds"),
    Column("parameters", "Params", True, "trainable parameters, millions"),
    Column("device_hours", "Device-h", True, "accelerator hours over all folds (CPU-only runs: 0)"),
    Column("status", "Status", False, "reproduced here, submitted, reported in a paper, superseded"),
)


@dataclass(frozen=True)
class Cell:
    """What a table cell shows, the value it sorts by (None sorts last) and an explanatory title."""

    text: str
    sort: float | str | None
    title: str | None = None


def pm(value: MeanStd | None) -> str:
    """``0.787 \u00b1 0.060`` (three decimals, as the paper prints), ``0.545`` without a std, ``—`` for none."""
    if value is None:
        return "\u2014"
    return f"{value.mean:.3f}" + (f" \u00b1 {value.std:.3f}" if value.std is not None else "")


def count_text(count: int) -> str:
    """``145.0 M``, ``52.3 k`` or ``812``: a parameter count at a glance (the exact count is in the title)."""
    if count >= 1_000_000:
        return f"{count / 1e6:.1f} M"
    if count >= 1_000:
        return f"{count / 1e3:.1f} k"
    return str(count)


def vs_leader_cell(comparison: stats.Comparison | None) -> Cell:
    """``leader``, ``\u2248 (p = 0.41)``, ``below (p = 0.003)`` or ``—`` with the reason."""
    if comparison is None:
        return Cell("\u2014", None)
    if comparison.verdict == "leader":
        return Cell("leader", 2.0, "the highest F1 in this section")
    if comparison.verdict == "n/a" or comparison.test is None or comparison.p_adjusted is None:
        return Cell("\u2014", None, f"no comparison: {comparison.reason}")
    p = comparison.p_adjusted
    shown = f"{p:.2g}" if p >= 0.001 else "< 0.001"
    title = (f"paired t-test over {comparison.test.n} folds: mean macro-F1 difference "
             f"{comparison.test.mean_difference:.4f}, t = {comparison.test.t:.3g}, p = {comparison.test.p:.3g}, "
             f"Holm-adjusted p = {p:.3g}")
    if comparison.verdict == "tied":
        return Cell(f"\u2248 (p = {shown})", 1.0 + p, title + ": not distinguishable from the leader")
    return Cell(f"below (p {'= ' + shown if p >= 0.001 else shown})", p, title)


def status_text(entry: Entry) -> str:
    """The status, with SYNTHETIC / SMOKE labels where they apply."""
    labels = [entry.status]
    if is_synthetic(entry.split.dataset):
        labels.append("SYNTHETIC")
    if entry.smoke:
        labels.append("SMOKE")
    return " \u00b7 ".join(labels)


def row_cells(row: Row) -> dict[str, Cell]:
    """The cells of one row of a ranked table, by column key."""
    entry = row.entry
    params = entry.parameters
    hours = entry.compute.device_hours
    fm = row.fold_metrics
    if not row.derived:
        derived_note = "as published"
    elif isinstance(entry.results, PublishedResults):
        derived_note = "derived from the per-class figures"
    else:
        derived_note = "recomputed from the confusion matrices"
    about = ", ".join(entry.authors) + (f"; {entry.notes}" if entry.notes else "")
    return {
        "rank": Cell(str(row.rank), float(row.rank)) if row.rank else Cell("\u2014", None, "superseded: not ranked"),
        "name": Cell(entry.name, entry.name.lower(), about),
        "backbone": Cell(entry.backbone, entry.backbone.lower()),
        "init": Cell(entry.init, entry.init.lower()),
        "pretraining": Cell(", ".join(entry.pretraining_data) or "none", ", ".join(entry.pretraining_data).lower()),
        "precision": Cell(pm(row.precision), row.precision.mean, derived_note),
        "recall": Cell(pm(row.recall), row.recall.mean, derived_note),
        "f1": Cell(pm(row.f1), row.f1.mean, derived_note),
        "f1_ci": Cell(f"{row.ci[0]:.3f}\u2013{row.ci[1]:.3f}", row.ci[0]) if row.ci else Cell("\u2014", None),
        "vs_leader": vs_leader_cell(row.comparison),
        "macro_f1": Cell(pm(fm.get("macro_f1")), fm["macro_f1"].mean if fm.get("macro_f1") else None),
        "balanced_accuracy": Cell(pm(fm.get("balanced_accuracy")),
                                  fm["balanced_accuracy"].mean if fm.get("balanced_accuracy") else None),
        "weighted_f1": Cell(pm(fm.get("weighted_f1")), fm["weighted_f1"].mean if fm.get("weighted_f1") else None),
        "parameters": Cell(count_text(params) + ("\u2020" if entry.parameters_note else ""), float(params),
                           entry.parameters_note or f"{params:,} trainable parameters")
        if params is not None else Cell("\u2014", None),
        "device_hours": Cell(f"{hours:.2f}", hours, entry.compute.hardware)
        if hours is not None else Cell("\u2014", None),
        "status": Cell(status_text(entry), status_text(entry)),
    }


def tied_with_leader(row: Row) -> bool:
    """Whether the row is the leader or not distinguishable from it (the leader's group)."""
    return row.comparison is not None and row.comparison.verdict in ("leader", "tied")
