"""``fold<k>/fold.json``: what one finished fold recorded (written last: its presence means the fold is done).

Training folds record their schedule, learning rate and engineering switches; baseline folds their fitted
parameters. Keys a newer bmbench adds are kept as they are (``extra="allow"``); the keys every reader uses
are typed. Documents from before ``schema_version`` existed read as version 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bmbench.errors import BmbenchError
from bmbench.records._io import read_model, write_model

FOLD_FILE = "fold.json"
FOLD_SCHEMA_VERSION = 1
FIX = "delete the fold folder's fold.json and resume the run (`bmbench run ... --folds K --resume`)"


class FoldRecord(BaseModel):
    """One completed fold."""

    model_config = ConfigDict(extra="allow")

    schema_version: Literal[1] = FOLD_SCHEMA_VERSION
    fold: int = Field(ge=0)
    seconds: float = Field(ge=0, description="Wall time of the fold's training and evaluation.")
    device_hours: float = Field(0.0, ge=0, description="seconds / 3600 x accelerators used (0 on a CPU).")
    best_val_accuracy: float | None = None
    parameters: int | None = Field(None, ge=0, description="Trainable parameters of the fold's model (None: baseline).")
    init: dict[str, Any] = Field(default_factory=dict, description="What initialised the model (provenance).")
    finished_at: str | None = None
    cpu_threads: int | None = Field(None, ge=1, description="torch intra-op threads bmbench set on a CPU (None: "
                                    "left to torch / OMP_NUM_THREADS, or a GPU run).")

    @property
    def smoke_pretraining(self) -> bool:
        """The fold started from a smoke (shortened) in-domain pre-training checkpoint."""
        return bool((self.init.get("pretraining") or {}).get("smoke"))


def fold_path(run_dir: Path, fold: int) -> Path:
    """Where fold ``fold`` of a run folder records its completion."""
    return Path(run_dir) / f"fold{fold}" / FOLD_FILE


def read_fold(path: Path) -> FoldRecord:
    """A fold record, checked (see :mod:`bmbench.records._io`)."""
    return read_model(FoldRecord, path, what="fold record", fix=FIX)


def write_fold(path: Path, record: FoldRecord) -> None:
    """Write a fold record atomically."""
    write_model(path, record)


def completed_folds(run_dir: Path) -> dict[int, FoldRecord]:
    """Fold number -> record of every completed fold (``fold*/fold.json``) in a run folder."""
    done: dict[int, FoldRecord] = {}
    for path in sorted(Path(run_dir).glob(f"fold*/{FOLD_FILE}")):
        record = read_fold(path)
        if path.parent.name != f"fold{record.fold}":
            raise BmbenchError(f"{path}: records fold {record.fold} but lies in {path.parent.name}; {FIX}",
                               exit_code=2)
        done[record.fold] = record
    return done
