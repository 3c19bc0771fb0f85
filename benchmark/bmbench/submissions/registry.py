"""Finding submissions: by folder path or by name under ``submissions/``."""

from __future__ import annotations

from pathlib import Path

from bmbench import paths
from bmbench.errors import BmbenchError
from bmbench.submissions.schema import NAME_RE, SUBMISSION_FILE, LoadedSubmission, load_submission


def default_submissions_dir() -> Path:
    """``$BMBENCH_SUBMISSIONS`` if set, else ``<root>/submissions`` (:func:`bmbench.paths.submissions_dir`)."""
    return paths.submissions_dir()


def resolve_submission(ref: str, root: Path | None = None) -> LoadedSubmission:
    """A submission from a folder path (``submissions/regnet_imagenet_cd``) or a bare name."""
    path = Path(ref)
    if (path / SUBMISSION_FILE).is_file():
        return load_submission(path)
    if not NAME_RE.fullmatch(ref):
        raise BmbenchError(f"{ref!r} is neither a submission folder nor a valid name ([a-z0-9_]+)")
    folder = (root or default_submissions_dir()) / ref
    if not (folder / SUBMISSION_FILE).is_file():
        raise BmbenchError(f"no submission named {ref!r} in {folder.parent}; `bmbench submissions list` shows them")
    return load_submission(folder)


def list_submissions(root: Path | None = None) -> list[LoadedSubmission]:
    """Every valid submission under ``root``, by name (invalid ones raise, naming the file)."""
    folder = root or default_submissions_dir()
    return [load_submission(p.parent) for p in sorted(folder.glob(f"*/{SUBMISSION_FILE}"))]
