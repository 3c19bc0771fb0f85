"""`bmbench run` / `merge` end to end on the embedded SYNTHETIC data (CPU, smoke-sized)."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bmbench.classes import NUM_CLASSES
from bmbench.cli.main import app
from bmbench.errors import BmbenchError
from bmbench.scoring.score import score_file
from bmbench.submissions.registry import resolve_submission
from bmbench.submissions.schema import load_submission
from bmbench.datapaths.plain import PlainDataPath
from bmbench.engine.loop import settings_for, train_fold
from bmbench.runs.merge import merge_runs
from bmbench.recipe import Augmentation, Recipe
from bmbench.runs.run import RunOptions, run_submission

runner = CliRunner()


@pytest.mark.slow
def test_full_tiny_run_end_to_end(quick_demo: Path, tmp_path: Path) -> None:
    loaded = load_submission(quick_demo)
    options = RunOptions(data="synthetic", out=tmp_path, epochs=1, max_steps=2, device="cpu")
    result = run_submission(loaded, options)
    run_dir = tmp_path / "demo_cnn" / "synthetic"
    assert result.run_dir == run_dir
    for fold in range(5):
        for name in ("last.pt", "best.pt", "history.jsonl", "test_predictions.csv", "fold.json"):
            assert (run_dir / f"fold{fold}" / name).is_file()
    # The predictions pass the official scorer on their own; score.json is that scorer's output.
    score = score_file(run_dir / "predictions.csv", "synthetic-cv5-v1")
    assert json.loads((run_dir / "score.json").read_text())["summary"] == score["summary"]
    assert score["folds"] == [0, 1, 2, 3, 4]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["comparable"] is False and run["smoke"] == {"epochs": 1, "max_steps": 2}
    assert run["data"]["synthetic"] is True and run["split"]["name"] == "synthetic-cv5-v1"
    assert run["split"]["sha256"] == score["split"]["sha256"]
    assert run["submission"]["digest"] == loaded.digest and len(run["recipe_digest"]) == 64
    assert {"torch", "torchvision", "bmbench"} <= set(run["versions"]) and "commit" in run["git"]
    assert [f["fold"] for f in run["folds"]] == [0, 1, 2, 3, 4]
    history = [json.loads(line) for line in (run_dir / "fold0" / "history.jsonl").read_text().splitlines()]
    assert set(history[0]) >= {"train_loss", "val_accuracy", "lr", "images_per_s", "seconds"}

    # Finished folds are kept by --resume; without it the run refuses to overwrite.
    again = run_submission(loaded, RunOptions(data="synthetic", out=tmp_path, epochs=1, max_steps=2, resume=True))
    assert again.folds == result.folds
    with pytest.raises(BmbenchError, match="--resume"):
        run_submission(loaded, options)


@pytest.mark.usefixtures("shared_baseline_features")  # the logreg run's features, extracted once per session
def test_baseline_runs_and_merge(tmp_path: Path) -> None:
    loaded = resolve_submission("baseline_majority")
    a = run_submission(loaded, RunOptions(data="synthetic", folds=(0,), out=tmp_path / "a"))
    b = run_submission(loaded, RunOptions(data="synthetic", folds=(3, 4), out=tmp_path / "b"))
    assert a.score["folds"] == [0] and b.score["folds"] == [3, 4]
    merged = merge_runs([a.run_dir, b.run_dir], tmp_path / "merged")
    assert merged.score["folds"] == [0, 3, 4]
    assert merged.run["merged_from"] == [str(a.run_dir), str(b.run_dir)]
    assert merged.score["per_fold"][0] == a.score["per_fold"][0]
    with pytest.raises(BmbenchError, match="fold 0 is in both"):
        merge_runs([a.run_dir, a.run_dir], tmp_path / "again")
    other = run_submission(resolve_submission("baseline_features_logreg"),
                           RunOptions(data="synthetic", folds=(1,), out=tmp_path / "c"))
    with pytest.raises(BmbenchError, match="submission.digest differs"):
        merge_runs([a.run_dir, other.run_dir], tmp_path / "mixed")
    assert other.score["summary"]["macro_f1"]["mean"] > 0.5  # far above the majority baseline


def test_cli_smoke_run_is_labelled(quick_demo: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(quick_demo), "--data", "synthetic", "--folds", "2", "--epochs", "1",
                                 "--max-steps", "1", "--out", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "SMOKE RUN" in result.output and "SYNTHETIC" in result.output and "macro F1" in result.output


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--folds", "7"], "--folds must be between 0 and 4"),
        (["--folds", "a,b"], "fold numbers separated by commas"),
        (["--device", "tpu"], "--device must be auto, cpu or cuda"),
    ],
)
def test_cli_bad_options(quick_demo: Path, tmp_path: Path, args: list[str], fragment: str) -> None:
    result = runner.invoke(app, ["run", str(quick_demo), "--data", "synthetic", "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and fragment in result.output and "Traceback" not in result.output


def test_cli_cuda_without_gpu(quick_demo: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = runner.invoke(app, ["run", str(quick_demo), "--data", "synthetic", "--device", "cuda",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no CUDA device" in result.output


def test_cli_missing_data(quick_demo: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(quick_demo), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "BMBENCH_DATA" in result.output


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("vit_imagenet", "not in the torch cache"),
     ("regnet_imagenet_cd", "bmbench pretrain --dataset cd --backbone torchvision:regnet_y_32gf --init imagenet"),
     ("resnet_pcam", "bmbench pretrain --dataset pcam --backbone torchvision:resnet152 --init random")],
)
def test_pretrained_reference_submissions_stop_at_a_clear_offline_error(
        name: str, fragment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("BMBENCH_WEIGHTS", str(tmp_path / "weights"))

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    result = runner.invoke(app, ["run", name, "--data", "synthetic", "--epochs", "1", "--folds", "0",
                                 "--out", str(tmp_path / "runs"), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert fragment in result.output.replace("\n", " ") and "Traceback" not in result.output


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), [("vgg_random", 64), ("resnet_random", 64), ("regnet_random", 64),
                                            ("vit_random", 224)])
def test_random_reference_backbones_train_a_step(name: str, size: int, tiny_image_set, tmp_path: Path) -> None:
    """Each paper backbone, random init, through the real loop: one SGD step, then val/test predictions."""
    from bmbench.models.init import build_initialised_model

    split, paths = tiny_image_set
    loaded = resolve_submission(name)
    recipe = Recipe(epochs=1, batch_size=2, lr=0.001, eval_size=size, num_workers=0,
                    augmentation=Augmentation(crop_size=size))
    model, info = build_initialised_model(loaded.submission.backbone, loaded.submission.init, NUM_CLASSES)
    assert info == {"init": "random"}
    datapath = PlainDataPath(recipe, paths, split.labels, NUM_CLASSES, seed=0, fold=0)
    settings = settings_for(recipe, torch.device("cpu"), epochs=1, lr=0.001, seed=0, max_steps=1)
    outcome = train_fold(model, datapath, recipe, settings, fold=0, train=split.members(0, "train"),
                         val=split.members(0, "val")[:2], test=split.members(0, "test")[:2], fold_dir=tmp_path)
    assert outcome.test_probs.shape == (2, NUM_CLASSES) and np.isfinite(outcome.test_probs).all()
