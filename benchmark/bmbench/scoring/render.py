"""Rich rendering of a score document for the terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from bmbench.classes import cell_classes
from bmbench.metric_registry import METRICS, PER_FOLD_METRICS


def _pm(stat: dict[str, float | None] | None) -> str:
    if stat is None:
        return "—"
    std = stat.get("std")
    return f"{stat['mean']:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def render_score(score: dict[str, Any], console: Console) -> None:
    """Summary, per-fold and per-class tables; synthetic results are labelled as such in every title."""
    split = score["split"]
    tag = " [bold red]SYNTHETIC DATA — not comparable with real results[/]" if score["synthetic"] else ""
    folds = ", ".join(str(f) for f in score["folds"])
    summary = Table(title=f"Score on split {split['name']} (folds {folds}){tag}", title_justify="left")
    summary.add_column("metric")
    summary.add_column("mean ± std", justify="right")
    summary.add_column("convention")
    s = score["summary"]
    for spec in METRICS:
        if spec.convention == "paper":
            convention = "paper: mean of per-class means ± mean of per-class stds"
        elif s.get(spec.name) is None:
            convention = "needs the 21 probability columns p_ABE..p_PMO"
        else:
            convention = "mean ± sample std over folds" + ("" if spec.higher_is_better else " (lower is better)")
        summary.add_row(spec.name, _pm(s.get(spec.name)), convention)
    console.print(summary)

    per_fold = Table(title=f"Per fold{tag}", title_justify="left")
    shown = [name for name in PER_FOLD_METRICS if any(row.get(name) is not None for row in score["per_fold"])]
    labels = {spec.name: spec.label for spec in METRICS}
    for column in ("fold", "images", *(labels[name] for name in shown)):
        per_fold.add_column(column, justify="right")
    for row in score["per_fold"]:
        images = sum(sum(r) for r in row["confusion"])
        per_fold.add_row(str(row["fold"]), str(images), *(f"{row[name]:.3f}" for name in shown))
    console.print(per_fold)

    per_class = Table(title=f"Per class (mean ± std over folds){tag}", title_justify="left")
    for column, justify in (("class", "left"), ("name", "left"), ("support", "right"), ("precision", "right"),
                            ("recall", "right"), ("F1", "right")):
        per_class.add_column(column, justify=justify)  # type: ignore[arg-type]
    for cls in cell_classes():
        entry = score["per_class"][cls.code]
        per_class.add_row(cls.code, cls.name, str(entry["support"]), _pm(entry["precision"]),
                          _pm(entry["recall"]), _pm(entry["f1"]))
    console.print(per_class)
    console.print(
        "[dim]Conventions: a class never predicted in a fold has precision 0 there; std is the sample std "
        "(ddof=1), omitted for a single fold.[/]"
    )
