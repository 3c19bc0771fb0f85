"""Initialisations through the real loading paths, offline, with stand-in weight files in temporary caches."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from bmbench.errors import BmbenchError
from bmbench.models.backbones import build_backbone, head_name
from bmbench.models.init import CheckpointRef, build_initialised_model, sha256_file
from bmbench.submissions.schema import load_submission

ARCH = "mobilenet_v3_small"  # small torchvision model with an nn.Linear head and ImageNet weights


def _build(loaded, num_classes: int):
    """The submission's initialised model, through the plain-argument API."""
    sub = loaded.submission
    return build_initialised_model(sub.backbone, sub.init, num_classes, loaded.folder)


def _submission(tmp_path: Path, init: str, backbone: str = f"torchvision:{ARCH}"):
    folder = tmp_path / "sub"
    folder.mkdir(exist_ok=True)
    (folder / "submission.toml").write_text(
        f'name = "sub"\nauthors = ["t"]\ndescription = "d"\nbackbone = "{backbone}"\ninit = "{init}"\n')
    return load_submission(folder)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A temporary TORCH_HOME, and any download attempt fails as it would without network."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once at import otherwise

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return home


def test_imagenet_loads_the_cached_torchvision_file(tmp_path: Path, offline: Path) -> None:
    weights = torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1
    torch.manual_seed(1)
    stand_in = torchvision.models.mobilenet_v3_small(weights=None).state_dict()
    target = offline / "hub" / "checkpoints" / Path(weights.url).name
    target.parent.mkdir(parents=True)
    torch.save(stand_in, target)
    model, info = _build(_submission(tmp_path, "imagenet"), 21)
    assert info["imagenet_weights"] == "MobileNet_V3_Small_Weights.IMAGENET1K_V1"
    state = model.state_dict()
    head = head_name(model)
    body = [k for k in stand_in if not k.startswith(head + ".")]
    assert body and all(torch.equal(state[k], stand_in[k]) for k in body)
    assert state[f"{head}.weight"].shape[0] == 21


def test_imagenet_offline_without_file_is_a_clear_error(tmp_path: Path, offline: Path) -> None:
    with pytest.raises(BmbenchError) as info:
        _build(_submission(tmp_path, "imagenet"), 21)
    message = info.value.message
    assert "not in the torch cache" in message and str(offline) in message and "TORCH_HOME" in message


def test_timm_pretrained_offline_is_a_clear_error(tmp_path: Path, offline: Path) -> None:
    with pytest.raises(BmbenchError, match="cannot load timm's pretrained weights for resnet10t"):
        _build(_submission(tmp_path, "imagenet", "timm:resnet10t"), 21)


def test_random_init_builds_without_any_file(tmp_path: Path, offline: Path) -> None:
    model, info = _build(_submission(tmp_path, "random"), 21)
    assert info == {"init": "random"} and model(torch.zeros(1, 3, 64, 64)).shape == (1, 21)


def _write_in_domain_checkpoint(loaded, init: str, classes: int) -> tuple[CheckpointRef, dict[str, torch.Tensor]]:
    torch.manual_seed(2)
    state = build_backbone(loaded.submission.backbone, classes).state_dict()
    ref = CheckpointRef(loaded.submission.backbone, init)
    ref.path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, ref.path)
    ref.meta_path.write_text(json.dumps({"sha256": sha256_file(ref.path), "dataset": "cd", "init": "imagenet",
                                         "recipe_digest": "x", "epochs": 1, "val_accuracy": 0.5}))
    return ref, state


def test_in_domain_checkpoint_drops_the_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BMBENCH_WEIGHTS", str(tmp_path / "weights"))
    loaded = _submission(tmp_path, "imagenet+cd")
    ref, saved = _write_in_domain_checkpoint(loaded, "imagenet+cd", classes=11)
    model, info = _build(loaded, 21)
    assert info["checkpoint_sha256"] == sha256_file(ref.path) and info["pretraining"]["dataset"] == "cd"
    head = head_name(model)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items() if not k.startswith(head + "."))
    assert state[f"{head}.weight"].shape[0] == 21


def test_in_domain_missing_names_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BMBENCH_WEIGHTS", str(tmp_path / "weights"))
    with pytest.raises(BmbenchError) as info:
        _build(_submission(tmp_path, "pcam"), 21)
    assert f"bmbench pretrain --dataset pcam --backbone torchvision:{ARCH} --init random" in info.value.message


def test_in_domain_corrupt_checkpoint_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BMBENCH_WEIGHTS", str(tmp_path / "weights"))
    loaded = _submission(tmp_path, "cd")
    ref, _ = _write_in_domain_checkpoint(loaded, "cd", classes=11)
    ref.path.write_bytes(ref.path.read_bytes() + b"x")
    with pytest.raises(BmbenchError, match="corrupt or was replaced"):
        _build(loaded, 21)
