"""The GPU-resident data path: cached uint8 images on the device, the paper's augmentation batched there.

Same semantics as :class:`bmbench.datapaths.plain.PlainDataPath` (the reference), without decoding a JPEG
per draw on the CPU:

* the images come from the image cache (:mod:`bmbench.data.cache`, decoded once), held on the device for the
  fold (``storage = "device"``) or gathered per batch from the memory-mapped cache into pinned host memory
  (``"host"``, when the fold does not fit comfortably next to the model);
* the epoch's sample order is exactly the plain path's: ``epoch_draws`` from the epoch's seed, sharded with
  :class:`ShardSampler` under torchrun;
* the augmentation parameters are drawn per image on the CPU for the whole epoch (right after the order,
  from the same generator, so they never depend on the device or the number of processes) with torchvision's
  algorithms: RandomResizedCrop's sampler (10 attempts, then the central-crop fallback), RandomRotation's
  uniform angle, the two flips. Crop + resize, rotation about the centre (expand=False, zero fill) and both
  flips compose into ONE affine map per image, resampled once with ``grid_sample`` (bilinear; where a crop
  is shrunk, from antialiased half-size copies of the source, blended per image: the counterpart of
  torchvision's antialiased resize), then normalised; no host synchronisation per batch;
* evaluation images are resized once per evaluation set with torchvision's own resize (antialiased, uint8,
  as in the plain path) and kept as uint8.

Differences from the plain path are interpolation details, measured in ``tests/test_gpu_datapath.py`` and
docs/performance.md: one (mip-mapped) bilinear resampling instead of an antialiased resize (rounded to uint8)
followed by a nearest-neighbour rotation (torchvision's default; rounded again), and the edge of the zero
fill.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

from bmbench.data.cache import ImageCache
from bmbench.data.decode import EXPECTED_SHAPE
from bmbench.errors import BmbenchError, RunFailure
from bmbench.datapaths.plain import Batch, CachedPixels, PlainDataPath
from bmbench.datapaths.sampling import ProcessPlace, ShardSampler, class_balanced_weights, epoch_draws, epoch_seed, per_process_batch
from bmbench.recipe_defaults import channel_stats

if TYPE_CHECKING:
    from bmbench.recipe import Augmentation, Recipe

STORAGE_ENV = "BMBENCH_GPU_STORAGE"
"""``auto`` (default), ``device`` or ``host``: where the fold's images live."""
CONCURRENT_ENV = "BMBENCH_CONCURRENT_FOLDS"
"""Set by ``bmbench run --concurrent-folds N`` for its workers: each may use 1/N of the free memory."""
DEVICE_MEMORY_FRACTION = 0.6
"""``auto`` keeps the images on the device when they take at most this fraction of its free memory."""
HOST_FALLBACK = "batches are gathered from pinned host memory instead"
"""The phrase of the host-storage note that ``bench --concurrent`` and ``run --concurrent-folds`` relay."""
CROP_ATTEMPTS = 10
"""RandomResizedCrop's number of tries before its central-crop fallback (torchvision)."""
_LOAD_CHUNK = 512
_PREFETCH = 4


