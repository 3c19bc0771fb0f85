"""The resolved description of a submission (``bmbench submissions describe``), without any download."""

from __future__ import annotations

from typing import Any

from bmbench.classes import NUM_CLASSES
from bmbench.submissions.schema import LoadedSubmission


def describe_submission(loaded: LoadedSubmission) -> dict[str, Any]:
    """name, backbone, init, params (trainable, 21-class head), imagenet_weights, recipe and its digest.

    Neural backbones are built with parameters on the ``meta`` device, so even ViT-L/32 costs no memory.
    """
    sub = loaded.submission
    params: int | None = None
    weights: str | None = None
    if sub.kind not in ("baseline", "frozen"):  # a frozen-feature encoder is described by `bmbench embed`
        from bmbench.models.backbones import build_backbone, count_parameters, imagenet_weights_name

        params = count_parameters(build_backbone(sub.backbone, NUM_CLASSES, loaded.folder, device="meta"))
        if sub.init.startswith("imagenet"):
            weights = imagenet_weights_name(sub.backbone) or (f"timm:{sub.arch}" if sub.kind == "timm" else None)
    return {
        "name": sub.name,
        "backbone": sub.backbone,
        "init": sub.init,
        "protocol": sub.protocol,
        "encoder": sub.encoder,
        "params": params,
        "imagenet_weights": weights,
        "authors": sub.authors,
        "description": sub.description,
        "licence": sub.licence,
        "code_url": sub.code_url,
        "pretraining_data": sub.pretraining_data,
        "folder": str(loaded.folder),
        "digest": loaded.digest,
        "recipe_digest": sub.recipe.digest(),
        "recipe": sub.recipe.model_dump(mode="json"),
    }
