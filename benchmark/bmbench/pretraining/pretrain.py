"""``bmbench pretrain``: in-domain pre-training on PatchCamelyon or Comparison Detector (paper Sec. 2.4.2).

The recipe is the fine-tuning recipe (default :class:`Recipe`, the same loop, sampler, transforms, LR range
test and checkpoint selection) with two changes the paper names: normalisation with the set's own Table 2
statistics and no random cropping (images are resized to ``eval_size``). The head has the set's classes
(PCam 2, CD 11). The result is exactly what the ``pcam`` / ``cd`` / ``imagenet+pcam`` / ``imagenet+cd``
initialisations resolve: ``CheckpointRef(backbone, init).path`` (the full state dict, in-domain head
included; fine-tuning drops it) and the metadata JSON beside it, both written atomically.

Training state lives in ``<checkpoint>.work/`` (``last.pt`` every epoch, ``best.pt``, ``history.jsonl``,
``lr_find.json``) so ``--resume`` continues a killed run; the folder is removed once the checkpoint and its
metadata are in place.
"""

from __future__ import annotations

import os
import shutil
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import ValidationError

from bmbench import __version__
from bmbench.errors import BmbenchError, DataNotFoundError, validation_messages
from bmbench.pretraining.source import PCAM, InDomainSet, PretrainData, in_domain_set
from bmbench.engine.loop import NoProgress
from bmbench.recipe import Recipe
from bmbench.records.checkpoint import CheckpointMeta, checkpoint_init, read_checkpoint_meta, write_checkpoint_meta
from bmbench.records.lrfind import LR_FIND_FILE
from bmbench.records.pretrain_settings import (SETTINGS_FILE, PretrainSettings, read_pretrain_settings,
                                               write_pretrain_settings)

START_INITS = ("random", "imagenet")
WORK_SUFFIX = ".work"


class PretrainProgress(Protocol):
    """The training loop's progress callbacks, log lines, and a counter for work before training."""

    def epoch_start(self, fold: int, epoch: int, epochs: int, steps: int) -> None: ...
    def step(self, images: int) -> None: ...
    def epoch_end(self, record: Any) -> None: ...
    def log(self, message: str) -> None: ...
    def counter(self, description: str, total: int | None) -> Callable[[int], None]: ...


class SilentProgress(NoProgress):
    """A :class:`PretrainProgress` that shows nothing (the loop's silent callbacks, plus log and counter)."""

    def log(self, message: str) -> None:
        pass

    def counter(self, description: str, total: int | None) -> Callable[[int], None]:
        return lambda k: None


@dataclass(frozen=True)
class PretrainOptions:
    """Everything ``bmbench pretrain`` lets a user choose."""

    dataset: str
    backbone: str
    init: str = "random"
    data: str | None = None
    epochs: int | None = None
    max_steps: int | None = None
    device: str = "auto"
    out_weights: Path | None = None
    resume: bool = False
    seed: int = 0
    recipe: Recipe | None = None
    """The base recipe (default: the paper's); only its explicitly set fields count (see pretrain_recipe)."""
    image_column: str | None = None
    label_column: str | None = None

    @property
    def smoke(self) -> bool:
        """Shortened training (``--epochs``/``--max-steps``): recorded as a smoke checkpoint."""
        return self.epochs is not None or self.max_steps is not None


@dataclass
class PretrainResult:
    """Where the checkpoint is, its metadata, and whether this call trained (False: it already existed)."""

    checkpoint: Path
    meta_path: Path
    record: CheckpointMeta
    trained: bool

    @property
    def meta(self) -> dict[str, Any]:
        """The metadata as written to ``meta_path`` (JSON types)."""
        return self.record.model_dump(mode="json")


