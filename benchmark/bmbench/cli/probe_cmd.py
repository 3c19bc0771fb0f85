"""``bmbench probe``: frozen-feature protocols (linear probe, kNN, few-shot) on a submission's encoder.

A thin layer over :func:`bmbench.features.probe.run_probe`; ``bmbench run`` on a frozen-feature submission
calls :func:`probe_and_report` too, so both commands do the same thing and print the same table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from bmbench.cli.common import (check_json_out, emit_json, folds_option, human_console, json_option, parse_folds,
                                user_errors)

TABLE_METRICS = {"f1": "F1", "macro_f1": "macro F1", "accuracy": "accuracy", "balanced_accuracy": "bal. acc.",
                 "weighted_f1": "wtd. F1"}
"""The table's columns (short labels: a log is 80 columns wide): the board's F1 (paper convention), macro F1
and DinoBloom's three figures (accuracy, balanced accuracy, weighted F1)."""


def _cell(spread: Any) -> str:
    if spread is None:
        return "—"
    return f"{spread.mean:.3f}" + (f"±{spread.std:.3f}" if spread.std is not None else "")


def render_probe(summary: Any, out: Any) -> None:
    """A Rich table, one row per variant: mean ± std over folds, few-shot mean ± std over episodes."""
    from rich import box
    from rich.table import Table

    from bmbench.protocols import protocol_text

    folds = sorted({f for v in summary.variants for f in v.folds})
    tag = " [bold red]SYNTHETIC DATA — not comparable with real results[/]" if summary.synthetic else ""
    table = Table(title=f"{summary.submission} ({summary.encoder}) on {summary.split}, "
                  f"fold{'s' if len(folds) > 1 else ''} {','.join(map(str, folds))}{tag}", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("protocol", no_wrap=True)
    for label in TABLE_METRICS.values():
        table.add_column(label, justify="right", no_wrap=True, min_width=11)
    for v in summary.variants:
        figures = v.over_episodes if v.over_episodes is not None else v.metrics
        table.add_row(protocol_text(v.variant), *(_cell(figures.get(name)) for name in TABLE_METRICS))
    out.print(table)
    over = "± sample std over folds" if len(folds) > 1 else "one fold: no std over folds"
    fewshot = [v for v in summary.variants if v.episodes is not None]
    if fewshot:
        over += (f"; few-shot: mean ± std over {fewshot[0].episodes} episodes (predictions.csv and score.json "
                 "hold the median episode, episodes.json every one)")
    out.print(over, highlight=False, markup=False, soft_wrap=True)
    for v in summary.variants:
        if v.short_classes:
            shots = v.variant.split("-", 1)[1]
            listed = "; ".join(f"fold {fold}: " + ", ".join(f"{c} ({n})" for c, n in sorted(classes.items()))
                               for fold, classes in sorted(v.short_classes.items()))
            out.print(f"{protocol_text(v.variant)}: classes with fewer than {shots} images to draw from (all "
                      f"of them used): {listed}", highlight=False, markup=False, soft_wrap=True)
    timing = ", ".join(f"{protocol_text(v.variant)} {v.fit_seconds:.1f} s" for v in summary.variants)
    folders = sorted({str(Path(v.run_dir).parent) for v in summary.variants})
    out.print(f"fit + predict time over the folds: {timing}", highlight=False, markup=False, soft_wrap=True)
    out.print(f"results in {', '.join(folders)}/<protocol>/ (predictions.csv, score.json, run.json); features "
              f"from {summary.features}", highlight=False, markup=False, soft_wrap=True)


def probe_and_report(loaded: Any, options: Any, json_out: Path | None = None) -> Any:
    """Run every variant of ``loaded`` (embedding on the way, with progress), print the table, write --json
    (``-``: the JSON alone on stdout, the table on stderr)."""
    from bmbench.cli.embed_cmd import embed_progress
    from bmbench.features.probe import run_probe, summarize

    with embed_progress() as progress:
        results = run_probe(loaded, options, progress=progress)
    summary = summarize(results)
    render_probe(summary, human_console(json_out))
    emit_json(json_out, summary)
    return summary


@user_errors
def probe(
    submission: str = typer.Argument(..., help="Frozen-feature submission folder or name (protocol linear, knn, "
                                     "fewshot or probe, with an encoder)."),
    data: str | None = typer.Option(None, "--data", help="BM data folder or 'synthetic' (default $BMBENCH_DATA)."),
    split: str | None = typer.Option(None, "--split", help="Published split (default: the data set's, bm-cv5-v1 or "
                                     "synthetic-cv5-v1; dinobloom-bm-v1 for DinoBloom's hold-out)."),
    folds: str | None = folds_option("Folds to run (default: every fold of the split)"),
    out: Path | None = typer.Option(None, "--out", help="Runs folder; results go to OUT/<submission>/<dataset>/"
                                    "<protocol>/ (default: <root>/runs)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    batch: int = typer.Option(256, "--batch", min=1, help="Images per forward pass when embedding."),
    features: Path | None = typer.Option(None, "--features", help="Use this feature store (`bmbench embed --out`) "
                                         "instead of the encoder's store in the feature cache."),
    resume: bool = typer.Option(False, "--resume", help="Keep finished folds of every protocol, run the rest."),
    json_out: Path | None = json_option("Also write the summary of every variant (JSON) to"),
) -> None:
    """Fit the frozen-feature protocols on the encoder's features and score them with the official scorer.

    Embeds the split's images once (or reuses the matching feature store), then for every variant
    (linear, knn-1, knn-20, fewshot-<n>) and fold: fit on train + val, predict test, write predictions.csv;
    the official scorer writes score.json; run.json records the protocol, its constants and the store's
    manifest. Few-shot runs E seeded episodes (episodes.json: mean ± std over episodes). docs/protocols.md
    describes each protocol and its source.
    """
    from bmbench.features.probe import ProbeOptions
    from bmbench.paths import runs_dir
    from bmbench.safe_io import check_output_path
    from bmbench.submissions.registry import resolve_submission

    loaded = resolve_submission(submission)
    target = out or runs_dir()
    check_output_path(target, what="--out", folder=True)  # refused before any work starts
    check_json_out(json_out)
    options = ProbeOptions(data=data, split=split, folds=parse_folds(folds), out=target, device=device,
                           batch=batch, features=features, resume=resume)
    probe_and_report(loaded, options, json_out)
