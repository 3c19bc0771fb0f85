"""Every metric bmbench reports, declared once: the scorer, score.json, the entry schema and the board read this.

A leaf module (standard library only), because the typed records (:mod:`bmbench.records.score`) and the
leaderboard's entry schema both need the list of metrics and sit below or beside the scorer.

Adding a metric is one :class:`MetricSpec` in :data:`METRICS`, its function, and a test:

* ``source = "confusion"``: computed from one fold's confusion matrix; the function is the field of the
  same name of :class:`bmbench.scoring.metrics.FoldMetrics` (filled by ``fold_metrics``);
* ``source = "probabilities"``: computed from one fold's true labels and 21 class probabilities; the
  function is :mod:`bmbench.scoring.probability`'s function of the same name, ``f(true, probs) -> float``.

``convention = "paper"`` metrics are per class and aggregated as Glüge et al. (2023) do (mean over classes
of the per-class means ± mean of the per-class stds); ``convention = "fold"`` metrics are one number per
fold, reported as mean ± sample std over folds (std null for a one-fold split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Convention = Literal["paper", "fold"]
Source = Literal["confusion", "probabilities"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its key, how it is labelled and read, and where its value comes from."""

    name: str
    label: str
    higher_is_better: bool
    convention: Convention
    source: Source
    help: str
    decimals: int = 3

    @property
    def needs_probabilities(self) -> bool:
        """Whether the metric is null for a predictions file without the 21 ``p_*`` columns."""
        return self.source == "probabilities"

    def format(self, value: float | None) -> str:
        """The value as the board prints it (``—`` when absent, never a zero)."""
        return "\u2014" if value is None else f"{value:.{self.decimals}f}"


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("precision", "Precision", True, "paper", "confusion",
               "paper convention: mean over classes of per-class means \u00b1 mean of per-class stds; "
               "a class never predicted in a fold has precision 0 there"),
    MetricSpec("recall", "Recall", True, "paper", "confusion", "paper convention, as precision"),
    MetricSpec("f1", "F1", True, "paper", "confusion", "paper convention, as precision; the board is ordered by it"),
    MetricSpec("macro_f1", "Macro F1", True, "fold", "confusion", "unweighted mean F1 over the 21 classes; "
               "mean \u00b1 sample std over folds"),
    MetricSpec("accuracy", "Accuracy", True, "fold", "confusion", "mean \u00b1 sample std over folds"),
    MetricSpec("balanced_accuracy", "Balanced acc.", True, "fold", "confusion",
               "mean recall over the classes present; mean \u00b1 sample std over folds"),
    MetricSpec("weighted_f1", "Weighted F1", True, "fold", "confusion",
               "support-weighted mean F1; mean \u00b1 sample std over folds"),
    MetricSpec("auroc", "AUROC", True, "fold", "probabilities",
               "macro one-vs-rest area under the ROC curve (classes present in the fold, ties counted half); "
               "needs the 21 probabilities"),
    MetricSpec("log_loss", "Log loss", False, "fold", "probabilities",
               "mean -ln p(true class), p clipped at 1e-15; needs the 21 probabilities"),
    MetricSpec("brier", "Brier", False, "fold", "probabilities",
               "mean over images of the sum over classes of (p - 1[true])\u00b2 (0 best, 2 worst); "
               "needs the 21 probabilities"),
    MetricSpec("ece", "ECE", False, "fold", "probabilities",
               "top-label expected calibration error, 15 equal-width confidence bins; needs the 21 probabilities"),
)
"""All metrics, in the order the score document, the entry and the board list them."""

BY_NAME: dict[str, MetricSpec] = {m.name: m for m in METRICS}
PAPER_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS if m.convention == "paper")
"""Per-class metrics in the paper's convention (precision, recall, F1)."""
FOLD_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS if m.convention == "fold" and m.source == "confusion")
"""One value per fold, computed from the confusion matrix."""
PROBABILITY_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS if m.source == "probabilities")
"""One value per fold, computed from the probabilities (null without them)."""
PER_FOLD_METRICS: tuple[str, ...] = FOLD_METRICS + PROBABILITY_METRICS
"""Every metric with one value per fold (recorded per fold in score.json)."""
ALL_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS)


def spec(name: str) -> MetricSpec:
    """The declaration of metric ``name`` (KeyError names the known ones)."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(ALL_METRICS)}") from None
