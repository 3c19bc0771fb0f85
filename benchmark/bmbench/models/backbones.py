"""Building a submission's network: torchvision or timm by name, or the submission's own ``model.py``.

The classifier head is replaced by ``num_classes`` linear units (the paper: "we removed the last fully
connected layer and used 21 linear units"). Building never downloads anything: weights are applied
afterwards by :mod:`bmbench.models.init`. Build with ``device="meta"`` to count parameters of large
models without allocating memory.
"""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from torch import nn

from bmbench.errors import BmbenchError
from bmbench.submissions.schema import BACKBONE_RE, MODEL_FILE


@cache
def paper_backbones() -> dict[str, dict[str, Any]]:
    """The paper's torchvision backbones and their pinned ImageNet weights (``resources/backbones.toml``)."""
    text = resources.files("bmbench.resources").joinpath("backbones.toml").read_text(encoding="utf-8")
    return dict(tomllib.loads(text)["torchvision"])


def imagenet_weights_name(backbone: str) -> str | None:
    """The torchvision weights enum (``ResNet152_Weights.IMAGENET1K_V2``) for an ImageNet init, or None.

    The paper's four backbones are pinned; other torchvision models use their ``DEFAULT`` weights.
    """
    kind, _, arch = backbone.partition(":")
    if kind != "torchvision":
        return None
    if arch in paper_backbones():
        return str(paper_backbones()[arch]["imagenet_weights"])
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        return None
    return f"{enum.__name__}.{enum.DEFAULT.name}"


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the last ``nn.Linear`` of a torchvision model for a fresh ``num_classes`` one."""
    last_name = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_name = name
    if last_name is None:
        raise BmbenchError("the model has no nn.Linear classifier head to replace")
    parent_name, _, child = last_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    new.to(device=old.weight.device, dtype=old.weight.dtype)
    setattr(parent, child, new)
    return model


def head_name(model: nn.Module) -> str:
    """Qualified name of the classifier head (the last ``nn.Linear``); its weights are dropped across tasks."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise BmbenchError("the model has no nn.Linear classifier head")
    return names[-1]


def _torchvision(arch: str, num_classes: int | None) -> nn.Module:
    import torchvision

    try:
        model = torchvision.models.get_model(arch, weights=None)
    except ValueError:
        raise BmbenchError(
            f"unknown torchvision model {arch!r}; see torchvision.models.list_models() for the names"
        ) from None
    return model if num_classes is None else replace_head(model, num_classes)


def _timm(arch: str, num_classes: int | None) -> nn.Module:
    import timm

    if not timm.is_model(arch):
        raise BmbenchError(f"unknown timm model {arch!r}; see timm.list_models() for the names")
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    return timm.create_model(arch, pretrained=False, **kwargs)


def _model_py(folder: Path, num_classes: int) -> nn.Module:
    path = folder / MODEL_FILE
    from bmbench import usercode  # the user's failures are reported at their file and line (exit 2)

    module = usercode.import_file(path, f"bmbench_submission_{folder.name}")
    build = getattr(module, "build_model", None)
    if not callable(build):
        raise BmbenchError(f"{path}: must define build_model(num_classes) -> torch.nn.Module")
    model = usercode.call(path, "build_model", build, num_classes)
    if not isinstance(model, nn.Module):
        raise BmbenchError(f"{path}: build_model returned {type(model).__name__}, not a torch.nn.Module")
    return model


@contextlib.contextmanager
def _parameters_on(device: str) -> Iterator[None]:
    """Create every new parameter on ``device``; ``"meta"`` allocates nothing.

    Unlike ``with torch.device("meta")`` this leaves plain tensor arithmetic alone (RegNet's builder
    computes its block widths with tensors and needs real values).
    """
    if device == "cpu":
        yield
        return
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None:
            module._parameters[name] = nn.Parameter(param.to(device), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def build_backbone(backbone: str, num_classes: int | None, folder: Path | None = None,
                   device: str = "cpu") -> nn.Module:
    """The network ``backbone`` names (``torchvision:<name>``, ``timm:<name>``, or ``model.py`` in ``folder``)
    with a ``num_classes`` head (``None``: the architecture's own head).

    Plain arguments, so pre-training and benchmarks build models without a submission. No weights are
    loaded. ``device="meta"`` builds the structure without allocating parameters (for counting parameters
    of large models); anything else builds on the CPU.
    """
    if not BACKBONE_RE.fullmatch(backbone):
        raise BmbenchError(f"unknown backbone {backbone!r}: expected torchvision:<name>, timm:<name> or model.py",
                           exit_code=2)
    kind, _, arch = backbone.partition(":")
    with _parameters_on(device):
        if kind == "torchvision":
            return _torchvision(arch, num_classes)
        if kind == "timm":
            return _timm(arch, num_classes)
        if kind == MODEL_FILE:
            if num_classes is None:
                raise BmbenchError("a model.py backbone has no architecture head to keep; pass num_classes")
            if folder is None:
                raise BmbenchError("a model.py backbone needs the submission folder that holds model.py")
            return _model_py(Path(folder), num_classes)
    raise BmbenchError(f"{backbone} is a baseline, not a neural network", exit_code=2)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
