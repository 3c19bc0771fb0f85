"""Submission schema, the reference submissions, and `bmbench submissions list|describe`."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bmbench.cli.main import app
from bmbench.errors import BmbenchError
from bmbench.models.backbones import build_backbone, count_parameters, imagenet_weights_name
from bmbench.submissions.describe import describe_submission
from bmbench.submissions.registry import default_submissions_dir, list_submissions, resolve_submission
from bmbench.submissions.schema import load_submission
from bmbench.recipe import Recipe

PAPER = Path(__file__).resolve().parents[1] / "benchmark" / "bmbench" / "resources" / "paper"
SHORT = {"vgg": "vgg19_bn", "resnet": "resnet152", "regnet": "regnet_y_32gf", "vit": "vit_l_32"}
INITS = {"random": "random", "imagenet": "imagenet", "pcam": "pcam", "cd": "cd",
         "imagenet_pcam": "imagenet+pcam", "imagenet_cd": "imagenet+cd"}


def _table3() -> dict[str, dict[str, str]]:
    with open(PAPER / "published_table3.csv", encoding="utf-8") as handle:
        return {row["model"]: row for row in csv.DictReader(handle)}


def test_all_reference_submissions_validate() -> None:
    names = {loaded.submission.name: loaded.submission for loaded in list_submissions()}
    for short, arch in SHORT.items():
        for suffix, init in INITS.items():
            sub = names[f"{short}_{suffix}"]
            assert sub.backbone == f"torchvision:{arch}" and sub.init == init
            assert sub.recipe == Recipe()  # the paper's recipe, unchanged
    assert {"demo_cnn", "baseline_majority", "baseline_features_logreg"} <= set(names)
    finetune = [name for name, sub in names.items() if sub.kind != "frozen"]  # frozen: tests/test_probe_run.py
    assert len(finetune) == 27


@pytest.mark.parametrize("arch", list(SHORT.values()))
def test_parameter_counts_match_table3(arch: str) -> None:
    loaded = resolve_submission(f"{[k for k, v in SHORT.items() if v == arch][0]}_imagenet")
    with_1000 = count_parameters(build_backbone(loaded.submission.backbone, None, device="meta"))
    assert with_1000 == int(_table3()[arch]["params_1000_class_head"])
    with_21 = count_parameters(build_backbone(loaded.submission.backbone, 21, device="meta"))
    assert with_21 < with_1000
    head = build_backbone(loaded.submission.backbone, 21, device="meta")
    linear = [m for m in head.modules() if isinstance(m, __import__("torch").nn.Linear)][-1]
    assert linear.out_features == 21


def test_imagenet_weights_are_those_table3_implies() -> None:
    expected = {"vgg19_bn": "VGG19_BN_Weights.IMAGENET1K_V1", "resnet152": "ResNet152_Weights.IMAGENET1K_V2",
                "regnet_y_32gf": "RegNet_Y_32GF_Weights.IMAGENET1K_V2", "vit_l_32": "ViT_L_32_Weights.IMAGENET1K_V1"}
    for arch, name in expected.items():
        assert imagenet_weights_name(f"torchvision:{arch}") == name
    assert imagenet_weights_name("torchvision:resnet18") == "ResNet18_Weights.IMAGENET1K_V1"
    assert imagenet_weights_name("model.py") is None


def test_describe_json_via_cli() -> None:
    result = CliRunner().invoke(app, ["submissions", "describe", "regnet_imagenet_cd", "--json", "-"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["name"] == "regnet_imagenet_cd" and info["backbone"] == "torchvision:regnet_y_32gf"
    assert info["init"] == "imagenet+cd" and info["imagenet_weights"] == "RegNet_Y_32GF_Weights.IMAGENET1K_V2"
    assert info["params"] == 141_411_743  # 145,046,770 with the 1000-class head (Table 3)
    assert describe_submission(resolve_submission("vgg_random"))["imagenet_weights"] is None
    assert describe_submission(resolve_submission("baseline_majority"))["params"] is None


def test_list_via_cli() -> None:
    result = CliRunner().invoke(app, ["submissions", "list"])
    assert result.exit_code == 0 and "regnet_imagenet_cd" in result.output


def _write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "submission.toml").write_text(text)
    return folder


BASE = 'name = "x"\nauthors = ["a"]\ndescription = "d"\nbackbone = "torchvision:resnet18"\ninit = "random"\n'


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (BASE + "colour = 1\n", "colour: unknown key"),
        (BASE + "[recipe]\nepoch = 3\n", "recipe.epoch: unknown key"),
        (BASE + "[recipe]\nepochs = 0\n", "recipe.epochs"),
        (BASE + '[recipe]\nlr = "fast"\n', "recipe.lr"),
        (BASE.replace('"random"', '"imagenet21k"'), "init"),
        (BASE.replace("torchvision:resnet18", "keras:resnet"), "backbone"),
        (BASE.replace('authors = ["a"]\n', ""), "authors: required key is missing"),
        (BASE.replace('"random"', '"none"'), "init 'none' goes with baseline"),
        (BASE + "[recipe.augmentation]\ncrop_scale = [1.0, 0.5]\n", "recipe.augmentation.crop_scale"),
        ("name = \n", "not valid TOML"),
    ],
)
def test_bad_submission_files(tmp_path: Path, text: str, fragment: str) -> None:
    folder = _write(tmp_path / "x", text)
    with pytest.raises(BmbenchError) as info:
        load_submission(folder)
    assert fragment in info.value.message and "submission.toml" in info.value.message


def test_name_rules(tmp_path: Path) -> None:
    with pytest.raises(BmbenchError, match=r"\[a-z0-9_\]\+"):
        load_submission(_write(tmp_path / "Bad-Name", BASE.replace('"x"', '"Bad-Name"')))
    with pytest.raises(BmbenchError, match="must equal the folder name"):
        load_submission(_write(tmp_path / "y", BASE))
    with pytest.raises(BmbenchError, match="neither a submission folder nor a valid name"):
        resolve_submission("../etc")
    with pytest.raises(BmbenchError, match="no submission named"):
        resolve_submission("nope")


def test_model_py_rules(tmp_path: Path) -> None:
    text = BASE.replace("torchvision:resnet18", "model.py")
    with pytest.raises(BmbenchError, match="model.py is missing"):
        load_submission(_write(tmp_path / "x", text))
    with pytest.raises(BmbenchError, match="ImageNet initialisation needs"):
        load_submission(_write(tmp_path / "x", text.replace('"random"', '"imagenet"')))


def test_model_py_must_build_a_module(tmp_path: Path) -> None:
    folder = _write(tmp_path / "x", BASE.replace("torchvision:resnet18", "model.py"))
    (folder / "model.py").write_text("def build_model(num_classes):\n    return 42\n")
    with pytest.raises(BmbenchError, match="not a torch.nn.Module"):
        build_backbone("model.py", 21, load_submission(folder).folder)


def test_digest_covers_model_py(tmp_path: Path) -> None:
    folder = tmp_path / "demo_cnn"
    shutil.copytree(default_submissions_dir() / "demo_cnn", folder)
    before = load_submission(folder).digest
    (folder / "model.py").write_text((folder / "model.py").read_text() + "\n# changed\n")
    assert load_submission(folder).digest != before


@pytest.mark.parametrize(("name", "variants", "absent"), [
    ("probe_dinobloom_s", ["linear", "knn-1", "knn-20", "fewshot-1", "fewshot-2", "fewshot-4", "fewshot-8",
                           "fewshot-16"], []),
    ("demo_cnn_probe", ["linear", "knn-20"], ["fewshot"]),
])
def test_describe_a_frozen_feature_submission_shows_encoder_and_probes_not_a_recipe(
        name: str, variants: list[str], absent: list[str]) -> None:
    result = CliRunner().invoke(app, ["submissions", "describe", name, "--json", "-"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    sub = resolve_submission(name).submission
    assert info["encoder"] == sub.encoder and info["protocol"] == "probe"
    assert not {"recipe", "recipe_digest", "backbone", "init", "params", "imagenet_weights"} & set(info)
    probe = info["probe"]
    assert probe["variants"] == variants and probe["protocols"] == list(sub.probe.protocols)
    assert probe["linear"]["c"] == "dinobloom" and probe["knn"]["k"] == [int(v[4:]) for v in variants if "knn" in v]
    assert all(key not in probe for key in absent)
    if not absent:
        assert probe["fewshot"] == {"shots": [1, 2, 4, 8, 16], "episodes": 100, "seed": 0}
    text = CliRunner().invoke(app, ["submissions", "describe", name])
    assert text.exit_code == 0, text.output
    assert f"encoder: {sub.encoder}" in text.output and '"variants"' in text.output
    assert "recipe" not in text.output and "epochs" not in text.output and "backbone" not in text.output
