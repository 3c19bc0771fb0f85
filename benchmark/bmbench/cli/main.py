"""``bmbench``: the entry point and the command tree."""

from __future__ import annotations

from pathlib import Path

import typer

from bmbench import __version__, paths
from bmbench.cli import bench_cmd, grid_cmd
from bmbench.cli import data_cmd, leaderboard_cmd, run_cmd, score_cmd, splits_cmd, submissions_cmd
from bmbench.cli import pretrain_cmd
from bmbench.cli import explain_cmd, lrfind_cmd
from bmbench.cli import classes_cmd, embed_cmd, probe_cmd

app = typer.Typer(
    name="bmbench",
    help="A reproducible benchmark for bone-marrow cell classification (21 classes, Matek et al. 2021 data).\n\n"
    "Exit status: 0 success; 1 the run itself failed; 2 invalid input or usage (the message names the file, "
    "line or key and the fix); 130 interrupted. --debug (or BMBENCH_DEBUG=1) shows tracebacks.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(data_cmd.app, name="data")
app.add_typer(splits_cmd.app, name="splits")
app.add_typer(submissions_cmd.app, name="submissions")
app.add_typer(leaderboard_cmd.app, name="leaderboard")
app.command("run")(run_cmd.run)
app.command("merge")(run_cmd.merge)
app.command("score")(score_cmd.score)
app.command("bench")(bench_cmd.bench)
app.command("grid")(grid_cmd.grid)
app.command("pretrain")(pretrain_cmd.pretrain)
app.command("lr-find")(lrfind_cmd.lr_find)
app.command("explain")(explain_cmd.explain)
app.command("embed")(embed_cmd.embed)
app.command("classes")(classes_cmd.classes)
app.command("probe")(probe_cmd.probe)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bmbench {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    root: Path | None = typer.Option(None, "--root", exists=True, file_okay=False, help="Working root for "
                                     "submissions/, runs/ and leaderboard/ (default: $BMBENCH_ROOT, else the current folder)."),
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error (or set BMBENCH_DEBUG=1)."),
) -> None:
    """bmbench: fixed published splits, one official scorer, reference submissions and a leaderboard."""
    from bmbench.cli.common import set_debug

    set_debug(debug)
    paths.set_root(root)


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # `python -m bmbench.cli.main ...`, e.g. under torchrun
    run()
