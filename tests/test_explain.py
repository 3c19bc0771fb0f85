"""Grad-CAM: target layers per backbone, the ViT reshape, the maps, and `bmbench explain` on a tiny trained run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from bmbench.classes import CLASS_CODES, CLASS_INDEX, NUM_CLASSES
from bmbench.cli.main import app
from bmbench.errors import BmbenchError
from bmbench.explain.cam import grad_cam_maps, overlay, resize_map
from bmbench.explain.gallery import ExplainOptions, explain_run, pick_examples
from bmbench.explain.targets import choose_target_layer, vit_reshape_transform
from bmbench.models.backbones import build_backbone
from bmbench.records.explain import read_explain
from bmbench.scoring.predictions import read_predictions
from bmbench.splits.store import load_split
from bmbench.submissions.registry import default_submissions_dir, resolve_submission
from bmbench.submissions.schema import load_submission
from bmbench.engine.checkpoint import load_checkpoint
from bmbench.runs.run import RunOptions, run_submission
from cpu_fixtures import tiny_cnn

runner = CliRunner()


@pytest.mark.parametrize(
    ("submission", "name", "kind"),
    [
        ("vgg_random", "features.51", nn.ReLU),  # the last conv block's ReLU, before the final max-pool
        ("resnet_random", "layer4", nn.Sequential),
        ("regnet_random", "trunk_output", nn.Sequential),
        ("vit_random", "encoder.layers.encoder_layer_23.ln_1", nn.LayerNorm),
        ("demo_cnn", "3.0", nn.Conv2d),  # any other model: the last Conv2d
    ],
)
def test_target_layer_of_the_paper_backbones(submission: str, name: str, kind: type) -> None:
    loaded = resolve_submission(submission)
    model = build_backbone(loaded.submission.backbone, NUM_CLASSES, loaded.folder, device="meta")
    target = choose_target_layer(model, loaded.submission.backbone)
    assert target.name == name and isinstance(target.module, kind)
    assert target.module is model.get_submodule(name)
    assert (target.reshape is not None) == submission.startswith("vit")
    if submission == "vgg_random":
        assert isinstance(model.features[52], nn.MaxPool2d) and isinstance(model.features[49], nn.Conv2d)


def test_vit_reshape_drops_the_class_token_and_squares_the_patches() -> None:
    tokens = torch.randn(2, 1 + 49, 1024)  # vit_l_32 at 224 px: 7 x 7 patches of 32 px
    grid = vit_reshape_transform(tokens)
    assert grid.shape == (2, 1024, 7, 7)
    for i, j in ((0, 0), (2, 5), (6, 6)):
        assert torch.equal(grid[:, :, i, j], tokens[:, 1 + i * 7 + j, :])
    with pytest.raises(ValueError, match="square"):
        vit_reshape_transform(torch.randn(1, 1 + 50, 8))


def test_a_network_without_a_spatial_layer_is_refused() -> None:
    with pytest.raises(BmbenchError, match="no nn.Conv2d"):
        choose_target_layer(nn.Sequential(nn.Flatten(), nn.Linear(12, 21)), "model.py")


def _tiny_cnn() -> nn.Module:
    return tiny_cnn(0, batchnorm=False)


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_maps_have_the_input_size_are_finite_differ_between_classes_and_hooks_are_released() -> None:
    model = _tiny_cnn()
    target = choose_target_layer(model, "model.py")
    images = torch.randn(3, 3, 40, 40)
    with torch.no_grad():
        reference = model(images)
    maps_a = grad_cam_maps(model, target, images, [0, 0, 0])
    maps_b = grad_cam_maps(model, target, images, [5, 5, 5])
    assert maps_a.shape == (3, 40, 40) and maps_a.dtype == np.float32
    assert np.isfinite(maps_a).all() and maps_a.min() >= 0 and maps_a.max() <= 1
    assert not np.allclose(maps_a, maps_b)
    assert _hooks(model) == 0  # the package's forward hooks are gone ...
    with torch.no_grad():
        assert torch.equal(model(images), reference)  # ... and the model computes exactly as before
    assert all(p.grad is None for p in model.parameters())
    big = resize_map(maps_a[0], (250, 250))
    assert big.shape == (250, 250) and np.isfinite(big).all()
    tile = overlay(np.zeros((250, 250, 3), np.uint8), maps_a[0])
    assert tile.shape == (250, 250, 3) and tile.dtype == np.uint8


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "size"), [("vgg11_bn", 64), ("resnet18", 64), ("regnet_y_400mf", 64),
                                            ("vit_b_32", 224)])
def test_grad_cam_runs_on_each_family(arch: str, size: int) -> None:
    """The same rules as the paper's backbones, on small members of each family (random weights, CPU)."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None, num_classes=NUM_CLASSES)
    target = choose_target_layer(model, f"torchvision:{arch}")
    maps = grad_cam_maps(model, target, torch.randn(2, 3, size, size), [1, 7])
    assert maps.shape == (2, size, size) and np.isfinite(maps).all()
    assert _hooks(model) == 0


