"""``bmbench leaderboard add|build|check|show|import-published``: thin commands over ``bmbench.leaderboard``."""

from __future__ import annotations

from pathlib import Path

import typer

from bmbench.cli.common import console, err_console, user_errors

app = typer.Typer(
    help="The leaderboard: add a finished run as an entry, build README.md + index.html, check a pull request.",
    no_args_is_help=True,
)

BOARD_HELP = "main (leaderboard/: real data only) or demo (runs/demo/board/: SYNTHETIC and smoke runs)."
DIR_HELP = "Board folder (default: leaderboard/ for main, runs/demo/board/ for demo)."


def _board(board: str, folder: Path | None):  # -> Board
    from bmbench.leaderboard.board import get_board

    return get_board(board, folder)


def _print_sections(sections) -> None:  # noqa: ANN001 - list[Section]; imported lazily
    """The ranked tables in the terminal (the README and index.html have every column)."""
    from rich import box
    from rich.table import Table

    from bmbench.leaderboard.board import row_cells

    short_status = {"reproduced here": "reproduced", "reported in a paper": "paper"}
    keys = ["rank", "tier", "name", "protocol", "f1", "f1_ci", "vs_leader", "status"]
    if console.width < 130:
        keys.remove("protocol")
    if console.width < 110:
        keys.remove("f1_ci")  # narrow terminal: keep the name, F1 and the verdict readable
    labels = {"rank": "#", "f1": "F1", "f1_ci": "F1 95 % CI", "vs_leader": "vs leader"}
    for section in sections:
        table = Table(title=section.title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for key in keys:
            table.add_column(labels.get(key, key), justify="right" if key == "rank" else "left",
                             no_wrap=key != "status")
        for row in section.rows:
            cells = row_cells(row)
            texts = {k: cells[k].text for k in keys}
            texts["status"] = short_status.get(row.entry.status, row.entry.status)  # the title says SYNTHETIC
            table.add_row(*(texts[k] for k in keys))
        if not section.rows:
            table.add_row("", "(no results on this split yet)", *[""] * (len(keys) - 2))
        console.print(table)


@app.command("add")
@user_errors
def add(
    run_dirs: list[Path] = typer.Argument(..., help="Finished runs: <out>/<submission>/<dataset>/ with run.json "
                                          "(several: each under its submission's name, all checked first)."),
    board: str = typer.Option("main", "--board", help=BOARD_HELP),
    folder: Path | None = typer.Option(None, "--dir", help=DIR_HELP),
    status: str = typer.Option("submitted", "--status", help="submitted, reproduced (here) or superseded."),
    name: str | None = typer.Option(None, "--name", help="Entry name (default: the submission's name)."),
    code_url: str | None = typer.Option(None, "--code-url", help="Code URL (default: code_url of submission.toml)."),
    params: int | None = typer.Option(None, "--params", help="Trainable parameters (default: counted from the model)."),
    submission: Path | None = typer.Option(None, "--submission", help="Submission folder, if not where run.json says."),
    predictions: bool = typer.Option(False, "--predictions/--no-predictions",
                                     help="Also store the gzipped predictions (re-scored by the check)."),
    replace: bool = typer.Option(False, "--replace", help="Overwrite an existing entry of the same name."),
    weights_url: str | None = typer.Option(None, "--weights-url", help="Download URL of the trained checkpoint; "
                                           "its SHA-256 is computed from the local file."),
    weights_file: Path | None = typer.Option(None, "--weights-file", help="The local file the URL serves "
                                             "(default: the run's only fold*/best.pt)."),
    weights_sha256: str | None = typer.Option(None, "--weights-sha256", help="Expected SHA-256 of that file "
                                              "(refused if the local file differs)."),
    weights_licence: str | None = typer.Option(None, "--weights-licence", help="Licence of the weights."),
) -> None:
    """Make a leaderboard entry from a finished `bmbench run` (re-scored by the official scorer).

    The main board refuses smoke runs (--epochs/--max-steps), SYNTHETIC data, incomplete folds and results
    without a code URL; the demo board takes synthetic and smoke runs and labels them. Run
    `bmbench leaderboard build` afterwards.
    """
    from bmbench.errors import BmbenchError
    from bmbench.leaderboard.entries import add_run, add_runs
    from bmbench.safe_io import check_output_path

    target = _board(board, folder)
    check_output_path(target.root, what="--dir" if folder is not None else "the board folder", folder=True)
    if len(run_dirs) == 1:
        paths = [add_run(run_dirs[0], target, status=status, name=name, code_url=code_url, parameters=params,
                         submission_dir=submission, with_predictions=predictions, replace=replace,
                         weights_url=weights_url, weights_file=weights_file, weights_sha256=weights_sha256,
                         weights_licence=weights_licence)]
    else:
        single = {"--name": name, "--params": params, "--submission": submission, "--weights-url": weights_url,
                  "--weights-file": weights_file, "--weights-sha256": weights_sha256,
                  "--weights-licence": weights_licence}
        given = [flag for flag, value in single.items() if value is not None]
        if given:
            raise BmbenchError(f"{', '.join(given)} describe(s) one run, but {len(run_dirs)} runs were given; add "
                               "that run on its own")
        paths = add_runs(run_dirs, target, status=status, code_url=code_url, with_predictions=predictions,
                         replace=replace)
    for path in paths:
        console.print(f"wrote {path}" + (" (and its predictions)" if predictions else ""), highlight=False)


@app.command("build")
@user_errors
def build(
    board: str = typer.Option("main", "--board", help=BOARD_HELP),
    folder: Path | None = typer.Option(None, "--dir", help=DIR_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the ranked tables."),
) -> None:
    """Check the entries, then write README.md, index.html, results.csv, results.json and entry.schema.json.

    Deterministic; atomic; nothing is written when an entry has a problem.
    """
    from bmbench.leaderboard.build import build_board

    from bmbench.safe_io import check_output_path

    target = _board(board, folder)
    check_output_path(target.root, what="--dir" if folder is not None else "the board folder", folder=True)
    result = build_board(target)
    if not quiet:
        _print_sections(result.sections)
    console.print(f"wrote {result.readme.parent}/ (README.md, index.html, results.csv, results.json, "
                  f"entry.schema.json) from {result.entries} entries", highlight=False)


@app.command("show")
@user_errors
def show(
    board: str = typer.Option("main", "--board", help=BOARD_HELP),
    folder: Path | None = typer.Option(None, "--dir", help=DIR_HELP),
    fmt: str = typer.Option("table", "--format", help="table (the ranked tables), csv (results.csv) or json "
                            "(results.json), computed from the entries."),
) -> None:
    """Print a board (from its entries; writes nothing): tables, or the CSV / JSON export."""
    from bmbench.errors import BmbenchError
    from bmbench.leaderboard.build import sections_for
    from bmbench.leaderboard.entries import load_entries

    if fmt not in ("table", "csv", "json"):
        raise BmbenchError(f"--format {fmt!r}: use table, csv or json", exit_code=2)
    target = _board(board, folder)
    loaded, problems = load_entries(target)
    for problem in problems:  # shown without them, never silently: stderr, so a csv/json export stays clean
        err_console.print(f"left out: {problem}", highlight=False, markup=False, soft_wrap=True)
    sections = sections_for(target, [entry for _, entry in loaded])
    if fmt == "table":
        _print_sections(sections)
        return
    from bmbench.leaderboard.export import results_csv, results_json

    text = results_csv(sections) if fmt == "csv" else results_json(target, sections)
    typer.echo(text, nl=False)


@app.command("check")
@user_errors
def check(
    board: str = typer.Option("main", "--board", help=BOARD_HELP),
    folder: Path | None = typer.Option(None, "--dir", help=DIR_HELP),
) -> None:
    """Validate every entry and the generated pages; what CI runs on a pull request. Exit 2 on any problem.

    Checks: schema; safe, unique names; the board's policy; the published split and its SHA-256; each
    fold's matrix holds exactly the fold's test images; metrics recomputed from the confusion matrices (and
    predictions files re-scored, probability metrics included) equal what the entry states; the paper's rows
    equal the package's tables; every submissions/*/submission.toml validates; README.md, index.html,
    results.csv, results.json and entry.schema.json equal a fresh build. Never imports or runs code from
    submissions/.
    """
    from bmbench import paths
    from bmbench.leaderboard.check import check_board

    target = _board(board, folder)
    problems = check_board(target, submissions_dir=paths.submissions_dir())
    if problems:
        for problem in problems:
            err_console.print(str(problem), highlight=False, markup=False, soft_wrap=True)
        err_console.print(f"[bold red]{len(problems)} problem(s)[/] in {target.root}", highlight=False)
        raise typer.Exit(2)  # invalid input
    console.print(f"{target.root}: all entries and the generated pages are sound", highlight=False)


@app.command("import-published")
@user_errors
def import_published(
    folder: Path | None = typer.Option(None, "--dir", help="Main board folder (default: leaderboard/)."),
) -> None:
    """Write the paper's rows (Table 4, with Table 5's per-class figures) as entries of the main board."""
    from bmbench.leaderboard.build import import_published as run_import

    paths = run_import(_board("main", folder))
    console.print(f"wrote {len(paths)} entries reported in a paper to {paths[0].parent if paths else folder}",
                  highlight=False)
