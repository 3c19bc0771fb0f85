"""``bmbench run``: train and evaluate a submission on the folds of the published split.

Layout of a run (``<out>/<submission>/<dataset>/``)::

    fold<k>/last.pt, best.pt      checkpoints (atomic)       fold<k>/history.jsonl   one line per epoch
    fold<k>/lr_find.json          range test, if lr = "find"  fold<k>/test_predictions.csv
    fold<k>/fold.json             written last: the fold is complete
    predictions.csv  score.json  run.json                    merged over the completed folds

Each fold is an independent job: ``--folds 3`` on one machine and ``--folds 4`` on another, then
``bmbench merge`` combines them. A smoke run (``--epochs``/``--max-steps``) is marked not comparable.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bmbench import atomic
from bmbench.extras import require
from bmbench.paths import runs_dir
from bmbench.classes import CLASS_CODES, NUM_CLASSES
from bmbench.data.layout import scan_data
from bmbench.data.source import resolve_data
from bmbench.engine.device import resolve_device
from bmbench.errors import BmbenchError
from bmbench.records.fold import FOLD_FILE, FoldRecord, completed_folds, write_fold
from bmbench.protocols import FINETUNE
from bmbench.records.run import RUN_SCHEMA_VERSION, RunRecord, write_run
from bmbench.records.score import SCORE_FILE, write_score
from bmbench.scoring.score import score_file
from bmbench.splits.store import Split, check_folds, load_split, split_for_dataset
from bmbench.submissions.schema import LoadedSubmission
from bmbench.recipe import Recipe

FOLD_DONE = FOLD_FILE
FOLD_PREDICTIONS = "test_predictions.csv"


@dataclass(frozen=True)
class RunOptions:
    """Everything ``bmbench run`` lets a user choose besides the submission."""

    data: str | None = None
    folds: tuple[int, ...] | None = None
    out: Path = field(default_factory=runs_dir)  # <root>/runs (bmbench.paths)
    device: str = "auto"
    epochs: int | None = None
    max_steps: int | None = None
    resume: bool = False
    seed: int = 0
    lr_find_steps: int | None = None  # cap of the range test (lr = "find"); smoke runs default to SMOKE_LR_FIND_STEPS

    @property
    def smoke(self) -> bool:
        """A run with shortened training is not comparable with full runs."""
        return self.epochs is not None or self.max_steps is not None

    def training_flags(self) -> list[str]:
        """The ``bmbench run`` flags that ask for these options' training (device, epochs, steps, seed, range
        test cap), defaults left out: what a fold worker and a resume command must repeat to train alike."""
        flags = {"--device": None if self.device == "auto" else self.device, "--epochs": self.epochs,
                 "--max-steps": self.max_steps, "--seed": self.seed or None, "--lr-find-steps": self.lr_find_steps}
        return [part for flag, value in flags.items() if value is not None for part in (flag, str(value))]

    @property
    def lr_find_cap(self) -> int | None:
        """Steps of the range test if capped: ``lr_find_steps``, else a small default for smoke runs."""
        return self.lr_find_steps if self.lr_find_steps is not None else (SMOKE_LR_FIND_STEPS if self.smoke else None)


SMOKE_LR_FIND_STEPS = 10
"""Range-test steps of a smoke run (``--epochs``/``--max-steps``) unless ``--lr-find-steps`` says otherwise: the
full 100-step test took 3.7 of a 5.5-minute smoke run."""


@dataclass
class RunResult:
    """Where a run wrote its results, the score document, and the run record (``run``/``folds``: as written)."""

    run_dir: Path
    score: dict[str, Any]
    record: RunRecord
    run: dict[str, Any] = field(default_factory=dict)
    folds: list[dict[str, Any]] = field(default_factory=list)


def _process_device(device: Any, local_rank: int) -> Any:
    """Under torchrun, each process drives the GPU of its local rank."""
    import torch

    if device.type != "cuda":
        return device
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def _fold_dir(run_dir: Path, fold: int) -> Path:
    return run_dir / f"fold{fold}"


def write_fold_predictions(path: Path, split: Split, fold: int, positions: np.ndarray, probs: np.ndarray) -> None:
    """One fold's test predictions in the scoring format (argmax class, all 21 probabilities)."""
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    lines = [f"{split.image_ids[p]},{fold},{CLASS_CODES[c]}," + ",".join(f"{v:.8f}" for v in row)
             for p, c, row in zip(positions, pred, probs, strict=True)]
    atomic.write_text(path, "".join(line + "\n" for line in lines))