# --- bmbench explain on a tiny trained run ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """demo_cnn trained for 2 steps on fold 0 of the SYNTHETIC data (single-process loading)."""
    base = tmp_path_factory.mktemp("explain")
    folder = base / "subs" / "demo_cnn"
    shutil.copytree(default_submissions_dir() / "demo_cnn", folder)
    toml = (folder / "submission.toml").read_text().replace("num_workers = 2", "num_workers = 0")
    (folder / "submission.toml").write_text(toml)
    result = run_submission(load_submission(folder), RunOptions(data="synthetic", epochs=1, max_steps=2, folds=(0,),
                                                                out=base / "runs", device="cpu"))
    return result.run_dir


def _class_with_both(run_dir: Path) -> str:
    split = load_split("synthetic-cv5-v1")
    preds = read_predictions(run_dir / "predictions.csv", split)
    for code in CLASS_CODES:
        _, correct, wrong = pick_examples(split, preds, code, 4)
        if correct and wrong:
            return code
    return CLASS_CODES[int(np.bincount(preds.pred).argmax())]


def test_explain_a_tiny_trained_run(tiny_run: Path, tmp_path: Path) -> None:
    code = _class_with_both(tiny_run)
    result = explain_run(tiny_run, ExplainOptions(code=code, n=6, device="cpu", out=tmp_path / "g"))
    shown = result.examples
    assert 1 <= len(shown) <= 6 and all(x.example.true == code and x.example.fold == 0 for x in shown)
    assert sum(not x.example.correct for x in shown) == min(result.available_wrong, 6 - sum(
        x.example.correct for x in shown))
    for x in shown:
        assert set(x.maps) == ({x.example.pred} if x.example.correct else {x.example.pred, code})
        for m in x.maps.values():
            assert m.shape == (64, 64) and np.isfinite(m).all()  # the model's input size (eval_size 64)
        assert x.image.shape == (250, 250, 3)
    assert result.target_layer == "3.0" and result.synthetic and result.smoke

    # The maps of one image differ between target classes (computed on the run's own fold-0 model).
    loaded = load_submission(Path(json.loads((tiny_run / "run.json").read_text())["submission"]["folder"]))
    model = build_backbone(loaded.submission.backbone, NUM_CLASSES, loaded.folder)
    model.load_state_dict(load_checkpoint(tiny_run / "fold0" / "best.pt")["model"])
    image = torch.randn(1, 3, 64, 64)
    per_class = grad_cam_maps(model, choose_target_layer(model, "model.py"), image.repeat(4, 1, 1, 1), [0, 5, 10, 20])
    assert np.isfinite(per_class).all()
    assert any(not np.allclose(per_class[0], per_class[k]) for k in range(1, 4))

    with Image.open(result.png) as im:
        assert im.size[0] > 400 and im.mode == "RGB"
    page = result.html.read_text(encoding="utf-8")
    assert "<script" not in page and "src=\"http" not in page and page.count("data:image/jpeg;base64,") >= len(shown)
    assert "SYNTHETIC DATA" in page and "SMOKE RUN" in page
    meta = json.loads(result.json.read_text())
    assert meta["class"] == code and meta["target_layer"] == "3.0" and len(meta["examples"]) == len(shown)
    assert meta["data"]["synthetic"] is True
    assert read_explain(result.json) == result.record and meta == result.meta  # one model, round trip
    for key, value in (("examples", [{**meta["examples"][0], "p_true": 1.5}]), ("input_size", 0), ("extra", 1)):
        result.json.write_text(json.dumps({**meta, key: value}))
        with pytest.raises(BmbenchError) as info:
            read_explain(result.json)
        assert info.value.exit_code == 2 and str(result.json) in info.value.message and key in info.value.message


