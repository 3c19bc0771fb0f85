"""Probe runs: ``bmbench probe`` (and ``bmbench run`` on a frozen-feature submission).

For every *variant* of the submission's protocols (``linear``, ``knn-1``, ``knn-20``, ``fewshot-<n>``; see
:mod:`bmbench.protocols`) one run folder ``<out>/<submission>/<dataset>/<variant>/``::

    fold<k>/test_predictions.csv    linear, kNN: the fold's test predictions with all 21 probabilities
    fold<k>/episode_predictions.npy few-shot: the predicted class of every test image in every episode
    fold<k>/fold.json               written last: the (variant, fold) is done (``--resume`` skips it)
    predictions.csv                 the official format, every fold; few-shot: one episode (episodes.json)
    score.json                      the official scorer's output for predictions.csv
    episodes.json                   few-shot only: every episode's score, mean and std over episodes
    run.json                        protocol = variant, the probe's constants, the encoder, the feature
                                    store's manifest, fit times, data, split, versions, git, device

The features come from the encoder's feature store (:func:`bmbench.features.embed.embed`, reused when it
exists; ``features=`` points at one explicitly). Every probe fits on the fold's train + val images (the
labelled images outside its test part) and predicts its test part; nothing here computes a metric of its
own for the record: predictions go through the official scorer.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bmbench import atomic
from bmbench.classes import CLASS_CODES, NUM_CLASSES
from bmbench.errors import BmbenchError
from bmbench.paths import runs_dir
from bmbench.protocols import ProbeConfig, parse_variant
from bmbench.records.episodes import EPISODE_METRICS, EpisodeScore, EpisodesRecord, Spread, write_episodes
from bmbench.records.fold import FOLD_FILE, FoldRecord, completed_folds, write_fold
from bmbench.records.probe_summary import ProbeSummary, VariantSummary
from bmbench.records.run import RUN_SCHEMA_VERSION, RunRecord, write_run
from bmbench.records.score import SCORE_FILE, MeanStd, write_score
from bmbench.splits.store import Split
from bmbench.submissions.schema import LoadedSubmission

INVALID = 2
FOLD_PREDICTIONS = "test_predictions.csv"
EPISODE_PREDICTIONS = "episode_predictions.npy"
PREDICTIONS_FILE = "predictions.csv"
SELECTION_RULE = ("the median episode: episodes sorted by macro F1 (then by number), the one at position "
                  "(E - 1) // 2; its predictions are predictions.csv and its score score.json")


@dataclass(frozen=True)
class ProbeOptions:
    """Everything ``bmbench probe`` lets a user choose besides the submission."""

    data: str | None = None
    split: str | None = None
    folds: tuple[int, ...] | None = None
    out: Path = field(default_factory=runs_dir)  # <root>/runs, as `bmbench run`
    device: str = "auto"
    batch: int = 256
    features: Path | None = None
    resume: bool = False
    workers: int | None = None


@dataclass
class VariantResult:
    """One variant's run folder, its score document and run record (and few-shot episodes)."""

    variant: str
    run_dir: Path
    score: dict[str, Any]
    record: RunRecord
    episodes: EpisodesRecord | None = None


@dataclass
class FoldData:
    """One fold's features: train + val (fit), train and val separately (C search), test (predict)."""

    fold: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    features: Any = field(repr=False)

    def x(self, positions: np.ndarray) -> np.ndarray:
        return self.features[positions]

    @property
    def trainval(self) -> np.ndarray:
        return np.sort(np.concatenate([self.train, self.val]))


def _fold_dir(run_dir: Path, fold: int) -> Path:
    return run_dir / f"fold{fold}"


def _check_out(run_dir: Path, folds: tuple[int, ...], resume: bool) -> None:
    """Refuse to overwrite finished or partial folds of a variant unless resuming."""
    if resume:
        return
    existing = [f for f in folds if _fold_dir(run_dir, f).is_dir() and any(_fold_dir(run_dir, f).iterdir())]
    if existing:
        raise BmbenchError(f"{run_dir} already holds results for fold(s) {', '.join(map(str, existing))}. Pass "
                           "--resume to keep finished folds and compute the rest, or --out to write elsewhere.",
                           exit_code=INVALID)


