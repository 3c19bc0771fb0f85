"""``bmbench leaderboard build`` and ``import-published``: entries in, README.md and index.html out.

The build is deterministic (same entries, same bytes: no dates, sorted everything, a fixed bootstrap
seed) and safe: it first runs the entry checks (everything but the comparison with the generated files,
and without re-scoring predictions files) and refuses to write anything if one fails; both pages are
rendered in memory before either is written, each with an atomic replace, so a failed or interrupted
build leaves the previous board in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bmbench import atomic
from bmbench.leaderboard.board import Board, Section, build_sections
from bmbench.leaderboard.check import BoardProblems, check_board
from bmbench.leaderboard.entries import load_entries, write_entry
from bmbench.leaderboard.published import published_entries
from bmbench.leaderboard.render_html import render_html
from bmbench.leaderboard.render_md import render_markdown
from bmbench.leaderboard.schema import Entry


def home_sha256(board: Board, splits_dir: Path | None = None) -> str:
    """The published SHA-256 of the board's home split (from splits/SHA256SUMS)."""
    from bmbench.splits.store import default_splits_dir, get_split_spec, read_sums

    spec = get_split_spec(board.home_split)
    return read_sums(splits_dir or default_splits_dir())[spec.filename]


def sections_for(board: Board, entries: Sequence[Entry], splits_dir: Path | None = None) -> list[Section]:
    """The ranked sections of a board."""
    return build_sections(board, entries, home_sha256(board, splits_dir))


def render_board(board: Board, entries: Sequence[Entry], splits_dir: Path | None = None) -> tuple[str, str]:
    """README.md and index.html texts for these entries."""
    sections = sections_for(board, entries, splits_dir)
    return render_markdown(board, sections, len(entries)), render_html(board, sections, len(entries))


@dataclass(frozen=True)
class BuildResult:
    """What a build wrote."""

    readme: Path
    html: Path
    sections: list[Section]
    entries: int


def build_board(board: Board, splits_dir: Path | None = None) -> BuildResult:
    """Check the entries, render both pages, write them atomically; raise :class:`BoardProblems` on a bad entry."""
    problems = check_board(board, rescore=False, generated=False, splits_dir=splits_dir)
    if problems:
        raise BoardProblems(problems, f"not building {board.root}; the previous board is left as it was")
    loaded, _ = load_entries(board)
    entries = [entry for _, entry in loaded]
    sections = sections_for(board, entries, splits_dir)
    markdown = render_markdown(board, sections, len(entries))
    page = render_html(board, sections, len(entries))
    # Both files are complete temporary files before either replaces its target.
    with atomic.atomic_open(board.html, "w") as html_file, atomic.atomic_open(board.readme, "w") as md_file:
        html_file.write(page)
        md_file.write(markdown)
    return BuildResult(board.readme, board.html, sections, len(entries))


def import_published(board: Board) -> list[Path]:
    """Write the paper's rows as entries (status ``reported in a paper``) from the package's tables."""
    return [write_entry(board, entry) for entry in published_entries()]
