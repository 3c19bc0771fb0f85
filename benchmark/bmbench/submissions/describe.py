"""The resolved description of a submission (``bmbench submissions describe``), without any download."""

from __future__ import annotations

from typing import Any

from bmbench.classes import NUM_CLASSES
from bmbench.submissions.schema import LoadedSubmission


def _about(loaded: LoadedSubmission) -> dict[str, Any]:
    sub = loaded.submission
    return {"authors": sub.authors, "description": sub.description, "licence": sub.licence, "code_url": sub.code_url,
            "pretraining_data": sub.pretraining_data, "folder": str(loaded.folder), "digest": loaded.digest}


def describe_frozen(loaded: LoadedSubmission) -> dict[str, Any]:
    """A frozen-feature submission: its encoder, any ``[preprocess]`` override and the probes it runs (the
    variants and the settings of each protocol run); no training recipe, since nothing is trained."""
    from bmbench.protocols import ProbeConfig

    sub = loaded.submission
    config = sub.probe or ProbeConfig()
    protocols = config.protocols_for(sub.protocol)
    settings = config.model_dump(mode="json")
    probe = {"protocols": list(protocols), "variants": config.variants(sub.protocol),
             **{name: settings[name] for name in protocols}}
    return {"name": sub.name, "protocol": sub.protocol, "encoder": sub.encoder,
            "preprocess": sub.preprocess.model_dump(mode="json", exclude_none=True) if sub.preprocess else None,
            **_about(loaded), "probe": probe}


def describe_submission(loaded: LoadedSubmission) -> dict[str, Any]:
    """name, backbone, init, params (trainable, 21-class head), imagenet_weights, recipe and its digest;
    for a frozen-feature submission :func:`describe_frozen` instead.

    Neural backbones are built with parameters on the ``meta`` device, so even ViT-L/32 costs no memory.
    """
    sub = loaded.submission
    if sub.kind == "frozen":  # the encoder itself (weights, dimension) is described by `bmbench embed`
        return describe_frozen(loaded)
    params: int | None = None
    weights: str | None = None
    if sub.kind != "baseline":
        from bmbench.models.backbones import build_backbone, count_parameters, imagenet_weights_name

        params = count_parameters(build_backbone(sub.backbone, NUM_CLASSES, loaded.folder, device="meta"))
        if sub.init.startswith("imagenet"):
            weights = imagenet_weights_name(sub.backbone) or (f"timm:{sub.arch}" if sub.kind == "timm" else None)
    return {
        "name": sub.name,
        "backbone": sub.backbone,
        "init": sub.init,
        "protocol": sub.protocol,
        "params": params,
        "imagenet_weights": weights,
        **_about(loaded),
        "recipe_digest": sub.recipe.digest(),
        "recipe": sub.recipe.model_dump(mode="json"),
    }
