"""``bmbench``: the entry point and the command tree.

The commands are a table (:data:`COMMANDS`): each command's module is imported only when that command runs or
shows its help (:mod:`bmbench.cli.lazy`), so ``bmbench --help`` and ``bmbench score`` start fast. A new command
is one row here; its help column must be the first paragraph of the command's own help (a test checks).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from bmbench import __version__, paths
from bmbench.cli.lazy import LazyCommand, LazyGroup

COMMANDS: tuple[LazyCommand, ...] = tuple(LazyCommand(*row) for row in (
    ("run", "bmbench.cli.run_cmd:run", "Train and evaluate a submission on the published split, then score it "
     "(predictions.csv, score.json, run.json)."),
    ("merge", "bmbench.cli.run_cmd:merge", "Combine folds run on different machines into one run, and score it."),
    ("score", "bmbench.cli.score_cmd:score", "Validate a predictions file against a published split and score it."),
    ("bench", "bmbench.cli.bench_cmd:bench", "Measure data-only throughput, training steps and evaluation of the "
     "plain and the bmbench path."),
    ("grid", "bmbench.cli.grid_cmd:grid", "The reference grid (24 submissions x 5 folds): list it, run it here, or "
     "write a SLURM array script."),
    ("pretrain", "bmbench.cli.pretrain_cmd:pretrain", "Pre-train a backbone on PatchCamelyon or Comparison "
     "Detector; writes the in-domain checkpoint + metadata."),
    ("lr-find", "bmbench.cli.lrfind_cmd:lr_find", "Run the learning-rate range test (Smith 2017) on each fold; save "
     "lr_find.json and the loss-vs-LR plot."),
    ("explain", "bmbench.cli.explain_cmd:explain", "Grad-CAM heat maps of correctly classified and misclassified "
     "test images of a class (PNG + HTML)."),
    ("embed", "bmbench.cli.embed_cmd:embed", "Embed every image of a split with the submission's encoder into a "
     "float16 feature store."),
    ("classes", "bmbench.cli.classes_cmd:classes", "The 21 classes in index order (the order of the p_* columns): "
     "code, name, images per data set."),
    ("probe", "bmbench.cli.probe_cmd:probe", "Fit the frozen-feature protocols on the encoder's features and score "
     "them with the official scorer."),
    ("data", "bmbench.cli.data_cmd:app", "Check the bone-marrow images and generate the embedded SYNTHETIC demo "
     "data."),
    ("splits", "bmbench.cli.splits_cmd:app", "Build and verify the published split files (splits/*.csv, SHA256SUMS, "
     "the split card)."),
    ("submissions", "bmbench.cli.submissions_cmd:app", "List and describe the submissions (reference recipes, "
     "baselines, your own)."),
    ("leaderboard", "bmbench.cli.leaderboard_cmd:app", "The leaderboard: add a finished run as an entry, build "
     "README.md + index.html, check a pull request."),
))
"""Every command, in ``--help`` order: name, ``module:function`` or ``module:app`` (a group), one-line help."""
PLAIN = ("score",)
"""Commands whose plain invocations skip Typer's parser (:mod:`bmbench.cli.plain`: issue 14's start-up goal)."""


class BmbenchGroup(LazyGroup):
    """The root group over :data:`COMMANDS`."""

    table = COMMANDS


app = typer.Typer(
    name="bmbench",
    cls=BmbenchGroup,
    help="A reproducible benchmark for bone-marrow cell classification (21 classes, Matek et al. 2021 data).\n\n"
    "Exit status: 0 success; 1 the run itself failed; 2 invalid input or usage (the message names the file, "
    "line or key and the fix); 130 interrupted. --debug (or BMBENCH_DEBUG=1) shows tracebacks.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
)


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
    """Console-script entry point: a plain ``bmbench score ...`` is called directly, everything else via Typer."""
    from bmbench.cli.plain import plain_call

    by_name = {entry.name: entry for entry in COMMANDS}
    call = plain_call(sys.argv[1:], {name: by_name[name].target_object for name in PLAIN})
    if call is not None:
        main(version=False, root=None, debug=False)  # the root callback with no global option given
        sys.exit(call())
    app()


if __name__ == "__main__":  # `python -m bmbench.cli.main ...`, e.g. under torchrun
    run()