def _check_store(store: Any, loaded: LoadedSubmission, dataset_id: str, fold: int) -> None:
    """A store given with ``features=`` must hold this encoder's features of this data set."""
    manifest = store.manifest
    if manifest.key.encoder_id != loaded.submission.encoder:
        raise BmbenchError(f"{store.folder}: the feature store holds features of encoder {manifest.key.encoder_id!r}, "
                           f"but {loaded.submission.name} declares {loaded.submission.encoder!r}; embed its own "
                           "features (`bmbench embed`) or point --features at its store", exit_code=INVALID)
    if manifest.dataset != dataset_id:
        raise BmbenchError(f"{store.folder}: the feature store is of data set {manifest.dataset!r}, the data is "
                           f"{dataset_id!r}; embed the data you probe on", exit_code=INVALID)
    if manifest.key.fold is not None and manifest.key.fold != fold:
        raise BmbenchError(f"{store.folder}: the store holds fold {manifest.key.fold}'s encoder, asked for fold "
                           f"{fold}", exit_code=INVALID)


def check_parts(split: Split, folds: tuple[int, ...], config: ProbeConfig, protocols: tuple[str, ...]) -> None:
    """Refuse (before anything is embedded or written) a fold that lacks a part the probes need.

    Every probe fits on train + val and predicts test; ``c = "val-search"`` also fits on train alone and
    scores on val, so it needs both parts.
    """
    search = "linear" in protocols and config.linear.c == "val-search"
    for fold in folds:
        sizes = {role: len(split.members(fold, role)) for role in ("train", "val", "test")}
        missing = [role for role in ("test",) if sizes[role] == 0]
        if sizes["train"] + sizes["val"] == 0:
            missing.append("train/val")
        if search:
            missing.extend(role for role in ("train", "val") if sizes[role] == 0)
        if missing:
            need = ("[probe.linear] c = \"val-search\" needs train and val images, and " if search else "")
            raise BmbenchError(
                f"split {split.name}, fold {fold} has no {' and no '.join(dict.fromkeys(missing))} images "
                f"(train {sizes['train']}, val {sizes['val']}, test {sizes['test']}): {need}every probe fits on "
                "train + val and predicts test. Choose a --split with those parts"
                + (" or another [probe.linear] c" if search else ""), exit_code=INVALID)


def _require_store(folder: Path, folds: tuple[int, ...] | None) -> None:
    """``--features`` must name complete stores (every fold's, for a ``run:`` encoder): never embed a typo."""
    from bmbench.features.store import MANIFEST_FILE, PROGRESS_FILE

    for store in [folder] if folds is None else [folder / f"fold{f}" for f in folds]:
        if (store / MANIFEST_FILE).is_file():
            continue
        state = "is unfinished (an interrupted embedding)" if (store / PROGRESS_FILE).is_file() else \
            "holds no feature store"
        raise BmbenchError(f"--features {folder}: {store} {state}; create or finish it with `bmbench embed "
                           f"SUBMISSION --out {folder}` (the same --data and --split), or drop --features to use "
                           "the feature cache", exit_code=INVALID)


def _fold_data(store: Any, split: Split, fold: int) -> FoldData:
    """The fold's features in float32, rows in split order, checked finite."""
    roles = {role: split.members(fold, role) for role in ("train", "val", "test")}
    needed = np.sort(np.concatenate(list(roles.values())))
    rows = store.rows_for(split.image_ids[needed])
    dense = np.zeros((len(split.image_ids), store.dim), dtype=np.float32)
    dense[needed] = np.asarray(store.features[rows], dtype=np.float32)
    if not np.isfinite(dense[needed]).all():
        bad = needed[~np.isfinite(dense[needed]).all(axis=1)]
        raise BmbenchError(f"{store.folder}: {len(bad)} feature rows are not finite (e.g. image "
                           f"{split.image_ids[bad[0]]}); the encoder produced NaN/inf (float16 overflow?). "
                           "Delete the store and embed again, or fix the encoder", exit_code=INVALID)
    return FoldData(fold=fold, features=dense, **roles)


