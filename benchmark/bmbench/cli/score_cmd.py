"""``bmbench score``: the official scorer on a predictions file."""

from __future__ import annotations

from pathlib import Path

import typer

from bmbench.cli.common import check_json_out, emit_json, human_console, json_option, user_errors


@user_errors
def score(
    predictions: Path = typer.Argument(..., help="Predictions CSV: image_id,fold,pred[,p_ABE,...,p_PMO]."),
    split: str | None = typer.Option(None, "--split", help="Published split the predictions belong to (default: "
                                     "the split in run.json beside a run's own predictions.csv, else bm-cv5-v1)."),
    json_out: Path | None = json_option("Also write the score document (score.json format) to"),
    require_all_folds: bool = typer.Option(False, "--require-all-folds", help="Refuse (exit 2) a file that "
                                           "leaves out a whole fold of the split (default: score the folds "
                                           "present and name the missing ones)."),
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
    from bmbench.scoring.render import render_score
    from bmbench.scoring.score import missing_folds, score_file, split_of_predictions
    from bmbench.scoring.score import require_all_folds as check_all_folds

    check_json_out(json_out)  # refused before any work starts
    out = human_console(json_out)
    if split is None:
        split, why = split_of_predictions(predictions)
        out.print(f"split {split} ({why})", highlight=False, markup=False, soft_wrap=True)
    result = score_file(predictions, split)
    if require_all_folds:
        check_all_folds(result, predictions)
    render_score(result, out)
    missing = missing_folds(result)
    if missing:
        out.print(f"[yellow]warning: folds {', '.join(map(str, missing))} of {split} have no predictions; the "
                  f"figures cover folds {', '.join(map(str, result['folds']))} only (--require-all-folds "
                  "refuses such a file)[/]", highlight=False, soft_wrap=True)
    if json_out is not None:  # the score.json model (pydantic) is built only for a document that is written
        from bmbench.records.score import score_json

        emit_json(json_out, score_json(result))