def prediction_header() -> str:
    """Header of a predictions file with probabilities."""
    return ",".join(["image_id", "fold", "pred", *(f"p_{c}" for c in CLASS_CODES)])


def merge_predictions(fold_dirs: dict[int, Path], out: Path) -> None:
    """Concatenate per-fold predictions (ascending fold) into one predictions file, atomically."""
    with atomic.atomic_open(out, "w") as handle:
        handle.write(prediction_header() + "\n")
        for fold in sorted(fold_dirs):
            handle.write((fold_dirs[fold] / FOLD_PREDICTIONS).read_text(encoding="utf-8"))


def _holds_results(fold_dir: Path) -> bool:
    """A fold folder holding more than a cached range test (``bmbench lr-find`` writes that before training)."""
    from bmbench.runs.lrfind_cache import LR_FIND_OUTPUTS

    return fold_dir.exists() and any(p.name not in LR_FIND_OUTPUTS for p in fold_dir.iterdir())


def fold_model(loaded: LoadedSubmission, seed: int, fold: int) -> tuple[Any, dict[str, Any]]:
    """The fold's initial model and its init record; ``run`` and ``lr-find`` build it with the same seed."""
    require("torch", "train", f"training {loaded.submission.name}")
    import torch

    from bmbench.models.init import build_initialised_model
    from bmbench.datapaths.sampling import epoch_seed

    sub = loaded.submission
    torch.manual_seed(epoch_seed(seed, fold, 0, stream=2))  # model initialisation
    return build_initialised_model(sub.backbone, sub.init, NUM_CLASSES, loaded.folder)


def _check_out_dir(run_dir: Path, folds: Sequence[int], resume: bool) -> None:
    if resume:
        return
    existing = [f for f in folds if _holds_results(_fold_dir(run_dir, f))]
    if existing:
        raise BmbenchError(
            f"{run_dir} already holds results for fold(s) {', '.join(map(str, existing))}. Pass --resume to "
            "continue (finished folds are kept, interrupted ones resume from their last epoch), or --out to "
            "write elsewhere."
        )


def _run_torch_fold(loaded: LoadedSubmission, recipe: Recipe, split: Split, paths: list[Path], fold: int,
                    options: RunOptions, device: Any, fold_dir: Path, progress: Any, dist: Any) -> dict[str, Any]:
    from bmbench.datapaths.gpu import describe_datapath, make_datapath
    from bmbench.engine.loop import settings_for, train_fold
    from bmbench.models.backbones import count_parameters
    from bmbench.runs.lrfind import find_lr
    from bmbench.runs.lrfind_cache import LR_FIND_FILE, load_or_find_lr, lr_find_identity, read_lr_find

    model, init_info = fold_model(loaded, options.seed, fold)
    parameters = count_parameters(model)  # recorded in run.json: the leaderboard never builds the model
    backbone = loaded.submission.backbone or ""  # per-backbone fast paths (engine.fastpath)
    def datapath_for(dist_context: Any) -> Any:  # recipe.data_path: plain DataLoader or GPU-resident
        layout = settings_for(recipe, device, epochs=1, lr=0.0, seed=options.seed, max_steps=None, backbone=backbone)
        return make_datapath(recipe, paths, split, NUM_CLASSES, device=device, seed=options.seed, fold=fold,
                             dist=dist_context, channels_last=layout.channels_last)

    main = dist is None or dist.is_main
    train, val, test = (split.members(fold, role) for role in ("train", "val", "test"))
    epochs = options.epochs or recipe.epochs
    if recipe.lr == "find":
        cache, identity = fold_dir / LR_FIND_FILE, lr_find_identity(loaded, split, fold, options.seed)
        lr_recipe = recipe
        if options.lr_find_cap is not None:  # a capped test: its own recipe digest, never reused by a full run
            lr_recipe = recipe.model_copy(update={"lr_find": recipe.lr_find.model_copy(
                update={"num_iter": min(options.lr_find_cap, recipe.lr_find.num_iter)})})
            identity = identity.model_copy(update={"recipe_digest": lr_recipe.digest()})
        if main:  # one process runs (or reuses) the range test with the global batch
            probe = settings_for(recipe, device, epochs=epochs, lr=recipe.lr_find.start_lr, seed=options.seed,
                                 max_steps=options.max_steps, backbone=backbone)
            load_or_find_lr(cache, identity, lambda: find_lr(model, datapath_for(None), train, lr_recipe, probe),
                            device=str(device))
        if dist is not None:
            dist.barrier()
        found = read_lr_find(cache, identity)
        lr, lr_rule = found.suggested_lr, found.rule
    else:
        lr, lr_rule = float(recipe.lr), "fixed in the recipe"
    settings = settings_for(recipe, device, epochs=epochs, lr=lr, seed=options.seed, max_steps=options.max_steps,
                            backbone=backbone)
    datapath = datapath_for(dist)
    outcome = train_fold(model, datapath, recipe, settings, fold=fold, train=train, val=val, test=test,
                         fold_dir=fold_dir, resume=options.resume, progress=progress)
    if main:
        write_fold_predictions(fold_dir / FOLD_PREDICTIONS, split, fold, outcome.test_positions, outcome.test_probs)
    return {"best_epoch": outcome.best_epoch, "best_val_accuracy": outcome.best_val_accuracy,
            "epochs_run": outcome.epochs_run, "seconds": outcome.seconds, "lr": lr,
            "lr_rule": lr_rule, "init": init_info, "parameters": parameters,
            **settings.describe(), "compile_fallback": outcome.compile_fallback,
            "processes": dist.world_size if dist is not None else 1, "data_path": describe_datapath(datapath)}