def test_explain_html_escapes_strings(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bmbench.explain import gallery

    monkeypatch.setattr(gallery, "SELECTION_RULE", "<b>&'\"</b>")
    result = explain_run(tiny_run, ExplainOptions(code=CLASS_CODES[0], n=1, device="cpu", out=tmp_path / "g"))
    page = result.html.read_text(encoding="utf-8")
    assert "<b>&'" not in page and "&lt;b&gt;&amp;" in page


def test_cli_explain_and_its_refusals(tiny_run: Path, tmp_path: Path) -> None:
    code = _class_with_both(tiny_run)
    result = runner.invoke(app, ["explain", str(tiny_run), "--class", code.lower(), "--n", "2", "--device", "cpu",
                                 "--out", str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output and "SMOKE RUN" in result.output and "gallery.png" in result.output
    assert (tmp_path / "g" / "gallery.html").is_file()

    bad = runner.invoke(app, ["explain", str(tiny_run), "--class", "XYZ"])
    assert bad.exit_code == 2 and "--class must be one of" in bad.output
    bad = runner.invoke(app, ["explain", str(tiny_run), "--class", code, "--folds", "3"])
    assert bad.exit_code == 2 and "fold 3 is not in this run" in bad.output
    bad = runner.invoke(app, ["explain", str(tiny_run), "--class", code, "--folds", "0,9"])  # not in the split
    assert bad.exit_code == 2 and "--folds must be between 0 and 4 (split synthetic-cv5-v1 has 5 folds); got 9" \
        in bad.output
    bad = runner.invoke(app, ["explain", str(tmp_path), "--class", code])
    assert bad.exit_code == 2 and "run.json is missing" in bad.output

    # A submission whose files changed since the run is refused (its digest differs).
    changed = tmp_path / "changed" / "demo_cnn"
    shutil.copytree(Path(json.loads((tiny_run / "run.json").read_text())["submission"]["folder"]), changed)
    (changed / "model.py").write_text((changed / "model.py").read_text() + "\n# edited\n")
    bad = runner.invoke(app, ["explain", str(tiny_run), "--class", code, "--submission", str(changed)])
    assert bad.exit_code == 2 and "digest" in bad.output and "Traceback" not in bad.output


def test_pick_examples_prefers_confident_and_balances_correct_and_wrong() -> None:
    split = load_split("synthetic-cv5-v1")
    rows = np.flatnonzero(split.labels == CLASS_INDEX["FGC"])[:6]

    class Preds:  # the fields of a read predictions file that pick_examples uses
        positions = rows
        folds = np.zeros(len(rows), dtype=np.int64)
        pred = np.array([CLASS_INDEX["FGC"]] * 3 + [CLASS_INDEX["BLA"]] * 3)
        probs = np.full((len(rows), NUM_CLASSES), 0.01)

    Preds.probs[np.arange(6), Preds.pred] = [0.5, 0.9, 0.7, 0.6, 0.95, 0.4]
    picked, n_ok, n_bad = pick_examples(split, Preds, "FGC", 4)
    assert (n_ok, n_bad) == (3, 3)
    assert [round(e.p_pred, 2) for e in picked] == [0.9, 0.7, 0.95, 0.6]
    picked, _, _ = pick_examples(split, Preds, "FGC", 5)
    assert sum(e.correct for e in picked) == 3 and len(picked) == 5
    assert pick_examples(split, Preds, "FGC", 4, folds=(2,))[0] == []
