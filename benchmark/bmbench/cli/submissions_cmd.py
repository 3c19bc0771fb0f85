"""``bmbench submissions``: list and describe submissions without downloading any weights."""

from __future__ import annotations

from pathlib import Path

import typer

from bmbench.cli.common import check_json_out, console, emit_json, json_option, user_errors

app = typer.Typer(help="List and describe the submissions (reference recipes, baselines, your own).",
                  no_args_is_help=True)


@app.command("list")
@user_errors
def list_() -> None:
    """Every submission under submissions/: its protocol, backbone (or frozen encoder) and initialisation."""
    from rich.table import Table

    from bmbench.protocols import ProbeConfig, protocol_text
    from bmbench.submissions.registry import default_submissions_dir, list_submissions

    table = Table(title=f"Submissions in {default_submissions_dir()}", title_justify="left")
    table.add_column("name", no_wrap=True)  # names stay whole; the other columns wrap
    for column in ("protocol", "backbone / encoder", "init", "epochs", "lr"):
        table.add_column(column, overflow="fold")
    for loaded in list_submissions():
        sub = loaded.submission
        if sub.kind == "frozen":  # no training: the variants it runs instead of init, epochs and lr
            config = sub.probe or ProbeConfig()
            parts = {"linear": "linear", "knn": "kNN-" + "/".join(map(str, config.knn.k)),
                     "fewshot": "few-shot-" + "/".join(map(str, config.fewshot.shots))}
            shown = ", ".join(parts[p] for p in config.protocols_for(sub.protocol))
            table.add_row(sub.name, shown, str(sub.encoder), "frozen", "-", "-")
        else:
            table.add_row(sub.name, protocol_text(sub.protocol), sub.backbone, sub.init, str(sub.recipe.epochs),
                          str(sub.recipe.lr))
    console.print(table)


@app.command("describe")
@user_errors
def describe(
    name: str = typer.Argument(..., help="Submission name or folder."),
    json_out: Path | None = json_option("Write the resolved configuration (JSON, instead of the listing) to"),
) -> None:
    """The resolved configuration: backbone, init, trainable parameters (21-class head), weights, recipe;
    for a frozen-feature submission the encoder and the probes (protocols, k, shots, ...) instead."""
    from bmbench.submissions.describe import describe_submission
    from bmbench.submissions.registry import resolve_submission

    check_json_out(json_out)
    info = describe_submission(resolve_submission(name))
    if json_out is not None:
        emit_json(json_out, info)
        return
    blocks = [key for key in ("recipe", "probe") if key in info]  # nested settings, shown as JSON last
    for key, value in info.items():
        if key not in blocks:
            console.print(f"[bold]{key}[/]: {value}")
    for key in blocks:
        console.print(f"[bold]{key}[/]:")
        console.print_json(data=info[key])
