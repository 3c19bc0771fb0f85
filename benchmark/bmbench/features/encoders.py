"""Frozen-feature encoders: any network that maps images to pooled features ``(N, D)``, with its weights' hash.

``encoder`` in ``submission.toml`` is one of

* ``timm:<name>`` (``timm:vit_large_patch14_dinov2.lvd142m``) or ``timm:hf-hub:<org>/<name>`` (the
  DinoBloom ports): timm's own pretrained mechanism, weights from the Hugging Face cache (``$HF_HUB_CACHE``,
  else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``) or the torch hub cache for URL weights;
  ``num_classes=0`` gives timm's pooled features;
* ``torchvision:<name>`` with its weights enum (the paper's four backbones: the pinned ImageNet weights of
  ``resources/backbones.toml``; others: ``DEFAULT``), from ``$TORCH_HOME/hub/checkpoints``; the last
  ``nn.Linear`` is replaced by the identity, so the output is the penultimate layer;
* ``model.py`` defining ``build_encoder() -> torch.nn.Module`` that returns ``(N, D)``;
* ``run:<run folder>`` (relative to the current directory): a finished ``bmbench run``; fold k's encoder
  is fold k's ``best.pt`` in the run's own network, head removed.

Offline with the weights not cached is an error naming the cache file to provide; it never falls back to
random weights and never waits on the hub client's retries: whether the hub is reachable is decided first
(``HF_HUB_OFFLINE=1``, else one TCP connection with a 2 s deadline).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from bmbench.errors import BmbenchError
from bmbench.safe_io import sha256_file
from bmbench.records.features import EncoderInfo, Preprocessing
from bmbench.submissions.schema import MODEL_FILE, LoadedSubmission

INVALID = 2
CONNECT_TIMEOUT_S = 2.0
HUB_HOST = ("huggingface.co", 443)
TORCH_HOST = ("download.pytorch.org", 443)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
"""What a timm hub repository holds, in timm's order of preference."""


@dataclass
class Encoder:
    """A ready encoder (eval mode, CPU) with what the store records about it."""

    module: Any
    spec: str
    kind: str
    weights_sha256: str
    weights_file: str | None
    preprocess: Preprocessing
    fold: int | None = None

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def info(self, feature_dim: int) -> EncoderInfo:
        return EncoderInfo(id=self.spec, kind=self.kind, weights_sha256=self.weights_sha256,  # type: ignore[arg-type]
                           weights_file=self.weights_file, parameters=self.parameters, feature_dim=feature_dim,
                           fold=self.fold)


def state_dict_sha256(module: Any) -> str:
    """SHA-256 over every tensor of the state dict (name, dtype, shape, bytes): weights without a file."""
    import torch
    from torch.nn.parameter import UninitializedParameter

    h = hashlib.sha256(b"bmbench-state-dict-v1\0")
    for name, tensor in sorted(module.state_dict().items()):
        if isinstance(tensor, UninitializedParameter):
            raise BmbenchError(f"the encoder's parameter {name} is uninitialised (a lazy module): run a dummy batch "
                               "through it in build_encoder() so its weights exist and can be recorded",
                               exit_code=INVALID)
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# -- reachability -----------------------------------------------------------------------------------------

