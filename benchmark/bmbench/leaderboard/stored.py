"""An entry's stored predictions file (``predictions/<name>.csv.gz``), read through the official validator.

``check`` re-scores it (confusions and probability metrics); the board pairs two entries' files image by
image for the bootstrap test on one-fold splits. Reading is bounded (:data:`MAX_PREDICTIONS_BYTES`) and goes
through :func:`bmbench.scoring.predictions.read_predictions`, so a stored file gets every check a
submitted one does.
"""

from __future__ import annotations

import gzip
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bmbench.errors import BmbenchError

MAX_PREDICTIONS_BYTES = 512 * 1024 * 1024
"""A predictions file larger than this once decompressed is refused (the real data's file is about 40 MB)."""


class StoredPredictionsError(BmbenchError):
    """The stored predictions file cannot be used: missing, not gzip, too large, or invalid."""


@dataclass(frozen=True)
class Stored:
    """A decompressed, validated stored predictions file."""

    sha256: str
    predictions: Any  # bmbench.scoring.predictions.Predictions


def read_gz(path: Path) -> bytes:
    """The decompressed bytes of ``path`` (at most :data:`MAX_PREDICTIONS_BYTES`)."""
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read(MAX_PREDICTIONS_BYTES + 1)
    except (OSError, EOFError) as err:
        raise StoredPredictionsError(f"is not a readable gzip file ({err})", exit_code=2) from None
    if len(data) > MAX_PREDICTIONS_BYTES:
        raise StoredPredictionsError(f"decompresses to more than {MAX_PREDICTIONS_BYTES} bytes", exit_code=2)
    return data


def read_stored(path: Path, relpath: str, split: Any) -> Stored:
    """Decompress and validate a stored predictions file against ``split`` (messages name ``relpath``)."""
    from bmbench.scoring.predictions import read_predictions

    data = read_gz(path)
    digest = hashlib.sha256(data).hexdigest()
    with tempfile.TemporaryDirectory(prefix="bmbench-stored-") as tmp:
        csv_path = Path(tmp) / Path(relpath).name.removesuffix(".gz")
        csv_path.write_bytes(data)
        try:
            preds = read_predictions(csv_path, split)
        except BmbenchError as err:
            raise StoredPredictionsError(err.message.replace(str(csv_path), relpath), exit_code=2) from None
    return Stored(sha256=digest, predictions=preds)
