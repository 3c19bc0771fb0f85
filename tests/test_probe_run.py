"""``bmbench probe`` (and ``bmbench run`` on a frozen-feature submission) end to end on the SYNTHETIC data.

Tiny random-initialised timm (a ViT from a fake Hugging Face hub repository, as the DinoBloom ports load) and
torchvision encoders whose weights the tests write into temporary caches, offline. Every variant's
predictions.csv must re-score to its score.json through the official scorer; run.json must record the
protocol, its constants and the feature store's manifest; --resume skips finished folds; a one-fold split
has no std over folds; bad input exits 2 with nothing half written. Then the variants go onto a demo board
beside a fine-tuned entry of the same split.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bmbench.cli.main import app
from bmbench.classes import CLASS_CODES
from bmbench.features.encoders import sha256_file
from bmbench.features.store import FEATURES_FILE, MANIFEST_FILE
from bmbench.records.episodes import read_episodes
from bmbench.records.run import read_run
from bmbench.records.score import read_score
from bmbench.scoring.score import score_file
from feature_fixtures import (BAD_ENCODER, POOL_ENCODER, fake_hub_repo, frozen_submission, offline_caches,
                              safetensors_bytes, tiny_ft_submission, torchvision_weights)

HUB_REPO = "bmbench-test/tiny-vit"
VIT_SPEC = f"timm:hf-hub:{HUB_REPO}"
FAST_PROBE = """
[probe.linear]
max_iter = 60
[probe.fewshot]
shots = [1, 4]
episodes = 3
"""
"""Small enough for a test on two CPU cores; every variant of every protocol still runs."""


def write_probe_submission(root: Path, name: str, encoder: str, *, protocol: str = "probe", probe: str = FAST_PROBE,
                           preprocess: str = "", model_py: str | None = None) -> Path:
    return frozen_submission(root, name, encoder, protocol=protocol, preprocess=preprocess or None, probe=probe,
                             model_py=model_py, extra='pretraining_data = ["random initialisation (test)"]')


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No network; empty Hugging Face and torch caches and a private feature cache under tmp_path.

    The synthetic images and their uint8 cache stay in the shared cache (generated once per machine).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny problems: one thread beats two spinning on a shared machine
    yield offline_caches(monkeypatch, tmp_path)
    torch.set_num_threads(threads)


def tiny_vit_hub(hf_home: Path, tmp: Path) -> Path:
    """A random test_vit (32 px, D = 64) as a hub repository in the cache: config.json + model.safetensors."""
    import timm

    torch.manual_seed(1)
    source = timm.create_model("test_vit", pretrained=False, img_size=32)
    config = {"architecture": "test_vit", "num_classes": 1000, "model_args": {"img_size": 32},
              "pretrained_cfg": {"input_size": [3, 32, 32], "interpolation": "bilinear", "crop_pct": 1.0,
                                 "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "num_classes": 1000,
                                 "classifier": "head"}}
    return fake_hub_repo(hf_home, HUB_REPO, {"config.json": json.dumps(config).encode(),
                                             "model.safetensors": safetensors_bytes(source, tmp)})


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def assert_rescored(run_dir: Path, split: str) -> dict:
    """predictions.csv through the official scorer gives exactly score.json."""
    stored = read_score(run_dir / "score.json").model_dump(mode="json")
    fresh = score_file(run_dir / "predictions.csv", split)
    assert fresh["per_fold"] == stored["per_fold"] and fresh["summary"] == stored["summary"]
    assert fresh["predictions"]["sha256"] == stored["predictions"]["sha256"]
    return stored


def test_cv5_probe_end_to_end_resume_run_dispatch_and_board(offline: Path, image_cache: Path) -> None:
    snapshot = tiny_vit_hub(offline / "hf", offline)
    folder = write_probe_submission(offline / "subs", "tiny_vit", VIT_SPEC)
    out = offline / "runs"
    code, output = invoke("probe", str(folder), "--data", "synthetic", "--folds", "0,3", "--out", str(out),
                          "--device", "cpu", "--json", str(offline / "summary.json"))
    assert code == 0, output
    assert "SYNTHETIC DATA" in output and "kNN-20" in output and "few-shot-4" in output
    variants = ["linear", "knn-1", "knn-20", "fewshot-1", "fewshot-4"]
    base = out / "tiny_vit" / "synthetic"
    assert sorted(p.name for p in base.iterdir()) == sorted(variants)
    weights = sha256_file(snapshot / "model.safetensors")
    for variant in variants:
        run_dir = base / variant
        score = assert_rescored(run_dir, "synthetic-cv5-v1")
        assert score["folds"] == [0, 3]
        run = read_run(run_dir)
        assert run.protocol == variant and not run.comparable and run.data.synthetic
        assert run.encoder is not None and run.encoder.id == VIT_SPEC and run.encoder.feature_dim == 64
        assert run.encoder.weights_sha256 == weights
        manifest = run.model_dump()["features"]["manifest"]
        assert manifest["key"]["encoder_id"] == VIT_SPEC and manifest["dim"] == 64
        assert manifest["preprocess"]["size"] == 32 and manifest["key"]["weights_sha256"] == weights
        assert [f.fold for f in run.folds] == [0, 3]
        probe = run.model_dump()["probe"]
        header = (run_dir / "predictions.csv").read_text().splitlines()[0].split(",")
        if variant == "linear":
            assert probe["c"] == "dinobloom" and probe["max_iter"] == 60 and probe["fit_on"] == "train+val"
            assert run.folds[0].model_dump()["fit"]["c"] == pytest.approx(64 * 21 / 100)
            assert header[3:] == [f"p_{c}" for c in CLASS_CODES]  # softmax probabilities
        elif variant.startswith("knn"):
            assert probe["k"] == int(variant[4:]) and probe["metric"] == "euclidean"
            assert header[3:] == [f"p_{c}" for c in CLASS_CODES]  # vote fractions
            assert score["summary"]["auroc"] is not None
        else:
            assert probe["shots"] == int(variant[8:]) and probe["episodes"] == 3
            assert header == ["image_id", "fold", "pred"]
            episodes = read_episodes(run_dir)
            assert episodes.episodes == 3 and episodes.folds == [0, 3]
            per = [e.metrics["macro_f1"] for e in episodes.per_episode]
            assert episodes.summary["macro_f1"].mean == pytest.approx(float(np.mean(per)))
            assert episodes.summary["macro_f1"].std == pytest.approx(float(np.std(per, ddof=1)))
            # score.json is the selected (median) episode, scored by the official scorer
            assert score["summary"]["macro_f1"]["mean"] == pytest.approx(per[episodes.selected_episode])
            assert sorted(per)[1] == per[episodes.selected_episode]
    summary = json.loads((offline / "summary.json").read_text())
    assert summary["schema_version"] == 1 and [v["variant"] for v in summary["variants"]] == variants
    fewshot = summary["variants"][4]
    assert fewshot["over_episodes"]["macro_f1"]["mean"] == read_episodes(base / "fewshot-4").summary["macro_f1"].mean

    # --resume keeps folds 0 and 3 (and the feature store) and runs the other three folds.
    kept = {v: (base / v / "fold0" / "fold.json").read_bytes() for v in variants}
    store = Path(summary["features"])
    stamp = (store / FEATURES_FILE).stat().st_mtime_ns
    code, output = invoke("probe", str(folder), "--data", "synthetic", "--out", str(out), "--device", "cpu",
                          "--resume")
    assert code == 0, output
    for v in variants:
        assert (base / v / "fold0" / "fold.json").read_bytes() == kept[v]
        assert assert_rescored(base / v, "synthetic-cv5-v1")["folds"] == [0, 1, 2, 3, 4]
    assert (store / FEATURES_FILE).stat().st_mtime_ns == stamp
    code, output = invoke("probe", str(folder), "--data", "synthetic", "--out", str(out), "--device", "cpu")
    assert code == 2 and "--resume" in output

    # `bmbench run` on a frozen-feature submission is the same function: nothing left to do, same table.
    code, output = invoke("run", str(folder), "--data", "synthetic", "--out", str(out), "--device", "cpu",
                          "--resume")
    assert code == 0 and "few-shot-4" in output, output
    assert all((base / v / "fold0" / "fold.json").read_bytes() == kept[v] for v in variants)
    code, output = invoke("run", str(folder), "--data", "synthetic", "--out", str(out), "--epochs", "2")
    assert code == 2 and "--epochs" in output and "frozen-feature" in output

    # The demo board ranks frozen-feature and fine-tuned entries of the split together.
    from bmbench.runs.run import RunOptions, run_submission
    from bmbench.submissions.registry import resolve_submission

    majority = run_submission(resolve_submission("baseline_majority"), RunOptions(data="synthetic", out=out))
    board = offline / "board"
    for run_dir in [majority.run_dir, *(base / v for v in ("linear", "knn-20", "fewshot-4"))]:
        code, output = invoke("leaderboard", "add", str(run_dir), "--board", "demo", "--dir", str(board),
                              "--status", "reproduced", "--predictions")
        assert code == 0, output
    entry = json.loads((board / "entries" / "tiny_vit-linear.json").read_text())
    assert entry["protocol"] == "linear" and entry["encoder"]["id"] == VIT_SPEC and entry["init"] == "frozen"
    assert entry["parameters"] == entry["encoder"]["parameters"] and entry["notes"] is None
    assert "1,365 more" in entry["parameters_note"]  # the probe's 64 x 21 weights + 21 biases
    fewshot_entry = json.loads((board / "entries" / "tiny_vit-fewshot-4.json").read_text())
    assert "median of 3 seeded episodes" in fewshot_entry["notes"]
    code, output = invoke("leaderboard", "build", "--board", "demo", "--dir", str(board))
    assert code == 0, output
    code, output = invoke("leaderboard", "check", "--board", "demo", "--dir", str(board))
    assert code == 0, output
    readme = (board / "README.md").read_text()
    assert readme.count("## Split synthetic-cv5-v1") == 1
    section = readme.split("## Split synthetic-cv5-v1")[1].split("\n## ")[0]
    cells = [[c.strip("*") for c in line.split(" | ")] for line in section.splitlines() if line.startswith("| ")]
    rows = {c[2]: c[3] for c in cells  # names of the leading tier are bold
            if c[2] in ("baseline_majority", "tiny_vit-linear", "tiny_vit-knn-20", "tiny_vit-fewshot-4")}
    assert rows == {"baseline_majority": "fine-tune", "tiny_vit-linear": "linear", "tiny_vit-knn-20": "kNN-20",
                    "tiny_vit-fewshot-4": "few-shot-4"}


def test_one_fold_holdout_with_a_torchvision_encoder(offline: Path, image_cache: Path) -> None:
    cached = torchvision_weights(offline / "torch", seed=2)
    folder = write_probe_submission(offline / "subs", "tiny_tv", "torchvision:mobilenet_v3_small",
                                    preprocess="size = 32", probe=FAST_PROBE.replace("shots = [1, 4]", "shots = [2]"))
    out = offline / "runs"
    code, output = invoke("probe", str(folder), "--data", "synthetic", "--split", "synthetic-holdout-v1",
                          "--out", str(out), "--device", "cpu", "--json", "-")
    assert code == 0, output
    summary = json.loads(output[output.index("{\n"):])  # the table went to stderr, mixed in by CliRunner
    assert summary["split"] == "synthetic-holdout-v1"
    for v in summary["variants"]:
        run_dir = Path(v["run_dir"])
        score = assert_rescored(run_dir, "synthetic-holdout-v1")
        assert score["folds"] == [0] and v["folds"] == [0]
        assert score["summary"]["macro_f1"]["std"] is None and v["metrics"]["accuracy"]["std"] is None
        run = read_run(run_dir)
        assert run.split.name == "synthetic-holdout-v1" and run.encoder is not None
        assert run.encoder.weights_sha256 == sha256_file(cached) and run.encoder.feature_dim == 1024
    fewshot = summary["variants"][-1]
    assert fewshot["variant"] == "fewshot-2" and fewshot["episodes"] == 3
    assert fewshot["over_episodes"]["macro_f1"]["std"] is not None  # spread over episodes, not folds
    assert "one fold: no std over folds" in output


@pytest.mark.parametrize(("probe", "key", "message"), [
    ('protocol = "linaer"', "protocol", "'probe'"),
    ("[probe.knn]\nk = [5]", "probe.knn.k", "unknown k 5"),
    ("[probe.fewshot]\nshots = [3]", "probe.fewshot.shots", "unknown shots 3"),
    ('[probe]\nprotocols = ["svm"]', "probe.protocols", "'linear', 'knn' or 'fewshot'"),
])
def test_bad_probe_settings_exit_2_naming_file_and_key(offline: Path, probe: str, key: str, message: str) -> None:
    folder = offline / "subs" / "bad"
    folder.mkdir(parents=True)
    protocol = "" if probe.startswith("protocol") else 'protocol = "probe"\n'
    (folder / "submission.toml").write_text(f'name = "bad"\nauthors = ["a"]\ndescription = "d"\n'
                                            f'encoder = "model.py"\n{protocol}{probe}\n', encoding="utf-8")
    (folder / "model.py").write_text(POOL_ENCODER, encoding="utf-8")
    out = offline / "runs"
    code, output = invoke("probe", str(folder), "--data", "synthetic", "--out", str(out), "--device", "cpu")
    assert code == 2, output
    assert "submission.toml" in output and key in output and message in output
    assert "Traceback" not in output and not out.exists() and not (offline / "features").exists()


@pytest.mark.parametrize(("body", "message"), [
    ("return nn.Conv2d(3, 4, 3)", "returned shape"),
    ("return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), Nan())", "NaN/infinite"),
])
def test_bad_encoder_output_leaves_nothing(offline: Path, body: str, message: str) -> None:
    folder = write_probe_submission(offline / "subs", "bad", "model.py", model_py=BAD_ENCODER.format(body=body),
                                    preprocess="size = 8")
    out = offline / "runs"
    code, output = invoke("probe", str(folder), "--data", "synthetic", "--out", str(out), "--device", "cpu",
                          "--batch", "64")
    assert code == 2 and message in output, output
    assert not out.exists() and not any((offline / "features").rglob(MANIFEST_FILE))


def test_features_of_another_encoder_or_a_wrong_dim_are_refused(offline: Path, image_cache: Path) -> None:
    subs = offline / "subs"
    a = write_probe_submission(subs, "enc_a", "model.py", model_py=POOL_ENCODER, preprocess="size = 16")
    b = write_probe_submission(subs, "enc_b", "model.py", model_py=POOL_ENCODER.replace("seed(0)", "seed(1)"),
                               preprocess="size = 16")
    store = offline / "store"
    code, output = invoke("embed", str(a), "--data", "synthetic", "--device", "cpu", "--out", str(store))
    assert code == 0, output
    out = offline / "runs"
    code, output = invoke("probe", str(b), "--data", "synthetic", "--out", str(out), "--device", "cpu",
                          "--features", str(store))
    assert code == 2 and "another encoder" in output and "weights_sha256" in output, output
    assert not out.exists()
    code, output = invoke("probe", str(a), "--data", "synthetic", "--out", str(out), "--device", "cpu",
                          "--features", str(offline / "nowhere"))
    assert code == 2 and "holds no feature store" in output and "bmbench embed" in output
    manifest = json.loads((store / MANIFEST_FILE).read_text())
    manifest["dim"] = 9
    (store / MANIFEST_FILE).write_text(json.dumps(manifest))
    code, output = invoke("probe", str(a), "--data", "synthetic", "--out", str(out), "--device", "cpu",
                          "--features", str(store))
    assert code == 2 and "records dim D = 9" in output and not out.exists(), output


def test_a_split_without_the_needed_parts_is_refused_before_any_work(offline: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from bmbench.splits import store as split_store

    real = split_store.load_split

    def without_val(name: str, splits_dir: Path | None = None) -> split_store.Split:
        split = real(name, splits_dir)
        roles = split.roles.copy()
        roles[roles[:, 0] == split_store.ROLES.index("val"), 0] = split_store.ROLES.index("train")
        return dataclasses.replace(split, roles=roles)

    monkeypatch.setattr(split_store, "load_split", without_val)
    folder = write_probe_submission(offline / "subs", "search", "model.py", model_py=POOL_ENCODER,
                                    protocol="linear", probe='[probe.linear]\nc = "val-search"\n')
    out = offline / "runs"
    code, output = invoke("probe", str(folder), "--data", "synthetic", "--out", str(out), "--device", "cpu")
    assert code == 2, output
    assert "fold 0 has no val images" in output and "val-search" in output and "--split" in output
    assert not out.exists() and not (offline / "features").exists()


def test_reference_probe_submissions_validate_and_stay_out_of_the_grid() -> None:
    from bmbench.runs.grid import select_submissions
    from bmbench.submissions.registry import list_submissions

    frozen = {s.submission.name: s.submission for s in list_submissions() if s.submission.kind == "frozen"}
    expected = {
        "probe_dinobloom_s": "timm:hf-hub:1aurent/vit_small_patch14_224.dinobloom",
        "probe_dinobloom_b": "timm:hf-hub:1aurent/vit_base_patch14_224.dinobloom",
        "probe_dinobloom_l": "timm:hf-hub:1aurent/vit_large_patch14_224.dinobloom",
        "probe_dinov2_l": "timm:vit_large_patch14_dinov2.lvd142m",
        "probe_vgg_imagenet": "torchvision:vgg19_bn", "probe_resnet_imagenet": "torchvision:resnet152",
        "probe_regnet_imagenet": "torchvision:regnet_y_32gf", "probe_vit_imagenet": "torchvision:vit_l_32",
    }
    assert {name: sub.encoder for name, sub in frozen.items() if name in expected} == expected
    for name in expected:
        sub = frozen[name]
        assert sub.protocol == "probe" and sub.probe is not None
        assert sub.probe.variants(sub.protocol) == ["linear", "knn-1", "knn-20", "fewshot-1", "fewshot-2",
                                                    "fewshot-4", "fewshot-8", "fewshot-16"]
    demo = frozen["demo_cnn_probe"]
    assert demo.encoder == "run:runs/demo/demo_cnn/synthetic" and demo.probe is not None
    assert demo.probe.variants(demo.protocol) == ["linear", "knn-20"]
    grid = [s.submission.name for s in select_submissions(None)]
    assert len(grid) == 24 and not any(name.startswith("probe_") or name.endswith("_probe") for name in grid)
    code, output = invoke("submissions", "list")
    assert code == 0 and "probe_dinobloom_l" in output and "frozen" in output


def test_run_encoder_probe_and_resume_refuses_other_weights(offline: Path, image_cache: Path) -> None:
    """The demo's path: frozen features of a finished fine-tuning run's fold networks (``run:``)."""
    from bmbench.engine.checkpoint import load_checkpoint, save_checkpoint
    from bmbench.runs.run import RunOptions, run_submission
    from bmbench.submissions.schema import load_submission

    ft = tiny_ft_submission(offline / "subs", recipe="epochs = 1\nlr = 0.01\nnum_workers = 0\n")
    runs = offline / "runs"
    trained = run_submission(load_submission(ft), RunOptions(data="synthetic", folds=(0,), out=runs, device="cpu",
                                                             max_steps=1))
    folder = write_probe_submission(offline / "subs", "ft_probe", f"run:{trained.run_dir}",
                                    probe='[probe]\nprotocols = ["linear", "knn"]\n[probe.knn]\nk = [20]\n'
                                          "[probe.linear]\nmax_iter = 60\n")
    code, output = invoke("probe", str(folder), "--data", "synthetic", "--folds", "0", "--out", str(runs),
                          "--device", "cpu")
    assert code == 0, output
    for variant in ("linear", "knn-20"):
        run_dir = runs / "ft_probe" / "synthetic" / variant
        assert_rescored(run_dir, "synthetic-cv5-v1")
        run = read_run(run_dir)
        assert run.encoder is not None and run.encoder.feature_dim == 6 and not run.comparable
        assert run.encoder.weights_sha256 == sha256_file(trained.run_dir / "fold0" / "best.pt")
    # The fine-tuning changes (fold 0 retrained): resuming would mix two encoders, so it is refused.
    best = trained.run_dir / "fold0" / "best.pt"
    state = load_checkpoint(best)
    state["model"] = {k: v + 1 for k, v in state["model"].items()}
    save_checkpoint(best, state)
    code, output = invoke("probe", str(folder), "--data", "synthetic", "--folds", "0", "--out", str(runs),
                          "--device", "cpu", "--resume")
    assert code == 2 and "other encoder weights" in output, output