def _write_probs(path: Path, split: Split, fold: int, positions: np.ndarray, probs: np.ndarray) -> None:
    from bmbench.runs.run import write_fold_predictions

    write_fold_predictions(path, split, fold, positions, probs)


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic.write_bytes(path, buffer.getvalue())


def _fold_record(fold: int, seconds: float, parameters: int, device: Any, fit: dict[str, Any],
                 encoder: dict[str, Any]) -> FoldRecord:
    cuda = getattr(device, "type", "cpu") == "cuda"
    return FoldRecord.model_validate({
        "fold": fold, "seconds": seconds, "device_hours": seconds / 3600 if cuda else 0.0,
        "best_val_accuracy": fit.get("val_accuracy"), "parameters": parameters, "init": {"encoder": encoder},
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"), "fit": fit})


def _linear_fold(config: ProbeConfig, data: FoldData, split: Split, fold_dir: Path, device: Any,
                 encoder: dict[str, Any]) -> FoldRecord:
    from bmbench.features.linear import dinobloom_c, fit_logistic, search_c

    cfg = config.linear
    started = time.perf_counter()
    trainval = data.trainval
    y = split.labels[trainval]
    dim = data.features.shape[1]
    fit_args = {"max_iter": cfg.max_iter, "tol": cfg.tol, "history": cfg.history, "device": device}
    fit: dict[str, Any] = {}
    if cfg.c == "dinobloom":
        c = dinobloom_c(dim, len(np.unique(y)))
        fit["c_rule"] = f"DinoBloom: C = D x K / 100 with D = {dim}, K = {len(np.unique(y))} classes in train + val"
    elif cfg.c == "val-search":
        c, table = search_c(data.x(data.train), split.labels[data.train], data.x(data.val), split.labels[data.val],
                            cfg.c_grid, NUM_CLASSES, **fit_args)
        fit["c_rule"] = "val-search: best val macro F1 over c_grid (fit on train), refit on train + val"
        fit["c_search"] = table
        fit["val_accuracy"] = next(row["val_accuracy"] for row in table if row["c"] == c)
    else:
        c = float(cfg.c)
        fit["c_rule"] = "fixed in [probe.linear] c"
    model = fit_logistic(data.x(trainval), y, c, **fit_args)
    probs = model.predict_proba(data.x(data.test), NUM_CLASSES)
    _write_probs(fold_dir / FOLD_PREDICTIONS, split, data.fold, data.test, probs)
    fit.update(model.describe())
    parameters = int(model.weight.size + model.bias.size)
    return _fold_record(data.fold, time.perf_counter() - started, parameters, device, fit, encoder)


def _knn_folds(config: ProbeConfig, ks: list[int], data: FoldData, split: Split, dirs: dict[int, Path],
               device: Any, encoder: dict[str, Any]) -> dict[int, FoldRecord]:
    from bmbench.features.knn import knn_votes

    started = time.perf_counter()
    trainval = data.trainval
    votes = knn_votes(data.x(trainval), split.labels[trainval], data.x(data.test), ks, NUM_CLASSES,
                      metric=config.knn.metric, device=device)
    seconds = time.perf_counter() - started
    records = {}
    for k in ks:
        _write_probs(dirs[k] / FOLD_PREDICTIONS, split, data.fold, data.test, votes[k])
        fit = {"k": k, "metric": config.knn.metric, "train_images": int(len(trainval)),
               "seconds_all_k": seconds, "k_computed_together": list(ks)}
        records[k] = _fold_record(data.fold, seconds, 0, device, fit, encoder)
    return records


def _fewshot_fold(config: ProbeConfig, shots: int, data: FoldData, split: Split, fold_dir: Path, device: Any,
                  encoder: dict[str, Any]) -> FoldRecord:
    from bmbench.features.fewshot import draw_support, episode_rng, simpleshot_predict

    cfg = config.fewshot
    started = time.perf_counter()
    pool = data.trainval
    pool_labels = split.labels[pool]
    x_test = data.x(data.test)
    preds = np.empty((cfg.episodes, len(data.test)), dtype=np.int8)
    short: dict[int, int] = {}
    for episode in range(cfg.episodes):
        support = draw_support(pool_labels, shots, NUM_CLASSES, episode_rng(cfg.seed, data.fold, shots, episode))
        short = support.short
        chosen = pool[support.positions]
        preds[episode] = simpleshot_predict(data.x(chosen), split.labels[chosen], x_test, NUM_CLASSES)
    _save_npy(fold_dir / EPISODE_PREDICTIONS, preds)
    fit = {"shots": shots, "episodes": cfg.episodes, "seed": cfg.seed, "pool_images": int(len(pool)),
           "short_classes": {CLASS_CODES[c]: n for c, n in sorted(short.items())}}
    return _fold_record(data.fold, time.perf_counter() - started, 0, device, fit, encoder)


def _merge_probs(run_dir: Path, folds: list[int]) -> Path:
    from bmbench.runs.run import merge_predictions

    out = run_dir / PREDICTIONS_FILE
    merge_predictions({f: _fold_dir(run_dir, f) for f in folds}, out)
    return out


def _episode_scores(run_dir: Path, split: Split,
                    folds: list[int]) -> tuple[dict[int, np.ndarray], list[dict[str, Any]]]:
    """Every fold's episode predictions, and each episode's summary through the official scorer."""
    from bmbench.scoring.metrics import confusion_matrix
    from bmbench.scoring.score import score_confusions

    per_fold = {f: np.load(_fold_dir(run_dir, f) / EPISODE_PREDICTIONS) for f in folds}
    episodes = {arr.shape[0] for arr in per_fold.values()}
    if len(episodes) != 1:
        raise BmbenchError(f"{run_dir}: the folds hold different numbers of episodes ({sorted(episodes)}); "
                           "re-run the variant without --resume into a fresh --out", exit_code=INVALID)
    n_episodes = episodes.pop()
    truth = {f: split.labels[split.members(f, "test")] for f in folds}
    scores = []
    for e in range(n_episodes):
        confusions = {f: confusion_matrix(truth[f], per_fold[f][e].astype(np.int64), NUM_CLASSES) for f in folds}
        summary = score_confusions(confusions)["summary"]
        scores.append({name: float(summary[name]["mean"]) for name in EPISODE_METRICS})
    return per_fold, scores


def _write_episode_predictions(path: Path, split: Split, per_fold: dict[int, np.ndarray], episode: int) -> None:
    lines = ["image_id,fold,pred\n"]
    for fold in sorted(per_fold):
        test = split.members(fold, "test")
        codes = np.asarray(CLASS_CODES)[per_fold[fold][episode].astype(np.int64)]
        lines.extend(f"{split.image_ids[p]},{fold},{c}\n" for p, c in zip(test, codes, strict=True))
    atomic.write_text(path, "".join(lines))


def _finalize_fewshot(run_dir: Path, split: Split, variant: str, config: ProbeConfig,
                      folds: dict[int, FoldRecord]) -> EpisodesRecord:
    from bmbench.scoring.metrics import mean_std

    order = sorted(folds)
    per_fold, scores = _episode_scores(run_dir, split, order)
    ranked = sorted(range(len(scores)), key=lambda e: (scores[e]["macro_f1"], e))
    selected = ranked[(len(ranked) - 1) // 2]
    _write_episode_predictions(run_dir / PREDICTIONS_FILE, split, per_fold, selected)
    summary = {}
    for name in EPISODE_METRICS:
        mean, std = mean_std([s[name] for s in scores])
        summary[name] = Spread(mean=mean, std=std)
    _, shots = parse_variant(variant)
    record = EpisodesRecord(
        variant=variant, shots=int(shots or 0), episodes=len(scores), seed=config.fewshot.seed, folds=order,
        selected_episode=selected, selection_rule=SELECTION_RULE,
        short_classes={str(f): dict(getattr(folds[f], "fit", {}).get("short_classes", {})) for f in order},
        summary=summary, per_episode=[EpisodeScore(episode=e, metrics=s) for e, s in enumerate(scores)])
    write_episodes(run_dir, record)
    return record


def _encoder_ref(manifests: dict[int, Any]) -> dict[str, Any]:
    """run.json's ``encoder``: id, parameter count, weights SHA-256 (of the fold hashes for run: encoders), D."""
    first = manifests[min(manifests)].encoder
    hashes = sorted({m.encoder.weights_sha256 for m in manifests.values()})
    if len(hashes) == 1:
        weights = hashes[0]
    else:
        text = "".join(f"fold{f}:{manifests[f].encoder.weights_sha256}\n" for f in sorted(manifests))
        weights = hashlib.sha256(text.encode()).hexdigest()
    return {"id": first.id, "parameters": first.parameters, "weights_sha256": weights, "feature_dim": first.feature_dim}


def _constants(config: ProbeConfig, variant: str) -> dict[str, Any]:
    """The probe's settings for run.json (docs/protocols.md explains each)."""
    name, number = parse_variant(variant)
    if name == "linear":
        return {"protocol": "linear", **config.linear.model_dump(mode="json"),
                "model": "multinomial logistic regression, L2 on weights (intercept not penalised)",
                "solver": "full-batch L-BFGS from zeros (strong Wolfe line search, preconditioned change of "
                          "variables; bmbench.features.linear)",
                "feature_scaling": None, "fit_on": "train+val", "probabilities": "softmax"}
    if name == "knn":
        return {"protocol": "knn", "k": number, "metric": config.knn.metric, "weights": "uniform",
                "fit_on": "train+val", "probabilities": "neighbour vote fractions",
                "ties": "as scikit-learn KNeighborsClassifier (euclidean: its heap order; cosine: "
                        "numpy.argpartition; tied votes: lowest class)"}
    return {"protocol": "fewshot", "shots": number, "episodes": config.fewshot.episodes, "seed": config.fewshot.seed,
            "method": "SimpleShot: centre on the support mean, L2-normalise, nearest class-mean prototype",
            "support_from": "train+val", "probabilities": None, "predictions_csv": SELECTION_RULE}


def _finalize(run_dir: Path, split: Split, variant: str, config: ProbeConfig, base: dict[str, Any]) -> VariantResult:
    from bmbench.scoring.score import score_file

    done = completed_folds(run_dir)
    if not done:
        raise BmbenchError(f"{run_dir} holds no completed fold", exit_code=INVALID)
    order = sorted(done)
    episodes = None
    if variant.startswith("fewshot-"):
        episodes = _finalize_fewshot(run_dir, split, variant, config, done)
    else:
        _merge_probs(run_dir, order)
    score = score_file(run_dir / PREDICTIONS_FILE, split.name)
    write_score(run_dir / SCORE_FILE, score)
    folds = [done[f] for f in order]
    counts = {f.parameters for f in folds}
    record = RunRecord.model_validate({
        **base, "schema_version": RUN_SCHEMA_VERSION, "protocol": variant,
        "parameters": counts.pop() if len(counts) == 1 else None,
        "seed": config.fewshot.seed if variant.startswith("fewshot-") else 0,
        "probe": _constants(config, variant),
        "folds": [f.model_dump(mode="json") for f in folds],
        "device_hours": sum(f.device_hours for f in folds),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds")})
    write_run(run_dir, record)
    return VariantResult(variant=variant, run_dir=run_dir, score=score, record=record, episodes=episodes)


def _refuse_stale_folds(dirs: dict[str, Path], weights: dict[int, str]) -> None:
    """``--resume`` keeps a finished fold only if it was fitted on features of the same encoder weights."""
    for run_dir in dirs.values():
        for fold, record in completed_folds(run_dir).items():
            had = (record.init.get("encoder") or {}).get("weights_sha256")
            if fold in weights and had != weights[fold]:
                raise BmbenchError(
                    f"{_fold_dir(run_dir, fold)} was fitted on features of other encoder weights (SHA-256 "
                    f"{str(had)[:12]}…, now {weights[fold][:12]}…; e.g. the run: encoder was retrained). "
                    "Resuming would mix two encoders: delete that run folder or pass another --out",
                    exit_code=INVALID)


def _encoder_comparable(spec: str) -> bool:
    """A ``run:`` encoder is only as comparable as its run (a smoke fine-tuning makes a smoke encoder)."""
    if not spec.startswith("run:"):
        return True
    from bmbench.features.encoders import run_folder
    from bmbench.records.run import read_run

    return read_run(run_folder(spec)).comparable


def _run_fold(config: ProbeConfig, todo: list[str], data: FoldData, split: Split, dirs: dict[str, Path],
              device: Any, fold_encoder: dict[str, Any]) -> None:
    """Every pending variant on one fold; each variant's ``fold.json`` is written when its fold is done."""
    fold = data.fold
    ks = [number for v in todo for name, number in [parse_variant(v)] if name == "knn" and number]
    if ks:
        records = _knn_folds(config, ks, data, split, {k: _fold_dir(dirs[f"knn-{k}"], fold) for k in ks},
                             device, fold_encoder)
        for k, rec in records.items():
            write_fold(_fold_dir(dirs[f"knn-{k}"], fold) / FOLD_FILE, rec)
    for v in todo:
        name, number = parse_variant(v)
        if name == "linear":
            rec = _linear_fold(config, data, split, _fold_dir(dirs[v], fold), device, fold_encoder)
        elif name == "fewshot":
            rec = _fewshot_fold(config, int(number or 0), data, split, _fold_dir(dirs[v], fold), device,
                                fold_encoder)
        else:
            continue
        write_fold(_fold_dir(dirs[v], fold) / FOLD_FILE, rec)


def run_probe(loaded: LoadedSubmission, options: ProbeOptions,
              progress: Callable[[int, int, str], None] | None = None) -> list[VariantResult]:
    """Embed (or reuse) the features, run every variant on the chosen folds, score, and record provenance."""
    from bmbench.data.layout import scan_data
    from bmbench.data.source import resolve_data
    from bmbench.engine.device import resolve_device
    from bmbench.features.store import fold_store
    from bmbench.runs.provenance import device_info, git_commit, package_versions
    from bmbench.splits.store import check_folds, load_split, split_for_dataset

    sub = loaded.submission
    if sub.protocol == "finetune" or sub.encoder is None:
        raise BmbenchError(f"{loaded.folder}: {sub.name} is a fine-tuning submission; `bmbench probe` runs "
                           "frozen-feature submissions (protocol linear, knn, fewshot or probe, with an encoder)",
                           exit_code=INVALID)
    config = sub.probe or ProbeConfig()
    variants = config.variants(sub.protocol)
    index = scan_data(resolve_data(options.data))
    split = load_split(options.split or split_for_dataset(index.dataset.id).name)
    if split.spec.dataset.id != index.dataset.id:
        raise BmbenchError(f"split {split.name} splits data set {split.spec.dataset.id!r}, but the data at "
                           f"{index.root} is {index.dataset.id!r}; choose a --split of that data set",
                           exit_code=INVALID)
    folds = check_folds(options.folds, split)
    check_parts(split, folds, config, config.protocols_for(sub.protocol))
    comparable = not index.dataset.synthetic and _encoder_comparable(str(sub.encoder))  # read before any work
    base_dir = options.out / sub.name / index.dataset.id
    dirs = {v: base_dir / v for v in variants}
    for run_dir in dirs.values():
        _check_out(run_dir, folds, options.resume)
    device = resolve_device(options.device)
    started = time.perf_counter()
    from bmbench.features.embed import embed

    per_fold = str(sub.encoder).startswith("run:")
    if options.features is not None:  # the same checks as a store found in the cache: embed() refuses a mismatch
        _require_store(Path(options.features), folds if per_fold else None)
    store_dir = embed(loaded, data=options.data, split_name=split.name, out_dir=options.features,
                      device=options.device, batch=options.batch, progress=progress,
                      folds=folds if per_fold else None, workers=options.workers)
    embed_seconds = time.perf_counter() - started
    stores = {f: fold_store(store_dir, f) for f in folds}
    for fold, store in stores.items():
        _check_store(store, loaded, index.dataset.id, fold)
    manifests = {f: s.manifest for f, s in stores.items()}
    encoder = _encoder_ref(manifests)
    if options.resume:
        _refuse_stale_folds(dirs, {f: m.encoder.weights_sha256 for f, m in manifests.items()})
    for fold in folds:
        todo = [v for v in variants if not (options.resume and (_fold_dir(dirs[v], fold) / FOLD_FILE).is_file())]
        if not todo:
            continue
        data = _fold_data(stores[fold], split, fold)
        fold_encoder = {"id": encoder["id"], "weights_sha256": manifests[fold].encoder.weights_sha256}
        with ExitStack() as made:  # a fold that fails before writing anything leaves no empty folders
            for v in todo:
                made.enter_context(atomic.made_folder(_fold_dir(dirs[v], fold)))
            _run_fold(config, todo, data, split, dirs, device, fold_encoder)
    wall = time.perf_counter() - started
    first = manifests[min(manifests)]
    base = {
        "submission": {"name": sub.name, "digest": loaded.digest, "backbone": None, "init": None,
                       "folder": str(loaded.folder)},
        "encoder": encoder, "recipe": None, "recipe_digest": None,
        "comparable": comparable, "smoke": None,
        "data": {"dataset": index.dataset.id, "synthetic": index.dataset.synthetic, "root": str(index.root)},
        "split": split.provenance(), "device": device_info(device), "versions": package_versions(),
        "git": git_commit(), "wall_seconds_this_invocation": wall,
        "features": {"folder": str(store_dir), "embed_seconds_this_invocation": embed_seconds,
                     "manifest": first.model_dump(mode="json") if len({m.key_sha256 for m in manifests.values()}) == 1
                     else None,
                     "manifests": None if len({m.key_sha256 for m in manifests.values()}) == 1
                     else {f"fold{f}": m.model_dump(mode="json") for f, m in sorted(manifests.items())}},
    }
    return [_finalize(dirs[v], split, v, config, base) for v in variants]


def summarize(results: list[VariantResult]) -> ProbeSummary:
    """The ``--json`` document of a probe run: every figure copied from score.json / episodes.json."""
    if not results:
        raise BmbenchError("the probe run produced no variant", exit_code=1)
    first = results[0].record
    variants = []
    for r in results:
        ep = r.episodes
        variants.append(VariantSummary(
            variant=r.variant, run_dir=str(r.run_dir), folds=[f.fold for f in r.record.folds],
            metrics={name: (MeanStd(**value) if value else None) for name, value in r.score["summary"].items()},
            episodes=ep.episodes if ep else None, over_episodes=dict(ep.summary) if ep else None,
            selected_episode=ep.selected_episode if ep else None,
            short_classes={f: c for f, c in ep.short_classes.items() if c} if ep else None,
            fit_seconds=sum(f.seconds for f in r.record.folds)))
    features = getattr(first, "features", None) or {}
    return ProbeSummary(submission=first.submission.name, encoder=first.encoder.id if first.encoder else "",
                        dataset=first.data.dataset, synthetic=first.data.synthetic, split=first.split.name,
                        features=str(features.get("folder", "")), variants=variants)