def fold_threads(recipe: Recipe, device: Any) -> contextlib.AbstractContextManager[int | None]:
    """On a CPU, the cores the plain path's DataLoader workers leave free (:func:`engine.fastpath.cpu_threads`):
    a fold's training, and its range test in a run or in ``bmbench lr-find`` (the same rounding, the same LR)."""
    if device.type != "cpu":
        return contextlib.nullcontext()
    from bmbench.datapaths.gpu import resolve_data_path
    from bmbench.datapaths.plain import resolve_workers
    from bmbench.engine.fastpath import cpu_threads

    plain = resolve_data_path(recipe.data_path, device) == "plain"
    return cpu_threads(resolve_workers(recipe) if plain else 0)


def _run_baseline_fold(loaded: LoadedSubmission, split: Split, paths: list[Path], fold: int, options: RunOptions,
                       fold_dir: Path, features: Callable[[], np.ndarray | None]) -> dict[str, Any]:
    from bmbench.engine.baselines import fit_predict_fold

    started = time.perf_counter()
    result = fit_predict_fold(loaded.submission.arch, features(), split.labels, split, fold, seed=options.seed)
    write_fold_predictions(fold_dir / FOLD_PREDICTIONS, split, fold, result.test_positions, result.probs)
    return {"best_val_accuracy": result.val_accuracy, "params": result.params,
            "seconds": time.perf_counter() - started, "init": {"init": "none"}, "parameters": None}


def resolve_run_target(loaded: LoadedSubmission, options: RunOptions) -> tuple[Any, Split, tuple[int, ...], Path]:
    """The data index, its published split, the folds asked for, and the run folder (checked for overwrites)."""
    index = scan_data(resolve_data(options.data))
    split = load_split(split_for_dataset(index.dataset.id).name)
    folds = check_folds(options.folds, split)
    run_dir = options.out / loaded.submission.name / index.dataset.id
    _check_out_dir(run_dir, folds, options.resume)
    return index, split, folds, run_dir


