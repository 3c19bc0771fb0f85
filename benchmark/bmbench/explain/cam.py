"""Grad-CAM maps with the grad-cam package (pytorch_grad_cam), in float32, with the hooks released after use.

The paper used this package (its ref. 15). Maps come back at the model's input size, scaled to 0..1 per
image by the package; they are computed in float32 (a bf16 model would give coarse, sometimes NaN maps) and
the forward/gradient hooks the package registers are removed when the call returns, even on an error, so a
model explained once behaves exactly as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from bmbench.explain.targets import CamTarget


def grad_cam_maps(model: nn.Module, target: CamTarget, images: torch.Tensor, classes: Sequence[int],
                  batch_size: int = 16) -> np.ndarray:
    """Grad-CAM of ``classes[i]`` for ``images[i]``: float32 array (N, H, W) in 0..1, H x W = the input size.

    ``images`` are normalised model inputs (N, 3, H, W). The model is put in eval mode and float32 on its
    current device; its parameters' ``requires_grad`` flags are left as they are.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if len(classes) != len(images):
        raise ValueError(f"{len(images)} images but {len(classes)} target classes")
    model.float().eval()
    device = next(model.parameters()).device
    out: list[np.ndarray] = []
    with GradCAM(model=model, target_layers=[target.module], reshape_transform=target.reshape) as cam:
        try:
            for start in range(0, len(images), batch_size):
                batch = images[start:start + batch_size].to(device=device, dtype=torch.float32)
                targets = [ClassifierOutputTarget(int(c)) for c in classes[start:start + batch_size]]
                out.append(np.asarray(cam(input_tensor=batch, targets=targets), dtype=np.float32))
        finally:
            cam.activations_and_grads.release()  # also done by __exit__; explicit for older grad-cam versions
    model.zero_grad(set_to_none=True)
    return np.concatenate(out) if out else np.zeros((0, *images.shape[2:]), dtype=np.float32)


def resize_map(cam_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A map resized (bilinear) to ``size`` = (height, width), clipped to 0..1."""
    from PIL import Image

    h, w = size
    image = Image.fromarray(np.ascontiguousarray(cam_map, dtype=np.float32))  # mode "F"
    resized = np.asarray(image.resize((w, h), Image.BILINEAR))
    return np.clip(resized, 0.0, 1.0).astype(np.float32)


def overlay(image: np.ndarray, cam_map: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """The heat map (JET colours, red = high) blended over an RGB uint8 image; the map is resized to the image."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    resized = resize_map(cam_map, image.shape[:2])
    return show_cam_on_image(image.astype(np.float32) / 255.0, resized, use_rgb=True, image_weight=image_weight)
