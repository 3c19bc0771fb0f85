"""``bmbench leaderboard build`` and ``import-published``: entries in, the generated files out.

Generated: ``README.md``, ``index.html``, ``results.csv``, ``results.json`` and ``entry.schema.json``
(:data:`GENERATED`). The build is deterministic (same entries, same bytes: no dates, sorted everything, a
fixed bootstrap seed) and safe: it first runs the entry checks (everything but the comparison with the
generated files, and without re-scoring predictions files) and refuses to write anything if one fails;
every file is rendered in memory before any is written, each with an atomic replace, so a failed or
interrupted build leaves the previous board in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bmbench import atomic
from bmbench.leaderboard.board import Board, Section, build_sections
from bmbench.leaderboard.check import BoardProblems, check_board
from bmbench.leaderboard.entries import load_entries, write_entry
from bmbench.leaderboard.published import all_published_entries
from bmbench.leaderboard.render_html import render_html
from bmbench.leaderboard.render_md import render_markdown
from bmbench.leaderboard.schema import Entry, entry_json_schema

ENTRY_SCHEMA_FILE = "entry.schema.json"
GENERATED: tuple[str, ...] = ("README.md", "index.html", "results.csv", "results.json", ENTRY_SCHEMA_FILE)
"""Every file ``build`` writes into the board folder (and ``check`` compares with a fresh build)."""


def home_sha256(board: Board, splits_dir: Path | None = None) -> str:
    """The published SHA-256 of the board's home split (from splits/SHA256SUMS)."""
    from bmbench.splits.store import default_splits_dir, get_split_spec, read_sums

    spec = get_split_spec(board.home_split)
    return read_sums(splits_dir or default_splits_dir())[spec.filename]


def sections_for(board: Board, entries: Sequence[Entry], splits_dir: Path | None = None) -> list[Section]:
    """The ranked sections of a board."""
    return build_sections(board, entries, home_sha256(board, splits_dir), splits_dir)


def render_sections(board: Board, sections: Sequence[Section], entry_count: int) -> dict[str, str]:
    """Every generated file's text, by file name (:data:`GENERATED`)."""
    from bmbench.leaderboard.export import results_csv, results_json

    return {
        "README.md": render_markdown(board, sections, entry_count),
        "index.html": render_html(board, sections, entry_count),
        "results.csv": results_csv(sections),
        "results.json": results_json(board, sections),
        ENTRY_SCHEMA_FILE: entry_json_schema(),
    }


def render_files(board: Board, entries: Sequence[Entry], splits_dir: Path | None = None) -> dict[str, str]:
    """Every generated file's text for these entries."""
    return render_sections(board, sections_for(board, entries, splits_dir), len(entries))


def render_board(board: Board, entries: Sequence[Entry], splits_dir: Path | None = None) -> tuple[str, str]:
    """README.md and index.html texts for these entries."""
    files = render_files(board, entries, splits_dir)
    return files["README.md"], files["index.html"]


@dataclass(frozen=True)
class BuildResult:
    """What a build wrote."""

    readme: Path
    html: Path
    sections: list[Section]
    entries: int


def build_board(board: Board, splits_dir: Path | None = None) -> BuildResult:
    """Check the entries, render both pages, write them atomically; raise :class:`BoardProblems` on a bad entry."""
    atomic.remove_stale(board.root, recursive=True)  # temporaries of a build or add killed mid-write
    problems = check_board(board, rescore=False, generated=False, splits_dir=splits_dir)
    if problems:
        raise BoardProblems(problems, f"not building {board.root}; the previous board is left as it was")
    loaded, _ = load_entries(board)
    entries = [entry for _, entry in loaded]
    sections = sections_for(board, entries, splits_dir)
    files = render_sections(board, sections, len(entries))
    # Every file is a complete temporary file before any replaces its target.
    with ExitStack() as stack:
        for name, text in files.items():
            stack.enter_context(atomic.atomic_open(board.root / name, "w")).write(text)
    return BuildResult(board.readme, board.html, sections, len(entries))


def import_published(board: Board) -> list[Path]:
    """Write the paper's rows as entries (status ``reported in a paper``) from the package's tables."""
    return [write_entry(board, entry) for entry in all_published_entries()]
