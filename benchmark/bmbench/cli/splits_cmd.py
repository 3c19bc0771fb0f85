"""``bmbench splits``: regenerate and verify the published split files."""

from __future__ import annotations

from pathlib import Path

import typer

from bmbench.cli.common import console, user_errors

app = typer.Typer(help="Build and verify the published split files (splits/*.csv, SHA256SUMS, the split card).",
                  no_args_is_help=True)

DIR_OPTION = typer.Option(None, "--dir", help="The splits folder (default: the published files shipped with bmbench, "
                               "which the repository's splits/ links to).")


@app.command("build")
@user_errors
def build(directory: Path | None = DIR_OPTION) -> None:
    """Derive every published split from its data set's ids and write the files, hashes and card."""
    from bmbench.splits.store import build_splits, default_splits_dir

    for path in build_splits(directory or default_splits_dir()):
        console.print(f"wrote {path}")


@app.command("verify")
@user_errors
def verify(directory: Path | None = DIR_OPTION) -> None:
    """Re-derive every published split and check file bytes, SHA256SUMS and the split card; exit 2 on a mismatch."""
    from bmbench.splits.store import default_splits_dir, verify_splits

    folder = directory or default_splits_dir()
    checks = verify_splits(folder)
    for check in checks:
        if check.ok:
            console.print(f"[green]✓[/] {check.name}" + (f"  sha256 {check.sha256}" if check.sha256 else ""))
        else:
            for problem in check.problems:
                console.print(f"[red]✗[/] {check.name}: {problem}")
    if not all(c.ok for c in checks):
        console.print(f"[red]Split files in {folder} do not match the algorithm.[/] Restore them with "
                      "`git checkout splits/`, or regenerate with `bmbench splits build` if the algorithm changed.")
        raise typer.Exit(2)  # invalid input
    console.print(f"[green]All published splits in {folder} verify.[/]")
