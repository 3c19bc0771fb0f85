"""Optional dependencies by extra: a command that needs one says which to install, instead of a traceback.

The core install (``pip install bmbench``) scores, verifies splits, builds and checks the leaderboard and
reads submissions. Training needs ``[train]``, Grad-CAM ``[explain]``, in-domain pre-training ``[pretrain]``;
``[all]`` is all three. :func:`require` is called at the top of the library entry points that need them.
"""

from __future__ import annotations

import importlib.util

from bmbench.errors import BmbenchError

EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("torch", "torchvision", "timm", "sklearn", "cv2", "torch_lr_finder", "matplotlib"),
    "explain": ("pytorch_grad_cam",),
    "pretrain": ("datasets", "h5py"),
}
"""The import names each extra provides (the distributions are listed in pyproject.toml)."""


class MissingExtraError(BmbenchError):
    """A command needs an optional dependency that is not installed (a usage problem: exit status 2)."""

    exit_code = 2


def missing(module: str) -> bool:
    """Whether ``module`` cannot be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


def require(module: str, extra: str, what: str = "this command") -> None:
    """Raise a clear exit-2 error naming the extra to install when ``module`` is not importable."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    if missing(module):
        raise MissingExtraError(
            f"{what} needs the [{extra}] extra ({module} is not installed): pip install 'bmbench[{extra}]' "
            "(or 'bmbench[all]' for every command)"
        )


def require_all(extra: str, what: str = "this command") -> None:
    """:func:`require` for every module of ``extra``."""
    for module in EXTRAS[extra]:
        require(module, extra, what)


def extra_for(module: str | None) -> str | None:
    """The extra that provides top-level module ``module`` (``torch.nn`` -> ``train``), or None."""
    top = (module or "").partition(".")[0]
    return next((extra for extra, modules in EXTRAS.items() if top in modules), None)


def missing_extra_error(err: ModuleNotFoundError) -> MissingExtraError | None:
    """The clear error for an import of an optional dependency that failed, or None for any other module."""
    extra = extra_for(err.name)
    if extra is None:
        return None
    return MissingExtraError(f"this command needs the [{extra}] extra ({err.name} is not installed): "
                             f"pip install 'bmbench[{extra}]' (or 'bmbench[all]' for every command)")
