"""The per-batch step of ``bmbench embed``, without pydantic: preprocess, forward, check, copy back.

Why a module of its own: the device check's embed stage (:func:`bmbench.bench.embed.device_check`) must
time exactly what ``bmbench embed`` executes per batch on a GPU machine that has torch and timm but no
pydantic, so this module imports neither the records, the submissions nor the feature store.
:mod:`bmbench.features.embed` wraps it with the image source, the store and the manifest.

The step: uint8 ``N x H x W x 3`` pixels (pinned on CUDA, prefetched by a thread) are copied to the device
asynchronously, preprocessed there (:func:`batch_transform`), run through the encoder (eval, inference
mode; bf16 autocast + channels_last on CUDA), checked (finite, ``(N, D)``, within float16's range) and
returned as float16 on the host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from bmbench.errors import BmbenchError

INVALID = 2


class PreprocessLike(Protocol):
    """What :func:`batch_transform` reads (``records.features.Preprocessing`` is the recorded form)."""

    @property
    def size(self) -> int: ...
    @property
    def resize(self) -> int: ...
    @property
    def interpolation(self) -> str: ...
    @property
    def mean(self) -> tuple[float, float, float]: ...
    @property
    def std(self) -> tuple[float, float, float]: ...


def batch_transform(pre: PreprocessLike) -> Callable[[Any], Any]:
    """uint8 ``N x H x W x 3`` tensor -> normalised float32 ``N x 3 x size x size`` on the same device.

    Resize the shorter side to ``pre.resize``, centre-crop ``pre.size``, normalise. On CUDA it resizes in
    float32 (``F.interpolate``, antialiased); on the CPU it resizes the uint8 pixels with torchvision's
    kernels first (faster; under one grey level of difference before normalisation).
    """
    import torch
    import torch.nn.functional as F

    mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32).view(1, 3, 1, 1)
    antialias = pre.interpolation != "nearest"

    def apply(images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2)
        h, w = x.shape[-2:]
        scale = pre.resize / min(h, w)
        out_h, out_w = max(pre.size, round(h * scale)), max(pre.size, round(w * scale))
        resize = (out_h, out_w) != (h, w)
        if resize and x.device.type == "cpu":
            # On the CPU resize the uint8 pixels (torchvision's vectorised kernels), then convert the small
            # image: converting 250 x 250 floats first costs more than the encoder for small inputs. The
            # permuted batch is already channels-last, the layout those kernels want: making it contiguous
            # first cost 10x the resize itself (identical output).
            from torchvision.transforms.v2 import InterpolationMode
            from torchvision.transforms.v2 import functional as TF

            x = TF.resize(x, [out_h, out_w], interpolation=InterpolationMode(pre.interpolation),
                          antialias=antialias).contiguous()
            resize = False
        x = x.to(torch.float32).div_(255.0)
        if resize:
            kwargs = {"antialias": True, "align_corners": False} if antialias else {}
            x = F.interpolate(x, size=(out_h, out_w), mode=pre.interpolation, **kwargs)
            if pre.interpolation == "bicubic":
                x = x.clamp_(0.0, 1.0)
        top, left = (out_h - pre.size) // 2, (out_w - pre.size) // 2
        x = x[..., top:top + pre.size, left:left + pre.size]
        return (x - mean.to(x.device)) / std.to(x.device)

    return apply


def prepare_module(module: Any, device: Any) -> Any:
    """The encoder on ``device``, channels_last on CUDA (what :func:`forward_features` expects)."""
    import torch

    module = module.to(device)
    if device.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    return module


def forward_features(module: Any, x: Any, device: Any) -> Any:
    """The encoder's features of a preprocessed batch (inference mode; bf16 autocast + channels_last on CUDA)."""
    import torch

    with torch.inference_mode():
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return module(x)
        return module(x)


def check_features(out: Any, n: int, spec: str, first_row: int, image_ids: Sequence[str]) -> np.ndarray:
    """``out`` as a float16 host array, or exit 2 naming the images if it is not finite ``(n, D)`` features."""
    import torch

    if not isinstance(out, torch.Tensor):
        raise BmbenchError(f"encoder {spec} returned {type(out).__name__}, not a tensor of features (N, D); a "
                           "model.py encoder must return pooled features", exit_code=INVALID)
    if out.ndim != 2 or out.shape[0] != n:
        raise BmbenchError(f"encoder {spec} returned shape {tuple(out.shape)} for a batch of {n} images; it must "
                           "return pooled features (N, D) — pool or flatten in build_encoder()", exit_code=INVALID)
    feats = out.float()
    bad = ~torch.isfinite(feats).all(dim=1)
    half = feats.to(torch.float16)
    bad |= ~torch.isfinite(half).all(dim=1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten().tolist()
        ids = [str(image_ids[first_row + r]) for r in rows[:5]]
        raise BmbenchError(f"encoder {spec} produced NaN/infinite features (or values beyond float16's range "
                           f"65504) for {len(rows)} image(s) of this batch, e.g. {', '.join(ids)}; fix the encoder "
                           "(its weights, or normalise its output)", exit_code=INVALID)
    return half.cpu().numpy()


def embed_batch(module: Any, transform: Callable[[Any], Any], block: Any, device: Any, *, spec: str,
                first_row: int, image_ids: Sequence[str]) -> np.ndarray:
    """One batch of ``bmbench embed``: host uint8 pixels -> device -> preprocess -> forward -> float16 on host."""
    x = transform(block.to(device, non_blocking=True))
    return check_features(forward_features(module, x, device), len(block), spec, first_row, image_ids)


def prefetch(gen: Iterator[tuple[int, Any]], pin: bool, depth: int = 2) -> Iterator[tuple[int, Any]]:
    """``(first_row, batch)`` pairs read ``depth`` batches ahead by a thread (:func:`bmbench.parallel.prefetch`),
    which also pins each batch with ``pin``, so the copy to the device is asynchronous."""
    from bmbench.parallel import prefetch as ahead

    return ahead(((a, t.pin_memory() if pin else t) for a, t in gen), depth)
