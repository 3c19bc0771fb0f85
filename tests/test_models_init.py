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
from bmbench.models.init import IN_DOMAIN, CheckpointRef, build_initialised_model, sha256_file
from bmbench.records.checkpoint import CheckpointMeta, write_checkpoint_meta
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
    dataset, start = IN_DOMAIN[init]
    write_checkpoint_meta(ref.meta_path, CheckpointMeta(
        backbone=ref.backbone, checkpoint_init=init, dataset=dataset, dataset_title=dataset, init=start,
        num_classes=classes, classes=[f"c{k}" for k in range(classes)], head=head_name(build_backbone(
            ref.backbone, classes)), recipe={}, recipe_digest="0" * 64, epochs=1, epochs_planned=1, smoke=True,
        seed=0, lr=0.01, lr_rule="fixed in the recipe", data_path="plain", val_accuracy=0.5, seconds=1.0,
        wall_seconds_this_invocation=1.0, bmbench_version="test", created_at="2026-01-01T00:00:00+00:00",
        sha256=sha256_file(ref.path)))
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


def test_in_domain_metadata_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A damaged or misplaced metadata file is refused (exit 2) naming the file, the key and the command."""
    monkeypatch.setenv("BMBENCH_WEIGHTS", str(tmp_path / "weights"))
    loaded = _submission(tmp_path, "cd")
    ref, _ = _write_in_domain_checkpoint(loaded, "cd", classes=11)
    good = json.loads(ref.meta_path.read_text())
    cases = [({**good, "sha256": "not a digest"}, "sha256"), ({**good, "val_accuracy": 1.5}, "val_accuracy"),
             ({**good, "surprise": 1}, "surprise"), ({**good, "checkpoint_init": "imagenet+cd"}, "checkpoint_init"),
             ({**good, "backbone": "torchvision:resnet18"}, "backbone")]
    for doc, key in cases:
        ref.meta_path.write_text(json.dumps(doc))
        with pytest.raises(BmbenchError) as info:
            _build(loaded, 21)
        assert info.value.exit_code == 2 and str(ref.meta_path) in info.value.message and key in info.value.message
        assert "bmbench pretrain --dataset cd" in info.value.message
    del good["schema_version"]  # a file copied from elsewhere without the key reads as version 1
    ref.meta_path.write_text(json.dumps(good))
    assert _build(loaded, 21)[1]["pretraining"]["dataset"] == "cd"
