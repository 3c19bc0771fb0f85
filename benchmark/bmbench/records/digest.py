"""The submission digest: SHA-256 over ``submission.toml`` and ``model.py``, what a run records it used.

It lives with the records (not with the submission schema) so that a reader of ``run.json`` can check that a
submission folder is the one a run used by hashing its bytes, without parsing or importing anything in it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bmbench import safe_io

SUBMISSION_FILE = "submission.toml"
MODEL_FILE = "model.py"


def submission_digest(folder: Path) -> str:
    """SHA-256 over ``submission.toml`` and ``model.py`` (if present): what the run actually used."""
    h = hashlib.sha256()
    for name in (SUBMISSION_FILE, MODEL_FILE):
        path = Path(folder) / name
        if path.is_file():
            h.update(name.encode() + b"\0" + safe_io.read_bytes(path, what="submission file") + b"\0")
    return h.hexdigest()
