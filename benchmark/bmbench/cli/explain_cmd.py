"""``bmbench explain``: Grad-CAM galleries of one class for a finished run (paper Figs. 5 and 6)."""

from __future__ import annotations

from pathlib import Path

import typer

from bmbench.cli.common import console, deprecated_fold_option, folds_option, parse_folds, user_errors


@user_errors
def explain(
    run_dir: Path = typer.Argument(..., help="A finished run folder (runs/<submission>/<dataset>)."),
    code: str = typer.Option(..., "--class", help="Class code to explain, e.g. FGC or BAS."),
    n: int = typer.Option(16, "--n", min=1, help="Images to show (half correct, half misclassified where possible)."),
    folds: str | None = folds_option("Only these folds' test images (default: all folds)"),
    fold: int | None = deprecated_fold_option(),
    data: str | None = typer.Option(None, "--data", help="The run's data folder or 'synthetic' (default: the "
                                    "folder run.json records, else $BMBENCH_DATA)."),
    submission: str | None = typer.Option(None, "--submission", help="The submission folder, if it moved since "
                                          "the run (its digest must match run.json)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default RUN_DIR/explain/<CLASS>)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Grad-CAM heat maps of correctly classified and misclassified test images of a class (PNG + HTML)."""
    from bmbench.extras import require

    require("torch", "train", "bmbench explain")
    require("pytorch_grad_cam", "explain", "bmbench explain")
    from bmbench.explain.gallery import ExplainOptions, explain_run

    options = ExplainOptions(code=code, n=n, folds=parse_folds(folds, fold), data=data, submission=submission,
                             out=out, device=device)
    result = explain_run(run_dir, options)
    tags = (" [bold red]SYNTHETIC DATA[/]" if result.synthetic else "") + (
        " [bold yellow]SMOKE RUN — not comparable[/]" if result.smoke else "")
    shown_ok = sum(x.example.correct for x in result.examples)
    shown_bad = len(result.examples) - shown_ok
    console.print(f"{result.meta['submission']['name']}, class {result.meta['class']} "
                  f"({result.meta['class_name']}){tags}")
    console.print(f"test images of the class: {result.available_correct} correctly classified, "
                  f"{result.available_wrong} misclassified; shown {shown_ok} + {shown_bad}")
    console.print(f"Grad-CAM target layer: {result.target_layer} ({result.target_rule})")
    console.print(f"wrote {result.png}, {result.html.name} and {result.json.name}")