def run_submission(loaded: LoadedSubmission, options: RunOptions, progress: Any = None,
                   feature_progress: Callable[[int], None] | None = None) -> RunResult | None:
    """Train and evaluate ``loaded`` on the chosen folds; write predictions, score and provenance.

    Under torchrun (several processes for one fold) only rank 0 writes files and returns the result;
    the other ranks return None.
    """
    from bmbench.runs.provenance import device_info, git_commit, package_versions

    sub = loaded.submission
    if sub.kind == "frozen":
        raise BmbenchError(f"{loaded.folder}: {sub.name} is a frozen-feature submission (protocol {sub.protocol!r}); "
                           "it is run by `bmbench probe` (bmbench.features.probe.run_probe), not trained")
    recipe = sub.recipe
    index, split, folds, run_dir = resolve_run_target(loaded, options)
    for stale_in in (run_dir, *(_fold_dir(run_dir, f) for f in folds)):  # writers killed mid-write
        atomic.remove_stale(stale_in)
    paths = index.paths_for(split.image_ids, split.name)
    device = resolve_device(options.device) if sub.kind != "baseline" else None
    dist = None
    if device is not None:
        from bmbench.engine.distributed import from_environment

        dist = from_environment(device.type)
        if dist is not None:
            device = _process_device(device, dist.local_rank)
            dist.barrier()  # every rank has checked the output folder before any rank writes to it
    main = dist is None or dist.is_main

    feature_cache: dict[str, np.ndarray | None] = {}

    def features() -> np.ndarray | None:
        if sub.arch == "majority":
            return None
        if "x" not in feature_cache:
            from bmbench.engine.baselines import extract_features

            feature_cache["x"] = extract_features(paths, progress=feature_progress)
        return feature_cache["x"]

    started = time.perf_counter()
    for fold in folds:
        fold_dir = _fold_dir(run_dir, fold)
        if options.resume and (fold_dir / FOLD_DONE).is_file():
            continue
        with atomic.made_folder(fold_dir):  # a fold refused before writing anything leaves no folder
            if sub.kind == "baseline":
                record = _run_baseline_fold(loaded, split, paths, fold, options, fold_dir, features)
            else:
                with fold_threads(recipe, device) as threads:
                    record = _run_torch_fold(loaded, recipe, split, paths, fold, options, device, fold_dir,
                                             progress, dist)
                record["cpu_threads"] = threads
        devices = (dist.world_size if dist else 1) if device is not None and device.type == "cuda" else 0
        done = FoldRecord.model_validate({"fold": fold, **record, "device_hours": record["seconds"] / 3600 * devices,
                                          "finished_at": datetime.now(UTC).isoformat(timespec="seconds")})
        if main:
            write_fold(fold_dir / FOLD_DONE, done)
        if dist is not None:
            dist.barrier()
    wall = time.perf_counter() - started
    if not main:
        return None

    return finalize_run(run_dir, split, RunRecord.model_validate({
        "schema_version": RUN_SCHEMA_VERSION,
        "protocol": FINETUNE,
        "submission": {"name": sub.name, "digest": loaded.digest, "backbone": sub.backbone, "init": sub.init,
                       "folder": str(loaded.folder)},
        "recipe": recipe.model_dump(mode="json"),
        "recipe_digest": recipe.digest(),
        "comparable": not options.smoke and not index.dataset.synthetic,
        "smoke": {"epochs": options.epochs, "max_steps": options.max_steps} if options.smoke else None,
        "seed": options.seed,
        "data": {"dataset": index.dataset.id, "synthetic": index.dataset.synthetic, "root": str(index.root)},
        "split": split.provenance(),
        "device": device_info(device) if device is not None else {"type": "cpu", "name": "CPU (no neural network)"},
        "versions": package_versions(),
        "git": git_commit(),
        "wall_seconds_this_invocation": wall,
    }))


def _parameters(run: RunRecord, folds: Sequence[FoldRecord]) -> int | None:
    """The model's parameter count: the one every fold recorded (None for baselines and older folds)."""
    counts = {f.parameters for f in folds}
    if len(counts) > 1:
        raise BmbenchError(f"the folds record different parameter counts ({sorted(map(str, counts))}): they "
                           "were not trained with the same model", exit_code=2)
    counted = counts.pop() if counts else None
    return run.parameters if counted is None else int(counted)


def finalize_run(run_dir: Path, split: Split, run: RunRecord) -> RunResult:
    """Merge the completed folds' predictions, score them with the official scorer, write run.json.

    ``run`` is the record of the run so far; its folds, totals and parameter count are taken from the
    completed folds' ``fold.json``.
    """
    done = completed_folds(run_dir)
    if not done:
        raise BmbenchError(f"{run_dir} holds no completed fold")
    merge_predictions({f: _fold_dir(run_dir, f) for f in done}, run_dir / "predictions.csv")
    score = score_file(run_dir / "predictions.csv", split.name)
    write_score(run_dir / SCORE_FILE, score)
    folds = [done[f] for f in sorted(done)]
    # A fold initialised from a smoke pre-training checkpoint makes the whole run not comparable.
    smoke_init = any(f.smoke_pretraining for f in folds)
    record = RunRecord.model_validate({
        **run.model_dump(mode="json"), "schema_version": RUN_SCHEMA_VERSION,
        "folds": [f.model_dump(mode="json") for f in folds],
        "comparable": run.comparable and not smoke_init, "smoke_pretraining": smoke_init,
        "parameters": _parameters(run, folds), "device_hours": sum(f.device_hours for f in folds),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds")})
    write_run(run_dir, record)
    written = record.model_dump(mode="json")
    return RunResult(run_dir=run_dir, score=score, record=record, run=written, folds=written["folds"])
