"""Rich rendering of a score document for the terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from bmbench.classes import cell_classes


def _pm(stat: dict[str, float | None]) -> str:
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
    for name in ("precision", "recall", "f1"):
        summary.add_row(name, _pm(s[name]), "paper: mean of per-class means ± mean of per-class stds")
    for name in ("macro_f1", "balanced_accuracy", "accuracy", "weighted_f1"):
        summary.add_row(name, _pm(s[name]), "mean ± sample std over folds")
    console.print(summary)

    per_fold = Table(title=f"Per fold{tag}", title_justify="left")
    for column in ("fold", "images", "accuracy", "balanced acc.", "macro F1", "weighted F1"):
        per_fold.add_column(column, justify="right")
    for row in score["per_fold"]:
        images = sum(sum(r) for r in row["confusion"])
        per_fold.add_row(
            str(row["fold"]), str(images), f"{row['accuracy']:.3f}", f"{row['balanced_accuracy']:.3f}",
            f"{row['macro_f1']:.3f}", f"{row['weighted_f1']:.3f}",
        )
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
