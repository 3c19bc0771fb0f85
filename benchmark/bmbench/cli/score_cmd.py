"""``bmbench score``: the official scorer on a predictions file."""

from __future__ import annotations

from pathlib import Path

import typer

from bmbench.cli.common import console, user_errors


@user_errors
def score(
    predictions: Path = typer.Argument(..., help="Predictions CSV: image_id,fold,pred[,p_ABE,...,p_PMO]."),
    split: str = typer.Option("bm-cv5-v1", "--split", help="Published split the predictions belong to."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the score document to this JSON file."),
) -> None:
    """Validate a predictions file against a published split and score it.

    The file has a header image_id,fold,pred, optionally followed by all 21 probability columns
    p_ABE ... p_PMO (class index order), and one row per test image of every fold scored; a scored
    fold must be complete. Probabilities must be finite, non-negative and sum to 1 within 0.001.

    Conventions (they reproduce Glüge et al. 2023, Tables 4 and 5): a class never predicted in a fold
    has precision 0 there; per-class figures are the mean and sample std (ddof=1) over folds, std null
    for a single fold; the precision / recall / F1 summary is the mean over classes of the per-class
    means, ± the mean over classes of the per-class stds. Macro F1, accuracy, balanced accuracy and
    weighted F1 are mean ± sample std over folds.

    Invalid input exits with status 2 and writes nothing.
    """
    from bmbench.records.score import write_score
    from bmbench.scoring.render import render_score
    from bmbench.scoring.score import score_file

    from bmbench.safe_io import check_output_path

    if json_out is not None:  # refused before any work starts
        check_output_path(json_out, what="--json")
    result = score_file(predictions, split)
    render_score(result, console)
    if json_out is not None:
        write_score(json_out, result)
        console.print(f"wrote {json_out}")