def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@cache
def _reachable(host: tuple[str, int]) -> bool:
    """One TCP connection with a hard deadline (DNS included: it runs in a daemon thread)."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection(host, timeout=CONNECT_TIMEOUT_S):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S + 0.5)
    return bool(result and result[0])


def hub_online() -> bool:
    """Whether the Hugging Face hub can be asked at all (``HF_HUB_OFFLINE`` wins, then a 2 s probe)."""
    if _truthy("HF_HUB_OFFLINE") or _truthy("BMBENCH_OFFLINE"):
        return False
    return _reachable(HUB_HOST)


def torch_online() -> bool:
    if _truthy("BMBENCH_OFFLINE") or _truthy("HF_HUB_OFFLINE"):
        return False
    return _reachable(TORCH_HOST)


# -- timm -------------------------------------------------------------------------------------------------

def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (not at import time)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "huggingface" / "hub"


def _cached_hub_file(repo: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=hf_cache_dir())
    return Path(found) if isinstance(found, str) else None


def hub_file(repo: str, filenames: tuple[str, ...], spec: str) -> Path:
    """The first of ``filenames`` of hub repo ``repo``, from the cache or (online) downloaded into it."""
    for name in filenames:
        found = _cached_hub_file(repo, name)
        if found is not None:
            return found
    cache_root = hf_cache_dir()
    where = cache_root / f"models--{repo.replace('/', '--')}" / "snapshots" / "<revision>" / filenames[0]
    if not hub_online():
        raise BmbenchError(
            f"encoder {spec}: offline, and {filenames[0]} of {repo} is not in the Hugging Face cache "
            f"{cache_root} (expected at {where}, with refs/main naming the revision). On a machine with network "
            f"access run `HF_HOME=... huggingface-cli download {repo}` (or any bmbench embed) and copy the cache "
            "folder here, or set HF_HOME / HF_HUB_CACHE to a cache that holds it. bmbench never substitutes "
            "random weights.", exit_code=INVALID)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    last: Exception | None = None
    for name in filenames:
        try:
            return Path(hf_hub_download(repo, name, cache_dir=cache_root, etag_timeout=10))
        except EntryNotFoundError as err:
            last = err
        except Exception as err:  # the hub client raises many types; any of them means "not available"
            raise BmbenchError(f"encoder {spec}: downloading {name} of {repo} into {cache_root} failed "
                               f"({type(err).__name__}: {err})", exit_code=1) from None
    raise BmbenchError(f"encoder {spec}: the hub repository {repo} has none of {', '.join(filenames)} ({last})",
                       exit_code=INVALID)


def _timm_registry(spec: str, name: str) -> Encoder:
    import timm
    import torch

    from bmbench.features.preprocess import from_timm

    if not timm.is_model(name):
        raise BmbenchError(f"encoder {spec}: unknown timm model {name!r}; see timm.list_models() (a hub name "
                           "needs the prefix timm:hf-hub:)", exit_code=INVALID)
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise BmbenchError(f"encoder {spec}: timm has no pretrained weights for {name}", exit_code=INVALID)
    if cfg.hf_hub_id:
        repo, _, _ = cfg.hf_hub_id.partition("@")
        files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else WEIGHT_FILES
        weights = hub_file(repo, files, spec)
    elif cfg.file:
        weights = Path(cfg.file)
    else:
        weights = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
        if not weights.is_file():
            if not torch_online():
                raise BmbenchError(
                    f"encoder {spec}: offline, and its weights are not in the torch cache: put {cfg.url} at "
                    f"{weights} (set TORCH_HOME to use another cache)", exit_code=INVALID)
            torch.hub.download_url_to_file(cfg.url, str(weights), progress=False)
    model = timm.create_model(name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(weights)})
    return Encoder(module=model, spec=spec, kind="timm", weights_sha256=sha256_file(weights),
                   weights_file=str(weights), preprocess=from_timm(model))


def _timm_hub(spec: str, repo: str) -> Encoder:
    import timm

    from bmbench.features.preprocess import from_timm

    config = hub_file(repo, ("config.json",), spec)
    weights = hub_file(repo, WEIGHT_FILES, spec)
    if weights.parent != config.parent:
        raise BmbenchError(f"encoder {spec}: {config} and {weights} belong to different revisions in the cache; "
                           "download the repository again", exit_code=INVALID)
    try:
        model = timm.create_model(f"local-dir:{config.parent}", pretrained=True, num_classes=0)
    except (ValueError, KeyError, RuntimeError, json.JSONDecodeError) as err:
        raise BmbenchError(f"encoder {spec}: timm cannot build {repo} from {config.parent} "
                           f"({type(err).__name__}: {err})", exit_code=INVALID) from None
    return Encoder(module=model, spec=spec, kind="timm", weights_sha256=sha256_file(weights),
                   weights_file=str(weights), preprocess=from_timm(model))


# -- torchvision ------------------------------------------------------------------------------------------

def _without_head(model: Any, spec: str) -> Any:
    """Replace the last ``nn.Linear`` by the identity: the network then returns its pooled features."""
    from torch import nn

    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise BmbenchError(f"encoder {spec}: the network has no nn.Linear head to remove; wrap it in a "
                           "model.py encoder that returns (N, D) features", exit_code=INVALID)
    parent_name, _, child = names[-1].rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Identity())
    return model


def _torchvision(spec: str, arch: str) -> Encoder:
    import torch
    import torchvision

    from bmbench.features.preprocess import from_torchvision
    from bmbench.models.backbones import imagenet_weights_name

    name = imagenet_weights_name(f"torchvision:{arch}")
    if name is None:
        raise BmbenchError(f"encoder {spec}: torchvision has no model {arch!r} with pretrained weights; see "
                           "torchvision.models.list_models()", exit_code=INVALID)
    enum_name, _, member = name.partition(".")
    weights = getattr(torchvision.models, enum_name)[member]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file() and not torch_online():
        raise BmbenchError(
            f"encoder {spec}: offline, and the weights {name} are not in the torch cache: put {weights.url} at "
            f"{cached} (set TORCH_HOME to use another cache). bmbench never substitutes random weights.",
            exit_code=INVALID)
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except OSError as err:
        raise BmbenchError(f"encoder {spec}: cannot load {name} into {cached} ({err}); copy {weights.url} there",
                           exit_code=1) from None
    model = torchvision.models.get_model(arch, weights=None)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise BmbenchError(f"encoder {spec}: {cached} does not fit {arch} ({str(err)[:300]}); delete it and let "
                           "it download again", exit_code=INVALID) from None
    return Encoder(module=_without_head(model, spec), spec=spec, kind="torchvision",
                   weights_sha256=sha256_file(cached), weights_file=str(cached), preprocess=from_torchvision(weights))


# -- model.py and run: --------------------------------------------------------------------------------------

def _model_py(loaded: LoadedSubmission) -> Encoder:
    from torch import nn

    from bmbench.features.preprocess import from_recipe
    from bmbench.recipe import Recipe

    path = loaded.folder / MODEL_FILE
    spec_ = importlib.util.spec_from_file_location(f"bmbench_encoder_{loaded.folder.name}", path)
    if spec_ is None or spec_.loader is None:
        raise BmbenchError(f"{path}: cannot be imported", exit_code=INVALID)
    module = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(module)
    build = getattr(module, "build_encoder", None)
    if not callable(build):
        raise BmbenchError(f"{path}: must define build_encoder() -> torch.nn.Module returning (N, D) features",
                           exit_code=INVALID)
    model = build()
    if not isinstance(model, nn.Module):
        raise BmbenchError(f"{path}: build_encoder() returned {type(model).__name__}, not a torch.nn.Module",
                           exit_code=INVALID)
    return Encoder(module=model, spec=MODEL_FILE, kind="model.py", weights_sha256=state_dict_sha256(model),
                   weights_file=None, preprocess=from_recipe(Recipe(), "bmbench recipe eval transform (defaults)"))


def run_folder(spec: str) -> Path:
    """The run folder of ``run:<path>`` (relative paths from the current directory)."""
    return Path(spec.split(":", 1)[1]).expanduser()


def _run_record(folder: Path, spec: str) -> dict[str, Any]:
    from bmbench.records._io import load_json

    record = load_json(folder / "run.json", what="run record",
                       fix=f"encoder {spec} must name a finished `bmbench run` folder (it holds run.json)")
    if not isinstance(record, dict) or not isinstance(record.get("submission"), dict):
        raise BmbenchError(f"{folder / 'run.json'}: has no submission record; is it a bmbench run?", exit_code=INVALID)
    return record


def run_folds(spec: str) -> list[int]:
    """The folds of a ``run:`` encoder that have a ``best.pt`` (a finished fold of a neural network)."""
    folder = run_folder(spec)
    _run_record(folder, spec)
    folds = sorted(int(p.parent.name[4:]) for p in folder.glob("fold*/best.pt") if p.parent.name[4:].isdigit())
    if not folds:
        raise BmbenchError(f"encoder {spec}: {folder} has no fold<k>/best.pt (a baseline run has no network to "
                           "reuse)", exit_code=INVALID)
    return folds


def _run(spec: str, fold: int) -> Encoder:
    from bmbench.classes import NUM_CLASSES
    from bmbench.engine.checkpoint import load_checkpoint
    from bmbench.features.preprocess import from_recipe
    from bmbench.models.backbones import build_backbone
    from bmbench.submissions.schema import load_submission

    folder = run_folder(spec)
    record = _run_record(folder, spec)
    sub_record = record["submission"]
    ft = load_submission(Path(str(sub_record.get("folder"))))
    if ft.digest != sub_record.get("digest"):
        raise BmbenchError(f"encoder {spec}: the submission {ft.folder} changed since the run (digest "
                           f"{ft.digest[:12]} now, {str(sub_record.get('digest'))[:12]} in run.json); its network "
                           "may not fit best.pt", exit_code=INVALID)
    best = folder / f"fold{fold}" / "best.pt"
    if not best.is_file():
        raise BmbenchError(f"encoder {spec}: {best} is missing; fold {fold} did not finish (folds with a "
                           f"checkpoint: {run_folds(spec)})", exit_code=INVALID)
    model = build_backbone(str(ft.submission.backbone), NUM_CLASSES, ft.folder)
    try:
        model.load_state_dict(load_checkpoint(best)["model"])
    except (RuntimeError, KeyError) as err:
        raise BmbenchError(f"{best} does not fit {ft.submission.backbone}: {str(err)[:300]}", exit_code=INVALID) \
            from None
    return Encoder(module=_without_head(model, spec), spec=spec, kind="run", weights_sha256=sha256_file(best),
                   weights_file=str(best), fold=fold,
                   preprocess=from_recipe(ft.submission.recipe, f"eval transform of the run's recipe ({ft.submission.name})"))


def load_encoder(loaded: LoadedSubmission, fold: int | None = None) -> Encoder:
    """The submission's encoder in eval mode with its preprocessing (``[preprocess]`` applied).

    ``fold`` is required for ``run:`` encoders and ignored by the others.
    """
    from bmbench.features.preprocess import apply_override

    sub = loaded.submission
    spec = sub.encoder
    if spec is None:
        raise BmbenchError(f"{loaded.folder}: {sub.name} is a fine-tuning submission (no encoder); frozen features "
                           "need protocol = \"linear\" | \"knn\" | \"fewshot\" and an encoder", exit_code=INVALID)
    kind, _, rest = spec.partition(":")
    if kind == "run":
        if fold is None:
            raise BmbenchError(f"encoder {spec} has one network per fold; name the fold", exit_code=INVALID)
        encoder = _run(spec, fold)
    elif kind == "timm":
        encoder = _timm_hub(spec, rest.split(":", 1)[1]) if rest.startswith("hf-hub:") else _timm_registry(spec, rest)
    elif kind == "torchvision":
        encoder = _torchvision(spec, rest)
    else:
        encoder = _model_py(loaded)
    encoder.preprocess = apply_override(encoder.preprocess, sub.preprocess)
    encoder.module.eval()
    for p in encoder.module.parameters():
        p.requires_grad_(False)
    return encoder
