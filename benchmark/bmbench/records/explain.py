"""``<run>/explain/<CLASS>/explain.json``: what a Grad-CAM gallery shows, of which run, and why those images.

:func:`bmbench.explain.gallery.explain_run` writes it beside ``gallery.png`` and ``gallery.html``; the
gallery's title and page are rendered from the same record, so the files never disagree. The run's
submission, split, data and smoke facts are the models of ``run.json`` (:mod:`bmbench.records.run`), so a
gallery names its run exactly as the run does. Probabilities are ``null`` when the run's predictions
carry none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bmbench.records._io import BMBENCH_ONLY, read_model, write_model
from bmbench.records.run import DataRef, Smoke, SplitRef, SubmissionRef

EXPLAIN_FILE = "explain.json"
EXPLAIN_SCHEMA_VERSION = 1
FIX = "re-create the gallery with `bmbench explain RUN_DIR --class CODE`"


class ExplainedImage(BaseModel):
    """One shown test image: which fold tested it, the true and predicted class, and the maps computed."""

    model_config = BMBENCH_ONLY

    image_id: str
    fold: int = Field(ge=0)
    true: str
    pred: str
    p_true: float | None = Field(None, ge=0, le=1, description="The run's probability for the true class.")
    p_pred: float | None = Field(None, ge=0, le=1, description="The run's probability for the predicted class.")
    correct: bool
    maps_for: list[str] = Field(description="The classes a Grad-CAM map was computed for.")


class Available(BaseModel):
    """How many test images of the class the run classified correctly and wrongly (those to choose from)."""

    model_config = BMBENCH_ONLY

    correct: int = Field(ge=0)
    misclassified: int = Field(ge=0)


class ExplainRecord(BaseModel):
    """The gallery's record (``explain.json``)."""

    model_config = ConfigDict(**BMBENCH_ONLY, populate_by_name=True, serialize_by_alias=True)

    schema_version: Literal[1] = EXPLAIN_SCHEMA_VERSION
    run_dir: str
    submission: SubmissionRef
    split: SplitRef
    data: DataRef
    smoke: Smoke | None = None
    class_code: str = Field(alias="class", description="The class code the gallery explains.")
    class_name: str
    folds: list[int] | None = Field(None, description="The folds shown (--folds), or null: every fold.")
    n_requested: int = Field(ge=1)
    available: Available
    selection: str = Field(description="The rule that picked the images.")
    method: str
    target_layer: str
    target_rule: str = Field(description="Why this layer was chosen.")
    input_size: int = Field(ge=1)
    examples: list[ExplainedImage]


def read_explain(path: Path) -> ExplainRecord:
    """A gallery's record, checked (exit 2 naming the file and the key)."""
    return read_model(ExplainRecord, path, what="Grad-CAM gallery record", fix=FIX)


def write_explain(path: Path, record: ExplainRecord) -> None:
    """Write a gallery's record atomically."""
    write_model(path, record)