# ---------------------------------------------------------------------------------------------------
# Parameters: torchvision's samplers, vectorised
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AugmentDraws:
    """Per-draw augmentation parameters (CPU tensors of one length): crop box, angle in degrees, flips."""

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor
    angle: torch.Tensor
    hflip: torch.Tensor
    vflip: torch.Tensor

    def __len__(self) -> int:
        return int(self.top.numel())

    def select(self, index: torch.Tensor) -> AugmentDraws:
        """The draws at ``index`` (a shard, a batch)."""
        return AugmentDraws(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def params(self, k: int) -> dict[str, Any]:
        """Draw ``k`` as torchvision parameter dicts: ``crop`` (RandomResizedCrop), ``angle``, flips."""
        return {"crop": {"top": int(self.top[k]), "left": int(self.left[k]), "height": int(self.height[k]),
                         "width": int(self.width[k])},
                "angle": float(self.angle[k]), "hflip": bool(self.hflip[k]), "vflip": bool(self.vflip[k])}


def _uniform(n: int | tuple[int, ...], low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """float32 uniforms in [low, high), as ``torch.empty(1).uniform_(low, high)`` draws them."""
    shape = (n,) if isinstance(n, int) else n
    return torch.empty(shape, dtype=torch.float32).uniform_(low, high, generator=generator)


def sample_crops(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` RandomResizedCrop boxes ``(top, left, height, width)`` with torchvision's algorithm.

    Per image: up to 10 attempts of area ``U(scale) * H * W`` and aspect ratio ``exp(U(log ratio))``,
    ``w = round(sqrt(area * ratio))``, ``h = round(sqrt(area / ratio))``; the first that fits is placed
    uniformly; if none fits, the central crop of torchvision's fallback. Values are computed in the same
    precisions (float32 draws, float64 arithmetic, round half to even) as torchvision's ``make_params``.
    """
    area = float(height * width)
    log_ratio = torch.log(torch.tensor(ratio, dtype=torch.float32))
    target = area * _uniform((n, CROP_ATTEMPTS), scale[0], scale[1], generator).double()
    aspect = torch.exp(_uniform((n, CROP_ATTEMPTS), float(log_ratio[0]), float(log_ratio[1]), generator)).double()
    w = torch.round(torch.sqrt(target * aspect)).long()
    h = torch.round(torch.sqrt(target / aspect)).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)
    found = fits.any(dim=1)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    # Placement: torch.randint(0, H - h + 1) per image, as floor(U * (H - h + 1)) with float64 uniforms.
    u_top = torch.rand(n, dtype=torch.float64, generator=generator)
    u_left = torch.rand(n, dtype=torch.float64, generator=generator)
    top = torch.floor(u_top * (height - h + 1).double()).long().clamp_(min=0)
    left = torch.floor(u_left * (width - w + 1).double()).long().clamp_(min=0)
    top, left = torch.minimum(top, height - h), torch.minimum(left, width - w)
    if not bool(found.all()):
        fh, fw = fallback_crop(height, width, ratio)
        top = torch.where(found, top, (height - fh) // 2)
        left = torch.where(found, left, (width - fw) // 2)
        h = torch.where(found, h, fh)
        w = torch.where(found, w, fw)
    return top, left, h, w


def fallback_crop(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """RandomResizedCrop's fallback (height, width) after 10 failed attempts: the central crop."""
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        return int(round(width / min(ratio))), width
    if in_ratio > max(ratio):
        return height, int(round(height * max(ratio)))
    return height, width


def sample_draws(n: int, aug: Augmentation, height: int, width: int, generator: torch.Generator,
                 *, random_crop: bool | None = None) -> AugmentDraws:
    """``n`` draws of the paper's augmentation: crop box, rotation angle, horizontal and vertical flips."""
    if random_crop if random_crop is not None else aug.random_crop:
        top, left, h, w = sample_crops(n, height, width, aug.crop_scale, aug.crop_ratio, generator)
    else:  # Resize of the whole image
        top, left = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)
        h, w = torch.full((n,), height, dtype=torch.long), torch.full((n,), width, dtype=torch.long)
    angle = _uniform(n, aug.rotation[0], aug.rotation[1], generator).double()
    hflip = torch.rand(n, generator=generator) < aug.hflip
    vflip = torch.rand(n, generator=generator) < aug.vflip
    return AugmentDraws(top=top, left=left, height=h, width=w, angle=angle, hflip=hflip, vflip=vflip)


def affine_matrices(draws: AugmentDraws, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per draw, two (2, 3) float32 matrices for ``affine_grid`` (normalised output coordinates in):

    ``theta`` maps to the normalised source image (crop + resize, rotation, flips composed);
    ``inner`` maps to the normalised coordinates of torchvision's intermediate resized crop, outside of
    which the rotation fills zeros.

    Derivation (pixel-centred coordinates u of the output, torchvision conventions): the flips give
    ``(s_h u, s_v v)``; the rotation by ``a`` degrees samples its input at ``[[cos a, -sin a], [sin a,
    cos a]] (u, v)`` about the centre; the resize of a crop (top i, left j, size h x w) to S x S samples the
    source at ``j + w/2 - 1/2 + (w/S) u``. In ``affine_grid``'s normalised coordinates this is
    ``g = diag(w/W, h/H) R diag(s_h, s_v) x + ((2j + w)/W - 1, (2i + h)/H - 1)``.
    """
    a = torch.deg2rad(torch.remainder(draws.angle.double(), 360.0))
    c, s = torch.cos(a), torch.sin(a)
    sh = torch.where(draws.hflip, -1.0, 1.0).double()
    sv = torch.where(draws.vflip, -1.0, 1.0).double()
    r00, r01, r10, r11 = c * sh, -s * sv, s * sh, c * sv
    ax, ay = draws.width.double() / width, draws.height.double() / height
    tx = (2.0 * draws.left + draws.width).double() / width - 1.0
    ty = (2.0 * draws.top + draws.height).double() / height - 1.0
    zero = torch.zeros_like(a)
    theta = torch.stack([torch.stack([ax * r00, ax * r01, tx], -1), torch.stack([ay * r10, ay * r11, ty], -1)], 1)
    inner = torch.stack([torch.stack([r00, r01, zero], -1), torch.stack([r10, r11, zero], -1)], 1)
    return theta.float(), inner.float()


MAX_MIP_LEVEL = 4
"""Coarsest antialiasing level: the source halved 4 times (a 16x downscale is filtered properly)."""


def mip_levels(draws: AugmentDraws, size: int) -> torch.Tensor:
    """Per draw, the antialiasing level ``log2(downscale factor)`` (0 when the crop is upsampled).

    torchvision's resize of a crop larger than the output low-pass filters it (antialias=True); a bilinear
    ``grid_sample`` does not, which matters for strong downscales (a 250 px crop to 32 px). The fused path
    samples a pyramid of antialiased half-size copies of the source instead and blends the two levels around
    this value per image (trilinear mip-mapping); the factor is the geometric mean of the two axes'.
    """
    factor = torch.sqrt(draws.width.double() * draws.height.double()) / size
    return torch.log2(factor).clamp_(0.0, MAX_MIP_LEVEL).float()


def augment_batch(images: torch.Tensor, theta: torch.Tensor, inner: torch.Tensor, size: int,
                  mean: torch.Tensor, std: torch.Tensor, *, level: torch.Tensor | None = None,
                  max_level: int | None = None, channels_last: bool = False) -> torch.Tensor:
    """Resample a batch of uint8 ``(B, H, W, 3)`` images once through their affine maps; normalise.

    The source is sampled bilinearly with edge replication (as torchvision's resize does at a crop that
    touches the border); where ``level`` (:func:`mip_levels`) is above 0 the sample is blended from
    antialiased half-, quarter-, ... size copies of the source (``max_level``: the highest level any image of
    the batch needs, known on the host so that nothing waits for the device). Pixels whose pre-image lies
    outside the intermediate resized crop are faded to zero over one pixel (the rotation's zero fill); then
    ``(x / 255 - mean) / std`` as in the plain path.
    """
    x = images.permute(0, 3, 1, 2).float()
    # affine_grid's output coordinates (align_corners=False), by broadcasting: cheaper than its bmm on a CPU.
    base = (torch.arange(size, device=x.device, dtype=torch.float32) * 2 + 1) / size - 1
    xs, ys = base.view(1, 1, size), base.view(1, size, 1)

    def coord(m: torch.Tensor, r: int) -> torch.Tensor:
        return m[:, r, 0, None, None] * xs + m[:, r, 1, None, None] * ys + m[:, r, 2, None, None]

    grid = torch.stack((coord(theta, 0), coord(theta, 1)), dim=-1)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if level is not None:
        top = int(math.ceil(float(level.max()))) if max_level is None else max_level
        if top > 0:
            out = out.mul_((1.0 - level).clamp_(min=0.0).view(-1, 1, 1, 1))
        for k in range(1, min(top, MAX_MIP_LEVEL) + 1):  # the hat weight of level k is 1 - |level - k|
            h, w = -(-x.shape[2] // 2**k), -(-x.shape[3] // 2**k)
            smaller = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
            weight = (1.0 - (level - k).abs()).clamp_(min=0.0).view(-1, 1, 1, 1)
            out.add_(F.grid_sample(smaller, grid, mode="bilinear", padding_mode="border",
                                   align_corners=False).mul_(weight))
    mask = coord(inner, 0).abs_().neg_().add_(1.0).mul_(size / 2).add_(0.5).clamp_(0.0, 1.0)
    mask.mul_(coord(inner, 1).abs_().neg_().add_(1.0).mul_(size / 2).add_(0.5).clamp_(0.0, 1.0))
    out = out.mul_(mask.unsqueeze(1)).div_(255.0).sub_(mean).div_(std)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 ``(B, 3, H, W)`` images to ``size`` x ``size`` with torchvision's kernel (antialiased,
    rounded to uint8): exactly what ``v2.Resize`` does to the plain path's evaluation images."""
    from torchvision.transforms.v2 import functional as TF  # noqa: N812

    return TF.resize(images, [size, size], antialias=True)


# ---------------------------------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------------------------------


@dataclass
class _Store:
    """A fold's images: on the device (``images`` a tensor) or in the memory-mapped cache (``rows``)."""

    key: str
    mode: str
    images: Any
    rows: np.ndarray


_TRAIN_STORE: list[_Store] = []
"""One resident training set per process, shared by the LR range test and training of a fold."""


def release_resident_images() -> None:
    """Drop the resident training images of this process (the next fold loads its own)."""
    _TRAIN_STORE.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.tobytes() if isinstance(part, np.ndarray) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def resolve_storage(requested: str, device: torch.device, nbytes: int) -> str:
    """``device`` or ``host`` for ``nbytes`` of images: the request, ``$BMBENCH_GPU_STORAGE``, or (auto) the
    device when they take at most 60 % of its free memory (shared among concurrent folds)."""
    choice = os.environ.get(STORAGE_ENV, "auto") if requested == "auto" else requested
    if choice not in ("auto", "device", "host"):
        raise BmbenchError(f"{STORAGE_ENV} must be auto, device or host, not {choice!r}")
    if choice != "auto":
        return choice
    if device.type != "cuda":
        return "device"  # host RAM is the device: load once, no per-batch gather
    free, _total = torch.cuda.mem_get_info(device)
    share = max(1, int(os.environ.get(CONCURRENT_ENV, "1") or 1))
    room = DEVICE_MEMORY_FRACTION * free / share
    if nbytes <= room:
        return "device"
    per = f" shared by {share} concurrent folds" if share > 1 else ""
    _note(f"the fold's images ({nbytes / 2**30:.1f} GiB) exceed {DEVICE_MEMORY_FRACTION:.0%} of the free device "
          f"memory{per} ({room / 2**30:.1f} GiB of {free / 2**30:.1f} GiB free): {HOST_FALLBACK} (slower; "
          f"fold.json records storage = host; {STORAGE_ENV}=device forces the device)")
    return "host"


def host_fallback_notes(log_text: str) -> list[str]:
    """The notes of :func:`resolve_storage` in a worker's output: why its images live in host memory."""
    return [line.strip()[len("bmbench: "):] for line in log_text.splitlines()
            if line.strip().startswith("bmbench: ") and HOST_FALLBACK in line]


def _gather(images: np.ndarray, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Rows of the memory-mapped cache, read in ascending order (sequential reads), returned in order
    (into ``out`` when given: e.g. the numpy view of a pinned buffer, so nothing is copied twice)."""
    order = np.argsort(rows, kind="stable")
    if out is None:
        out = np.empty((len(rows), *images.shape[1:]), dtype=images.dtype)
    out[order] = images[rows[order]]
    return out


def _host_rows(images: np.ndarray, rows: np.ndarray, pin: bool) -> torch.Tensor:
    """Rows gathered straight into a (pinned, on CUDA) host tensor: one copy, and a non-blocking upload.

    Pinned blocks come from PyTorch's caching host allocator, which does not hand a block out again before
    the asynchronous copy that reads it has finished."""
    buffer = torch.empty((len(rows), *images.shape[1:]), dtype=torch.uint8, pin_memory=pin)
    _gather(images, rows, buffer.numpy())
    return buffer


# ---------------------------------------------------------------------------------------------------
# The data path
# ---------------------------------------------------------------------------------------------------


class GpuDataPath:
    """Cached images on the device, batched augmentation on the device; :class:`PlainDataPath` semantics."""

    name = "gpu"

    def __init__(self, recipe: Recipe, cache: ImageCache, num_classes: int, *, seed: int, fold: int,
                 device: torch.device | str, dist: ProcessPlace | None = None, storage: str = "auto",
                 channels_last: bool = False, rows: np.ndarray | None = None) -> None:
        """``rows[p]`` is the cache row of position ``p`` (default: positions are cache rows, as for runs)."""
        self.recipe = recipe
        self.cache = cache
        self.num_classes = num_classes
        self.seed = seed
        self.fold = fold
        self.device = torch.device(device)
        self.dist = dist
        self.requested_storage = storage
        self.channels_last = channels_last
        self.rows = np.arange(len(cache), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        if self.rows.size and (self.rows.min() < 0 or self.rows.max() >= len(cache)):
            raise RunFailure("GpuDataPath: a row index lies outside the image cache")
        self.labels = np.asarray(cache.labels, dtype=np.int64)[self.rows]
        self.batch_size = per_process_batch(recipe.batch_size, dist.world_size if dist else 1)
        self.height, self.width = EXPECTED_SHAPE[0], EXPECTED_SHAPE[1]
        aug = recipe.augmentation
        self.train_size = aug.crop_size if aug.random_crop else recipe.eval_size
        mean, std = channel_stats(recipe.normalization)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._eval: _Store | None = None
        self.storage: str | None = None

    # -- what the loop calls -------------------------------------------------------------------------

    def train_steps(self, positions: np.ndarray) -> int:
        """Batches per epoch and process (the plain path's count: drop_last=False)."""
        world = self.dist.world_size if self.dist else 1
        per_process = -(-len(positions) // world)
        return -(-per_process // self.batch_size)

    def train_batches(self, positions: np.ndarray, epoch: int, stream: int = 0) -> TrainEpoch:
        """One epoch: the plain path's order (same seed, same draws), augmented on the device."""
        positions = np.asarray(positions, dtype=np.int64)
        n = len(positions)
        seed = epoch_seed(self.seed, self.fold, epoch, stream)
        labels = self.labels[positions]
        weights = (torch.as_tensor(class_balanced_weights(labels, self.num_classes), dtype=torch.double)
                   if self.recipe.sampler == "class_balanced" else None)
        generator = torch.Generator().manual_seed(seed)
        order = epoch_draws(weights, n, generator)
        draws = sample_draws(n, self.recipe.augmentation, self.height, self.width, generator)
        rank, world = (self.dist.rank, self.dist.world_size) if self.dist else (0, 1)
        mine = torch.tensor(ShardSampler(torch.arange(n), rank, world).indices, dtype=torch.long)
        local = order[mine]
        mine_draws = draws.select(mine)
        theta, inner = affine_matrices(mine_draws, self.height, self.width)
        return TrainEpoch(self, self._train_store(positions), local, torch.as_tensor(labels)[local], theta, inner,
                          mip_levels(mine_draws, self.train_size))

    def eval_batches(self, positions: np.ndarray) -> EvalBatches:
        """Sequential batches in ``positions`` order, resized once per evaluation set and kept as uint8."""
        return EvalBatches(self, self._eval_store(np.asarray(positions, dtype=np.int64)), positions)

    # -- storage -------------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """What fold.json records about the data path that ran."""
        return {"name": self.name, "storage": self.storage or "not loaded", "cache": self.cache.checksum,
                "cache_folder": str(self.cache.folder)}

    def _train_store(self, positions: np.ndarray) -> _Store:
        rows = self.rows[positions]
        key = _digest(self.cache.checksum, self.device, rows, self.requested_storage)
        if _TRAIN_STORE and _TRAIN_STORE[0].key == key:
            self.storage = _TRAIN_STORE[0].mode
            return _TRAIN_STORE[0]
        release_resident_images()  # free the previous fold's images before loading this one's
        per_image = int(np.prod(EXPECTED_SHAPE))
        eval_share = 0.5 * (self.recipe.eval_size / self.height) ** 2  # room for the validation set
        mode = resolve_storage(self.requested_storage, self.device, int(len(rows) * per_image * (1 + eval_share)))
        images: Any = self.cache.images
        if mode == "device":
            images = torch.empty((len(rows), *EXPECTED_SHAPE), dtype=torch.uint8, device=self.device)
            pin = self.device.type == "cuda"
            for start in range(0, len(rows), _LOAD_CHUNK):
                chunk = _host_rows(self.cache.images, rows[start:start + _LOAD_CHUNK], pin)
                images[start:start + len(chunk)].copy_(chunk, non_blocking=True)
        store = _Store(key=key, mode=mode, images=images, rows=rows)
        _TRAIN_STORE.append(store)
        self.storage = mode
        return store

    def _eval_store(self, positions: np.ndarray) -> _Store:
        rows = self.rows[positions]
        key = _digest(self.cache.checksum, rows, self.recipe.eval_size)
        if self._eval is not None and self._eval.key == key:
            return self._eval
        self._eval = None  # one evaluation set at a time: validation during training, then the test part
        size = self.recipe.eval_size
        mode = self.storage or resolve_storage(self.requested_storage, self.device, len(rows) * 3 * size * size)
        pin = self.device.type == "cuda"
        # host mode on CUDA: the resized set lives in pinned memory, so each batch uploads without a copy
        out = torch.empty((len(rows), 3, size, size), dtype=torch.uint8,
                          device=self.device if mode == "device" else "cpu", pin_memory=pin and mode != "device")
        for start in range(0, len(rows), _LOAD_CHUNK):
            chunk = _host_rows(self.cache.images, rows[start:start + _LOAD_CHUNK], pin)
            chunk = chunk.to(self.device, non_blocking=True) if pin else chunk
            resized = resize_uint8(chunk.permute(0, 3, 1, 2), size)
            out[start:start + len(resized)].copy_(resized, non_blocking=mode == "device")
        self._eval = _Store(key=key, mode=mode, images=out, rows=rows)
        return self._eval

    def _normalise(self, images_u8: torch.Tensor) -> torch.Tensor:
        out = images_u8.float().div_(255.0).sub_(self.mean).div_(self.std)
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out


class TrainEpoch:
    """An epoch's batches: ``len()`` steps; iterating gathers, augments and normalises on the device."""

    def __init__(self, path: GpuDataPath, store: _Store, local: torch.Tensor, labels: torch.Tensor,
                 theta: torch.Tensor, inner: torch.Tensor, level: torch.Tensor) -> None:
        self.path, self.store = path, store
        self.local, self.labels, self.theta, self.inner, self.level = local, labels, theta, inner, level

    def __len__(self) -> int:
        return -(-len(self.local) // self.path.batch_size)

    def _host_batches(self) -> Iterator[torch.Tensor]:
        """Pinned host batches gathered from the memory-mapped cache by a background thread."""
        from bmbench.parallel import prefetch

        rows = self.store.rows[self.local.numpy()]
        bsz, pin = self.path.batch_size, self.path.device.type == "cuda"
        gathered = (_host_rows(self.store.images, rows[start:start + bsz], pin) for start in range(0, len(rows), bsz))
        for item in prefetch(gathered, _PREFETCH):
            yield item.to(self.path.device, non_blocking=True)

    def __iter__(self) -> Iterator[Batch]:
        path, device, bsz = self.path, self.path.device, self.path.batch_size
        labels = self.labels.to(device, non_blocking=True)
        theta = self.theta.to(device, non_blocking=True)
        inner = self.inner.to(device, non_blocking=True)
        level = self.level.to(device, non_blocking=True)
        # the highest antialiasing level of each batch, on the host (no device synchronisation)
        top = [int(math.ceil(float(self.level[s:s + bsz].max()))) for s in range(0, len(self.level), bsz)]
        if self.store.mode == "device":
            local = self.local.to(device, non_blocking=True)
            source: Iterator[torch.Tensor] = (self.store.images.index_select(0, local[s:s + bsz])
                                              for s in range(0, len(local), bsz))
        else:
            source = self._host_batches()
        for k, images in enumerate(source):
            s = slice(k * bsz, k * bsz + images.shape[0])
            yield (augment_batch(images, theta[s], inner[s], path.train_size, path.mean, path.std, level=level[s],
                                 max_level=top[k], channels_last=path.channels_last), labels[s])


class EvalBatches:
    """Evaluation batches (the plain path's batch size: ``max(batch_size, 64)``), in positions order."""

    def __init__(self, path: GpuDataPath, store: _Store, positions: np.ndarray) -> None:
        self.path, self.store = path, store
        self.labels = torch.as_tensor(path.labels[np.asarray(positions, dtype=np.int64)])
        self.batch = max(path.recipe.batch_size, 64)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch)

    def __iter__(self) -> Iterator[Batch]:
        device = self.path.device
        labels = self.labels.to(device, non_blocking=True)
        images = self.store.images
        for start in range(0, len(labels), self.batch):
            chunk = images[start:start + self.batch]
            if chunk.device != device:  # host storage: a slice of the pinned evaluation set, uploaded as is
                chunk = chunk.to(device, non_blocking=True)
            yield self.path._normalise(chunk), labels[start:start + self.batch]


# ---------------------------------------------------------------------------------------------------
# Choosing a path
# ---------------------------------------------------------------------------------------------------


def resolve_data_path(choice: str, device: torch.device) -> str:
    """The recipe's ``data_path`` for ``device``: ``auto`` is the GPU-resident path on CUDA, plain elsewhere."""
    if choice == "auto":
        return "gpu" if device.type == "cuda" else "plain"
    if choice not in ("plain", "gpu"):
        raise BmbenchError(f"recipe.data_path must be auto, plain or gpu, not {choice!r}")
    return choice


def _note(message: str) -> None:
    print(f"bmbench: {message}", file=sys.stderr, flush=True)


def make_datapath(recipe: Recipe, paths: Sequence[Path], split: Any, num_classes: int, *, device: torch.device,
                  seed: int, fold: int, dist: ProcessPlace | None = None,
                  channels_last: bool = False) -> PlainDataPath | GpuDataPath:
    """The data path the recipe asks for on ``device``; the GPU path builds the image cache on first use.

    With ``data_path = "auto"`` a cache that cannot be built (e.g. no disk space) falls back to the plain
    path with a note; with ``"gpu"`` it is an error. The plain path reads the pixels from an up-to-date cache
    when one exists (identical pixels, no decoding; it never builds one: ``bmbench data cache`` does).
    """
    from bmbench.data.cache import IMAGES_FILE, cache_status, ensure_cache, open_cache, rows_for_split

    choice = resolve_data_path(recipe.data_path, device)
    rows = rows_for_split(split, paths)
    if choice == "gpu":
        try:
            if cache_status(rows) != "ok":
                _note(f"decoding {len(rows):,} images once into the image cache (`bmbench data cache` does this "
                      "ahead of time) ...")
            cache = ensure_cache(rows)
        except (BmbenchError, OSError) as exc:
            if recipe.data_path == "gpu":
                raise
            _note(f"GPU data path unavailable ({getattr(exc, 'message', exc)}); using the plain DataLoader")
        else:
            return GpuDataPath(recipe, cache, num_classes, seed=seed, fold=fold, device=device, dist=dist,
                               channels_last=channels_last)
    found = open_cache(rows)
    return PlainDataPath(recipe, paths, split.labels, num_classes, seed=seed, fold=fold,
                         pin_memory=device.type == "cuda", dist=dist,
                         cache=CachedPixels(found.folder / IMAGES_FILE) if found is not None else None)


def describe_datapath(datapath: Any) -> dict[str, Any]:
    """``{"name": "plain" | "gpu", ...}`` for fold.json (the plain path also says where its pixels came from)."""
    if isinstance(datapath, GpuDataPath):
        return datapath.describe()
    cache = getattr(datapath, "cache", None)
    return {"name": getattr(datapath, "name", "plain"), "workers": getattr(datapath, "workers", None),
            "pixels": f"image cache {cache.images_file.parent}" if cache is not None else "decoded from the files"}

