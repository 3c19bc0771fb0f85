"""The ``submission.toml`` schema (version 1), validated on construction.

A submission is a folder ``submissions/<name>/`` holding ``submission.toml`` and, for architectures not in
a registry, ``model.py`` defining ``build_model(num_classes) -> torch.nn.Module``. Example::

    name = "regnet_imagenet_cd"
    authors = ["bmbench maintainers"]
    description = "RegNet_y_32gf, ImageNet then Comparison Detector pre-training (Glüge et al. 2023)."
    backbone = "torchvision:regnet_y_32gf"   # or "timm:<name>", "model.py", "baseline:<name>"
    init = "imagenet+cd"                     # random | imagenet | pcam | cd | imagenet+pcam | imagenet+cd | none
    licence = "MIT"
    code_url = "https://github.com/..."
    [recipe]                                 # only what differs from the paper's recipe
    epochs = 75

Unknown keys and bad values are refused with a message naming the file and the key.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bmbench.errors import BmbenchError, validation_messages
from bmbench.recipe import Recipe

SCHEMA_VERSION = 1
SUBMISSION_FILE = "submission.toml"
MODEL_FILE = "model.py"
NAME_RE = re.compile(r"^[a-z0-9_]+$")
INITS = ("random", "imagenet", "pcam", "cd", "imagenet+pcam", "imagenet+cd", "none")
BASELINES = ("majority", "features_logreg")
BACKBONE_RE = re.compile(r"^(torchvision|timm):[A-Za-z0-9_.\-]+$|^model\.py$|^baseline:(" + "|".join(BASELINES) + ")$")

Init = Literal["random", "imagenet", "pcam", "cd", "imagenet+pcam", "imagenet+cd", "none"]


class Submission(BaseModel):
    """One submission: who made it, which backbone and initialisation, and what it changes in the recipe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(description="Folder name; lowercase letters, digits and underscores.")
    authors: list[str] = Field(min_length=1)
    description: str = Field(min_length=1)
    backbone: str = Field(description="torchvision:<name>, timm:<name>, model.py, or baseline:<name>.")
    init: Init
    licence: str = Field("MIT", min_length=1, description="Licence of the submission's code.")
    code_url: str | None = Field(None, description="Where the code lives (required for leaderboard entries).")
    pretraining_data: list[str] = Field(default_factory=list, description="External data used, for the board.")
    recipe: Recipe = Field(default_factory=Recipe)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.fullmatch(value):
            raise ValueError("use only lowercase letters, digits and underscores ([a-z0-9_]+)")
        return value

    @field_validator("backbone")
    @classmethod
    def _backbone(cls, value: str) -> str:
        if not BACKBONE_RE.fullmatch(value):
            raise ValueError(
                "expected 'torchvision:<model name>', 'timm:<model name>', 'model.py' or "
                f"'baseline:<{'|'.join(BASELINES)}>'"
            )
        return value

    @model_validator(mode="after")
    def _init_fits_backbone(self) -> Submission:
        baseline = self.backbone.startswith("baseline:")
        if baseline != (self.init == "none"):
            raise ValueError("init 'none' goes with baseline:<name> backbones, and only with them")
        if self.backbone == MODEL_FILE and self.init.startswith("imagenet"):
            raise ValueError("ImageNet initialisation needs a torchvision: or timm: backbone, not model.py")
        return self

    @property
    def kind(self) -> str:
        """``torchvision``, ``timm``, ``model.py`` or ``baseline``."""
        return self.backbone.split(":", 1)[0]

    @property
    def arch(self) -> str:
        """The architecture name after the prefix (``regnet_y_32gf``), or ``model.py``."""
        return self.backbone.split(":", 1)[-1]


class LoadedSubmission(BaseModel):
    """A validated submission with the folder it came from and a digest of its files."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    submission: Submission
    folder: Path
    digest: str


def _format_errors(path: Path, err: ValidationError) -> str:
    lines = [f"  {key}: {message}" for key, message in validation_messages(err, "the schema in the README")]
    return f"{path}: invalid submission:\n" + "\n".join(lines)


def submission_digest(folder: Path) -> str:
    """SHA-256 over ``submission.toml`` and ``model.py`` (if present): what the run actually used."""
    h = hashlib.sha256()
    for name in (SUBMISSION_FILE, MODEL_FILE):
        path = folder / name
        if path.is_file():
            h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def load_submission(folder: Path) -> LoadedSubmission:
    """Read and validate ``folder/submission.toml``; the folder name must equal the submission's name."""
    folder = Path(folder)
    path = folder / SUBMISSION_FILE
    if not path.is_file():
        raise BmbenchError(f"{folder} is not a submission: {SUBMISSION_FILE} is missing")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise BmbenchError(f"{path}: not valid TOML: {err}") from None
    try:
        submission = Submission.model_validate(raw)
    except ValidationError as err:
        raise BmbenchError(_format_errors(path, err)) from None
    if submission.name != folder.name:
        raise BmbenchError(f"{path}: name {submission.name!r} must equal the folder name {folder.name!r}")
    if submission.backbone == MODEL_FILE and not (folder / MODEL_FILE).is_file():
        raise BmbenchError(f"{path}: backbone is 'model.py' but {folder / MODEL_FILE} is missing")
    return LoadedSubmission(submission=submission, folder=folder, digest=submission_digest(folder))