def pretrain_recipe(spec: InDomainSet, base: Recipe | Mapping[str, Any] | None = None,
                    where: str = "the recipe") -> Recipe:
    """The fine-tuning recipe with the set's Table 2 normalisation and no random cropping (paper Sec. 2.4.2).

    ``base`` is a :class:`Recipe` or the keys of a submission's ``[recipe]`` table (default: the paper's
    recipe); only what it states explicitly is kept. Stating another normalisation or random cropping is
    refused rather than silently overridden.
    """
    raw = base.model_dump(exclude_unset=True) if isinstance(base, Recipe) else dict(base or {})
    if raw.get("normalization", spec.id) != spec.id:
        raise BmbenchError(f"{where}: pre-training on {spec.id} normalises with {spec.id}'s Table 2 statistics "
                           f"(paper Sec. 2.4.2); remove normalization = {raw['normalization']!r}")
    augmentation = raw.get("augmentation") or {}
    if not isinstance(augmentation, Mapping):
        augmentation = {"invalid": augmentation}  # let the schema name the problem
    if augmentation.get("random_crop", False) is True:
        raise BmbenchError(f"{where}: in-domain pre-training does not crop randomly (paper Sec. 2.4.2); remove "
                           "augmentation.random_crop = true")
    raw["normalization"] = spec.id
    raw["augmentation"] = {**augmentation, "random_crop": False}
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        lines = [f"  {key}: {message}" for key, message in validation_messages(err, "docs/recipe.md")]
        raise BmbenchError(f"{where}: invalid recipe:\n" + "\n".join(lines)) from None


