"""The frozen-feature pieces tests/test_features_embed.py and tests/test_probe_run.py share: tiny encoders,
submission writers, fake Hugging Face / torch caches and the synthetic image cache.

One definition each (they were copied between the two files). The ``image_cache`` fixture reaches every test
through ``pytest_plugins`` in tests/conftest.py; the rest are plain functions. torch is imported where used,
so loading this plugin costs nothing to tests that do not use it.
"""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path
from typing import Any

import pytest

POOL_ENCODER = """
import torch
from torch import nn

def build_encoder():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
"""
"""A seeded model.py encoder: 8 pooled features."""

BAD_ENCODER = """
import torch
from torch import nn

class Nan(nn.Module):
    def forward(self, x):
        return x * float("nan")

class Huge(nn.Module):
    def forward(self, x):
        return x * 0 + 1e6

def build_encoder():
    {body}
"""
"""A model.py whose ``build_encoder`` body is ``{body}`` (``Nan`` and ``Huge`` make non-finite / too-large output)."""

TINY_FT_MODEL = """
from torch import nn

def build_model(num_classes):
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, num_classes))
"""


def frozen_submission(root: Path, name: str, encoder: str, *, protocol: str = "linear", preprocess: str | None = None,
                      probe: str = "", model_py: str | None = None, extra: str = "") -> Path:
    """A frozen-feature submission folder; ``preprocess`` is the body of its ``[preprocess]`` table (None: none)."""
    folder = root / name
    folder.mkdir(parents=True)
    text = textwrap.dedent(f"""\
        name = "{name}"
        authors = ["bmbench tests"]
        description = "a tiny frozen-feature submission for tests"
        protocol = "{protocol}"
        encoder = "{encoder}"
        """) + (f"{extra}\n" if extra else "")
    (folder / "submission.toml").write_text(text + (f"[preprocess]\n{preprocess}\n" if preprocess is not None else "")
                                            + probe, encoding="utf-8")
    if model_py is not None:
        (folder / "model.py").write_text(model_py, encoding="utf-8")
    return folder


def tiny_ft_submission(root: Path, recipe: str = "") -> Path:
    """``tiny_ft``: a 6-channel model.py network fine-tuned at 16 px (a run: encoder's source); ``recipe``: extra
    ``[recipe]`` lines."""
    folder = root / "tiny_ft"
    folder.mkdir(parents=True)
    (folder / "submission.toml").write_text(
        'name = "tiny_ft"\nauthors = ["bmbench tests"]\ndescription = "a tiny fine-tuned network"\n'
        f'backbone = "model.py"\ninit = "random"\n[recipe]\n{recipe}eval_size = 16\n[recipe.augmentation]\n'
        "crop_size = 16\n", encoding="utf-8")
    (folder / "model.py").write_text(TINY_FT_MODEL, encoding="utf-8")
    return folder


def fake_hub_repo(hf_home: Path, repo: str, files: dict[str, bytes]) -> Path:
    """A Hugging Face cache entry exactly as ``huggingface_hub`` lays it out (refs/main -> snapshots/<rev>/)."""
    revision = hashlib.sha1(repo.encode()).hexdigest()
    base = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(revision)
    snapshot = base / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return snapshot


def safetensors_bytes(module: Any, tmp: Path) -> bytes:
    """``module``'s state dict as the bytes of a ``.safetensors`` file."""
    from safetensors.torch import save_file

    path = tmp / "w.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    return path.read_bytes()


def torchvision_weights(torch_home: Path, seed: int = 0) -> Path:
    """Random mobilenet_v3_small weights where torchvision's cache expects its ImageNet file."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    cached = torch_home / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth"
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), cached)
    return cached


def offline_caches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No network; empty Hugging Face and torch caches and a private feature cache under ``tmp_path``."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("BMBENCH_FEATURES", str(tmp_path / "features"))
    return tmp_path


@pytest.fixture(scope="module")
def image_cache() -> Path:
    """The synthetic split's uint8 image cache (``bmbench data cache``): later embeds read it, not the JPEGs."""
    from bmbench.data.cache import ensure_cache, rows_for_split
    from bmbench.data.layout import scan_data
    from bmbench.data.source import resolve_data
    from bmbench.splits.store import load_split

    split = load_split("synthetic-cv5-v1")
    index = scan_data(resolve_data("synthetic"))
    return ensure_cache(rows_for_split(split, index.paths_for(split.image_ids, split.name))).folder
