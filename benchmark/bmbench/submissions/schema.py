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

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bmbench import safe_io
from bmbench.errors import BmbenchError, validation_messages
from bmbench.protocols import ProbeConfig
from bmbench.recipe import Recipe
from bmbench.records.digest import MODEL_FILE, SUBMISSION_FILE, submission_digest  # one digest rule, shared

SCHEMA_VERSION = 1
NAME_RE = re.compile(r"^[a-z0-9_]+$")
INITS = ("random", "imagenet", "pcam", "cd", "imagenet+pcam", "imagenet+cd", "none")
BASELINES = ("majority", "features_logreg")
BACKBONE_RE = re.compile(r"^(torchvision|timm):[A-Za-z0-9_.\-]+$|^model\.py$|^baseline:(" + "|".join(BASELINES) + ")$")
FROZEN_PROTOCOLS = ("linear", "knn", "fewshot", "probe")  # "probe": every protocol in [probe] protocols
ENCODER_RE = re.compile(r"^timm:(hf-hub:[A-Za-z0-9_.\-]+/)?[A-Za-z0-9_.\-]+$|^torchvision:[A-Za-z0-9_.\-]+$|^model\.py$|^run:.+$")

Init = Literal["random", "imagenet", "pcam", "cd", "imagenet+pcam", "imagenet+cd", "none"]


class PreprocessOverride(BaseModel):
    """``[preprocess]`` of a frozen-feature submission: replaces fields of the encoder's own preprocessing.

    ``size`` is the centre crop fed to the encoder, ``resize`` the shorter side before the crop (default:
    ``size``, i.e. no crop), ``mean``/``std`` per RGB channel on the 0..1 scale.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int | None = Field(None, ge=8, le=4096)
    resize: int | None = Field(None, ge=8, le=4096)
    interpolation: Literal["nearest", "bilinear", "bicubic"] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    @field_validator("std")
    @classmethod
    def _positive(cls, value: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        if value is not None and min(value) <= 0:
            raise ValueError("every std must be > 0")
        return value


class Submission(BaseModel):
    """One submission: who made it, which backbone and initialisation, and what it changes in the recipe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(description="Folder name; lowercase letters, digits and underscores.")
    authors: list[str] = Field(min_length=1)
    description: str = Field(min_length=1)
    protocol: Literal["finetune", "linear", "knn", "fewshot", "probe"] = Field(
        "finetune", description="finetune (train backbone + head) or a frozen-feature protocol on `encoder`.")
    backbone: str | None = Field(None, description="torchvision:<name>, timm:<name>, model.py, or baseline:<name>.")
    init: Init | None = None
    encoder: str | None = Field(None, description="Frozen features: timm:<name>, torchvision:<name>, model.py, run:<path>.")
    preprocess: PreprocessOverride | None = None
    probe: ProbeConfig | None = Field(None, description="Frozen-feature probe settings (docs/protocols.md).")
    licence: str = Field("MIT", min_length=1, description="Licence of the submission's code.")
    code_url: str | None = Field(None, description="Where the code lives (required for leaderboard entries).")
    pretraining_data: list[str] = Field(default_factory=list, description="External data used, for the board.")
    recipe: Recipe = Field(default_factory=Recipe)

    @model_validator(mode="before")
    @classmethod
    def _license_alias(cls, data: Any) -> Any:
        """``license`` (US spelling, as in pyproject.toml) is accepted for ``licence``; both at once are refused."""
        if isinstance(data, dict) and "license" in data:
            if "licence" in data:
                raise ValueError("licence and license are the same key (two spellings); give only one")
            data = {("licence" if k == "license" else k): v for k, v in data.items()}
        return data

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

    @field_validator("encoder")
    @classmethod
    def _encoder(cls, value: str | None) -> str | None:
        if value is not None and not ENCODER_RE.fullmatch(value):
            raise ValueError("expected 'timm:<model name>' (also 'timm:hf-hub:<org>/<name>'), "
                             "'torchvision:<model name>', 'model.py' or 'run:<run folder>'")
        return value

    @model_validator(mode="after")
    def _protocol_fits_fields(self) -> Submission:
        if self.protocol == "finetune":
            if self.encoder is not None or self.preprocess is not None or self.probe is not None:
                raise ValueError("encoder, [preprocess] and [probe] belong to frozen-feature submissions; set "
                                 f"protocol to one of {', '.join(FROZEN_PROTOCOLS)} or remove them")
            if self.backbone is None or self.init is None:
                raise ValueError("a fine-tuning submission needs backbone and init")
            return self
        if self.encoder is None:
            raise ValueError(f"protocol {self.protocol!r} needs an encoder (timm:<name>, torchvision:<name>, "
                             "model.py or run:<run folder>)")
        if self.backbone is not None or self.init is not None or "recipe" in self.model_fields_set:
            raise ValueError("a frozen-feature submission names its network in encoder only: remove backbone, "
                             "init and [recipe] (they apply to fine-tuning)")
        return self

    @model_validator(mode="after")
    def _init_fits_backbone(self) -> Submission:
        if self.backbone is None or self.init is None:
            return self
        baseline = self.backbone.startswith("baseline:")
        if baseline != (self.init == "none"):
            raise ValueError("init 'none' goes with baseline:<name> backbones, and only with them")
        if self.backbone == MODEL_FILE and self.init.startswith("imagenet"):
            raise ValueError("ImageNet initialisation needs a torchvision: or timm: backbone, not model.py")
        return self

    @property
    def kind(self) -> str:
        """``torchvision``, ``timm``, ``model.py``, ``baseline``, or ``frozen`` (a frozen-feature submission)."""
        return "frozen" if self.backbone is None else self.backbone.split(":", 1)[0]

    @property
    def arch(self) -> str:
        """The architecture name after the prefix (``regnet_y_32gf``), ``model.py``, or the encoder spec."""
        return str(self.encoder) if self.backbone is None else self.backbone.split(":", 1)[-1]


class LoadedSubmission(BaseModel):
    """A validated submission with the folder it came from and a digest of its files."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    submission: Submission
    folder: Path
    digest: str


def _format_errors(path: Path, err: ValidationError) -> str:
    lines = [f"  {key}: {message}" for key, message in validation_messages(err, "the schema in the README")]
    return f"{path}: invalid submission:\n" + "\n".join(lines)


def load_submission(folder: Path) -> LoadedSubmission:
    """Read and validate ``folder/submission.toml``; the folder name must equal the submission's name."""
    folder = Path(folder)
    path = folder / SUBMISSION_FILE
    if not path.exists() and not path.is_symlink():
        raise BmbenchError(f"{folder} is not a submission: {SUBMISSION_FILE} is missing")
    raw = safe_io.read_toml(path, what="submission file")  # regular file, size-bounded, UTF-8 (bmbench.safe_io)
    try:
        submission = Submission.model_validate(raw)
    except ValidationError as err:
        raise BmbenchError(_format_errors(path, err)) from None
    if submission.name != folder.name:
        raise BmbenchError(f"{path}: name {submission.name!r} must equal the folder name {folder.name!r}")
    if submission.backbone == MODEL_FILE and not (folder / MODEL_FILE).is_file():
        raise BmbenchError(f"{path}: backbone is 'model.py' but {folder / MODEL_FILE} is missing")
    if submission.encoder == MODEL_FILE and not (folder / MODEL_FILE).is_file():
        raise BmbenchError(f"{path}: encoder is 'model.py' but {folder / MODEL_FILE} (defining build_encoder()) "
                           "is missing", exit_code=2)
    return LoadedSubmission(submission=submission, folder=folder, digest=submission_digest(folder))
