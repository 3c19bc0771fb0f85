"""``fold<k>/lr_find.json``: a cached learning-rate range test, and what it was computed for.

``bmbench lr-find`` and ``bmbench run`` (``lr = "find"``) share it, and ``bmbench pretrain`` keeps one in its
work folder. A file records its identity (submission and recipe digests, split, fold, seed); reading it for
another identity is refused rather than silently reused. Files without ``computed_for`` (written by hand,
or by an older bmbench) are taken as given; identity keys a file does not record are not compared.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bmbench.errors import BmbenchError
from bmbench.records._io import read_model, write_model

LR_FIND_FILE = "lr_find.json"
LR_FIND_SCHEMA_VERSION = 1
FIX = "delete the file to recompute the range test"


class LrFindIdentity(BaseModel):
    """What a range test was computed for; every key is optional in a file (older files recorded fewer)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    submission: str | None = None
    submission_digest: str | None = None
    recipe_digest: str | None = None
    split: str | None = None
    split_sha256: str | None = None
    fold: int | None = None
    seed: int | None = None

    def differences(self, current: LrFindIdentity) -> dict[str, tuple[object, object]]:
        """Key -> (recorded, now) for each key this identity records and ``current`` differs in."""
        mine, now = self.model_dump(), current.model_dump()
        return {k: (v, now[k]) for k, v in mine.items() if v is not None and now[k] is not None and v != now[k]}


class LrFindRecord(BaseModel):
    """The range test's curve, the suggested learning rate, the rule that picked it, and its identity."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = LR_FIND_SCHEMA_VERSION
    suggested_lr: float = Field(description="The learning rate the run trains with.")
    rule: str = Field(description="Which rule picked the LR (steepest, min_div_10, or by hand).")
    stopped_early: bool = False
    lrs: list[float] = Field(default_factory=list)
    losses: list[float] = Field(default_factory=list)
    computed_for: LrFindIdentity | None = None
    device: str | None = None
    created_at: str | None = None

    @field_validator("suggested_lr", mode="before")
    @classmethod
    def _positive(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"suggested_lr must be a positive number, not {value!r}")
        return value


def read_lr_find(path: Path, identity: LrFindIdentity | None = None) -> LrFindRecord:
    """A cached range test; refuse a malformed file or one computed for another submission/recipe/fold."""
    record = read_model(LrFindRecord, path, what="cached learning-rate range test", fix=FIX)
    if identity is not None and record.computed_for is not None:
        differs = record.computed_for.differences(identity)
        if differs:
            detail = ", ".join(f"{k} {old!r} (now {new!r})" for k, (old, new) in differs.items())
            raise BmbenchError(
                f"{path} was computed for a different setting: {detail}. Delete it (or run `bmbench lr-find "
                f"{identity.submission} --fold {identity.fold} --force`) to recompute the range test for the "
                "current submission.", exit_code=2)
    return record


def write_lr_find(path: Path, record: LrFindRecord) -> None:
    """Write a range test atomically."""
    write_model(path, record)