def load_recipe_file(path: Path, dataset: str) -> Recipe:
    """The pre-training recipe from TOML: a submission's ``[recipe]`` keys, at top level or under ``[recipe]``."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BmbenchError(f"{path}: no such recipe file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise BmbenchError(f"{path}: not valid TOML: {err}") from None
    table = raw.get("recipe", raw)
    if not isinstance(table, dict):
        raise BmbenchError(f"{path}: 'recipe' must be a table")
    return pretrain_recipe(in_domain_set(dataset), table, where=str(path))


def load_pretrain_data(spec: InDomainSet, data: str | None, *, image_column: str | None = None,
                       label_column: str | None = None, progress: PretrainProgress | None = None) -> PretrainData:
    """The in-domain data named by ``--data`` (or ``$BMBENCH_PCAM_DATA`` / ``$BMBENCH_CD_DATA``)."""
    from bmbench.pretraining import hf

    progress = progress or SilentProgress()
    value = data or os.environ.get(spec.data_env)
    if not value:
        raise DataNotFoundError(f"No {spec.title} data given (--data or ${spec.data_env}).\n{spec.download}")
    path = Path(value).expanduser()
    native = False
    if not value.startswith(hf.HF_PREFIX) and path.is_dir():
        if spec is PCAM:
            from bmbench.pretraining.pcam import is_pcam_folder

            native = is_pcam_folder(path)
        else:
            from bmbench.pretraining.cd import is_cd_folder

            native = is_cd_folder(path)
    if not native and hf.is_hf_source(value):
        return hf.load_hf(spec, value, image_column=image_column, label_column=label_column, log=progress.log)
    if image_column or label_column:
        raise BmbenchError("--image-column/--label-column apply to Hugging Face sources (hf:<id>, a save_to_disk "
                           f"folder or parquet), not to {path}")
    if not path.exists():
        raise DataNotFoundError(f"{path} does not exist.\n{spec.download}")
    if spec is PCAM:
        from bmbench.pretraining.pcam import load_pcam

        return load_pcam(path, progress.counter)
    from bmbench.pretraining.cd import load_cd

    return load_cd(path, progress.log)


def _check_start(backbone: str, init: str) -> None:
    """Pre-training starts a registry backbone (torchvision/timm) from random or ImageNet weights."""
    from bmbench.submissions.schema import BACKBONE_RE

    if not backbone.startswith(("torchvision:", "timm:")) or not BACKBONE_RE.fullmatch(backbone):
        raise BmbenchError(f"--backbone must be torchvision:<name> or timm:<name>, not {backbone!r} (in-domain "
                           "checkpoints are shared by every submission with the same registry backbone)")
    if init not in START_INITS:
        raise BmbenchError(f"--init must be random or imagenet (the start of the pre-training), not {init!r}")


def checkpoint_path(backbone: str, name: str, out_weights: Path | None = None) -> Path:
    """``CheckpointRef(backbone, name).path``, or the same layout under ``out_weights``."""
    from bmbench.models.init import CheckpointRef, backbone_slug

    ref = CheckpointRef(backbone, name)
    return ref.path if out_weights is None else Path(out_weights) / backbone_slug(backbone) / ref.path.name


def _check_existing(path: Path, work: Path, resume: bool, ref: Any) -> CheckpointMeta | None:
    """Refuse to overwrite a finished checkpoint or to restart over an interrupted one without ``--resume``;
    ``ref`` (a :class:`~bmbench.models.init.CheckpointRef`) names the checkpoint ``path`` must hold."""
    meta_path = path.with_suffix(".json")
    finished = path.is_file() and meta_path.is_file()
    interrupted = work.is_dir() and any(work.iterdir())
    if finished and not interrupted:
        if resume:
            return read_checkpoint_meta(meta_path, backbone=ref.backbone, init=ref.init,
                                        fix=f"Delete both files and re-create them with:\n  {ref.command}")
        raise BmbenchError(f"{path} already exists (with {meta_path.name}). Delete both files to pre-train again, "
                           "or write elsewhere with --out-weights DIR.")
    if interrupted and not resume:
        raise BmbenchError(f"{work} holds an interrupted pre-training. Pass --resume to continue it from its last "
                           "completed epoch, or delete the folder to start over.")
    return None


def _check_settings(work: Path, settings: PretrainSettings) -> None:
    """A resumed pre-training must continue with the settings it started with."""
    path = work / SETTINGS_FILE
    if path.is_file():
        changed = read_pretrain_settings(path).differences(settings)
        if changed:
            raise BmbenchError(f"--resume: {work} was started with other settings ({', '.join(changed)} differ: "
                               f"{', '.join(f'{k}={before!r}' for k, (before, _) in changed.items())}); rerun "
                               "with those, or delete the folder to start over.")
    else:
        write_pretrain_settings(path, settings)


def _choose_lr(model: Any, datapath: Any, data: PretrainData, recipe: Recipe, device: Any, work: Path,
               options: PretrainOptions, epochs: int) -> tuple[float, str]:
    """The learning rate and the rule that chose it; a range test is cached in the work folder for --resume."""
    from bmbench.engine.loop import settings_for
    from bmbench.runs.lrfind import find_lr
    from bmbench.runs.lrfind_cache import load_or_find_lr

    if recipe.lr != "find":
        return float(recipe.lr), "fixed in the recipe"

    def compute() -> Any:
        probe = settings_for(recipe, device, epochs=epochs, lr=recipe.lr_find.start_lr, seed=options.seed,
                             max_steps=options.max_steps)
        return find_lr(model, datapath, data.train, recipe, probe)

    record, _ = load_or_find_lr(work / LR_FIND_FILE, None, compute, device=str(device))
    return record.suggested_lr, record.rule


def pretrain(options: PretrainOptions, progress: PretrainProgress | None = None) -> PretrainResult:
    """Pre-train ``options.backbone`` on the in-domain set and write the checkpoint the fine-tuning resolves."""
    import torch

    from bmbench.models.backbones import head_name
    from bmbench.models.init import CheckpointRef, build_initialised_model, sha256_file
    from bmbench.pretraining.source import SourceDataPath
    from bmbench.engine.checkpoint import save_checkpoint
    from bmbench.datapaths.sampling import epoch_seed
    from bmbench.engine.loop import settings_for, train_fold
    from bmbench.runs.provenance import device_info, git_commit, package_versions
    from bmbench.engine.device import resolve_device

    progress = progress or SilentProgress()
    spec = in_domain_set(options.dataset)
    _check_start(options.backbone, options.init)
    name = checkpoint_init(spec.id, options.init)
    path = checkpoint_path(options.backbone, name, options.out_weights)
    meta_path = path.with_suffix(".json")
    work = path.with_name(path.stem + WORK_SUFFIX)
    existing = _check_existing(path, work, options.resume, CheckpointRef(options.backbone, name))
    if existing is not None:
        progress.log(f"{path} is already complete; nothing to resume")
        return PretrainResult(path, meta_path, existing, trained=False)

    recipe = pretrain_recipe(spec, options.recipe)
    device = resolve_device(options.device)
    data = load_pretrain_data(spec, options.data, image_column=options.image_column,
                              label_column=options.label_column, progress=progress)
    counts = data.counts()
    progress.log(f"{spec.title}: " + ", ".join(f"{part} {c['images']:,}" for part, c in counts.items())
                 + f" images ({data.info['format']}, {data.info['root']})")
    epochs = options.epochs or recipe.epochs
    _check_settings(work, PretrainSettings(backbone=options.backbone, dataset=spec.id, init=options.init,
                                           recipe_digest=recipe.digest(), epochs=epochs,
                                           max_steps=options.max_steps, seed=options.seed,
                                           data=str(data.info["root"])))

    started = time.perf_counter()
    torch.manual_seed(epoch_seed(options.seed, 0, 0, stream=2))  # model initialisation, as in bmbench run
    model, init_info = build_initialised_model(options.backbone, options.init, spec.num_classes)
    datapath = SourceDataPath(recipe, data.source, data.labels, spec.num_classes, seed=options.seed,
                              pin_memory=device.type == "cuda")
    lr, lr_rule = _choose_lr(model, datapath, data, recipe, device, work, options, epochs)
    progress.log(f"{options.backbone} from {options.init} weights -> {name}: {spec.num_classes} classes, "
                 f"lr {lr:.3g} ({lr_rule}), {epochs} epoch(s)"
                 + (f", at most {options.max_steps} step(s) each" if options.max_steps else "")
                 + (" [smoke]" if options.smoke else "") + f", device {device}")
    settings = settings_for(recipe, device, epochs=epochs, lr=lr, seed=options.seed, max_steps=options.max_steps)
    outcome = train_fold(model, datapath, recipe, settings, fold=0, train=data.train, val=data.val, test=data.test,
                         fold_dir=work, resume=options.resume, progress=progress)
    has_test = bool(data.info.get("has_test", True))
    test_accuracy = (float(np.mean(outcome.test_probs.argmax(axis=1) == data.labels[data.test]))
                     if has_test else None)

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_checkpoint(path, state)
    digest = sha256_file(path)
    history = outcome.history
    meta = CheckpointMeta(
        backbone=options.backbone,
        checkpoint_init=name,
        dataset=spec.id,
        dataset_title=spec.title,
        init=options.init,
        init_info=init_info,
        num_classes=spec.num_classes,
        classes=list(spec.classes),
        head=head_name(model),
        head_included=True,
        recipe=recipe.model_dump(mode="json"),
        recipe_digest=recipe.digest(),
        epochs=outcome.epochs_run,
        epochs_planned=epochs,
        max_steps=options.max_steps,
        smoke=options.smoke,
        seed=options.seed,
        lr=lr,
        lr_rule=lr_rule,
        data_path="plain (DataLoader, one process)",
        best_epoch=outcome.best_epoch,
        val_accuracy=outcome.best_val_accuracy,
        final_val_accuracy=float(history[-1]["val_accuracy"]) if history else None,
        test_accuracy=test_accuracy,
        data={**data.info, "counts": counts},
        history=history,
        seconds=outcome.seconds,
        wall_seconds_this_invocation=time.perf_counter() - started,
        device=device_info(device),
        bmbench_version=__version__,
        versions=package_versions(),
        git=git_commit(),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        sha256=digest,
    )
    write_checkpoint_meta(meta_path, meta)
    shutil.rmtree(work, ignore_errors=True)
    return PretrainResult(path, meta_path, meta, trained=True)


__all__ = ["PretrainOptions", "PretrainProgress", "PretrainResult", "SilentProgress",
           "checkpoint_init", "checkpoint_path", "load_pretrain_data", "load_recipe_file", "pretrain",
           "pretrain_recipe"]
