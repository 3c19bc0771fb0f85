"""``run.json``: the provenance of a finished run, and the one reader every consumer uses.

``bmbench run`` (and ``merge``, ``grid --merge``, the probe runs) write it through :func:`write_run`;
``leaderboard add``, ``explain``, ``merge`` and ``grid`` read it through :func:`read_run`, so all of them
apply the same checks. ``read_run(run_dir, submission_folder=...)`` also refuses a submission folder whose
files changed since the run (its digest must equal the recorded one): an entry or a Grad-CAM gallery never
credits code the run did not use.

The record carries what the leaderboard needs without building anything: the model's parameter count
(counted when the run built its model; ``null`` for baselines), the protocol (``finetune`` or a
frozen-feature variant) and, for frozen-feature runs, the encoder. Version 1 documents (before
``protocol``/``parameters``/``encoder``) still read: they were fine-tuning runs with no recorded count.
Unknown top-level keys are kept as written (a newer bmbench may add some); every key below is typed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bmbench.errors import BmbenchError
from bmbench.records._io import read_model, write_model
from bmbench.records.digest import SUBMISSION_FILE, submission_digest
from bmbench.protocols import FINETUNE, ProtocolToken
from bmbench.records.fold import FoldRecord

RUN_FILE = "run.json"
RUN_SCHEMA_VERSION = 2
FIX = ("re-create it with `bmbench run ... --resume` (or `bmbench merge` for per-fold jobs); run.json is "
       "written by bmbench, not by hand")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubmissionRef(_Strict):
    """Which submission the run used: its name, the digest of its files, and where it was."""

    name: str
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    backbone: str | None = None
    init: str | None = None
    folder: str


class DataRef(_Strict):
    """The image data the run read."""

    dataset: str
    synthetic: bool
    root: str


class SplitRef(_Strict):
    """The published split the run was evaluated on."""

    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    dataset: str


class Smoke(_Strict):
    """How a smoke run shortened training (it is never comparable)."""

    epochs: int | None = None
    max_steps: int | None = None


class GitRef(_Strict):
    """The bmbench checkout's commit, and whether tracked files differed from it."""

    commit: str | None = None
    dirty: bool | None = None


class EncoderRef(_Strict):
    """The frozen encoder of a frozen-feature run: what it is and how large, counted when it was built."""

    id: str
    parameters: int = Field(ge=0)
    weights_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    feature_dim: int = Field(ge=1)


class RunRecord(BaseModel):
    """One run folder's ``run.json``."""

    model_config = ConfigDict(extra="allow")

    schema_version: Literal[1, 2] = RUN_SCHEMA_VERSION
    protocol: ProtocolToken = Field(FINETUNE, description="finetune | linear | knn-1 | knn-20 | fewshot-<n>")
    submission: SubmissionRef
    parameters: int | None = Field(None, ge=0, description="Trainable parameters of the model the run built.")
    encoder: EncoderRef | None = None
    recipe: dict[str, Any] | None = None
    recipe_digest: str | None = None
    comparable: bool
    smoke: Smoke | None = None
    smoke_pretraining: bool = False
    seed: int
    data: DataRef
    split: SplitRef
    device: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str | None] = Field(default_factory=dict)
    git: GitRef = Field(default_factory=GitRef)
    wall_seconds_this_invocation: float | None = None
    folds: list[FoldRecord] = Field(default_factory=list)
    device_hours: float = Field(0.0, ge=0)
    created_at: str | None = None
    merged_from: list[str] | None = None
    devices: list[dict[str, Any]] | None = None

    @property
    def wall_hours(self) -> float:
        """Sum of the folds' wall times, in hours."""
        return sum(f.seconds for f in self.folds) / 3600


def run_path(run_dir: Path) -> Path:
    """The ``run.json`` of a run folder."""
    return Path(run_dir) / RUN_FILE


def check_submission(record: RunRecord, folder: Path, *, where: Path | None = None) -> None:
    """Refuse ``folder`` unless its files hash to the digest the run recorded."""
    folder = Path(folder)
    label = where or folder
    if not (folder / SUBMISSION_FILE).is_file():
        raise BmbenchError(f"{folder} is not a submission folder ({SUBMISSION_FILE} is missing); point "
                           "--submission at the folder the run used", exit_code=2)
    digest = submission_digest(folder)
    if digest != record.submission.digest:
        raise BmbenchError(
            f"{label}: the submission at {folder} has digest {digest[:12]}…, but the run was made with "
            f"{record.submission.digest[:12]}… ({SUBMISSION_FILE} or model.py changed since the run). Point "
            "--submission at the exact submission folder the run used, or re-run the submission.", exit_code=2)


def read_run(run_dir: Path, *, submission_folder: Path | None = None) -> RunRecord:
    """The checked ``run.json`` of ``run_dir``; with ``submission_folder``, also its digest check.

    Nothing in the submission folder is imported or parsed: its bytes are hashed.
    """
    run_dir = Path(run_dir)
    path = run_path(run_dir)
    if not path.is_file():
        raise BmbenchError(f"{run_dir} is not a finished run: {RUN_FILE} is missing. Finish it with `bmbench run "
                           "... --resume` (or combine per-fold jobs with `bmbench merge`); a run folder is "
                           "<out>/<submission>/<dataset>/.", exit_code=2)
    record = read_model(RunRecord, path, what="run record", fix=FIX)
    if submission_folder is not None:
        check_submission(record, submission_folder, where=path)
    return record


def write_run(run_dir: Path, record: RunRecord) -> Path:
    """Write ``run_dir/run.json`` atomically; returns its path."""
    path = run_path(run_dir)
    write_model(path, record)
    return path
