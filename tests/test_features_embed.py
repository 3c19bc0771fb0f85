"""Frozen-feature encoders and the feature store: timm (registry and hub names), torchvision, model.py and run:
encoders with weights the tests write into temporary caches; resume after a kill; refusals (exit 2).

Everything runs on the CPU on the synthetic data with tiny encoders at 16-32 px, nearest-neighbour resizing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bmbench.errors import BmbenchError
from bmbench.features import embed as embed_mod
from bmbench.features.embed import embed
from bmbench.features.encoders import load_encoder, sha256_file
from bmbench.features.store import FEATURES_FILE, MANIFEST_FILE, PROGRESS_FILE, fold_store, open_store
from bmbench.splits.store import load_split
from bmbench.submissions.schema import load_submission
from feature_fixtures import (BAD_ENCODER, POOL_ENCODER, fake_hub_repo, frozen_submission, offline_caches,
                              safetensors_bytes, tiny_ft_submission, torchvision_weights)

def make_submission(root: Path, name: str, encoder: str, *, model_py: str | None = None,
                    preprocess: str = 'size = 16\ninterpolation = "nearest"', extra: str = "") -> Path:
    """A ``protocol = "linear"`` submission with a ``[preprocess]`` table (16 px, nearest, unless told)."""
    return frozen_submission(root, name, encoder, preprocess=preprocess, model_py=model_py, extra=extra)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No network, empty Hugging Face / torch caches, and no image cache another test built."""
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    return offline_caches(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def split_ids() -> list[str]:
    return [str(i) for i in load_split("synthetic-cv5-v1").image_ids]


def test_model_py_store_roundtrip_and_reuse(offline: Path, split_ids: list[str]) -> None:
    loaded = load_submission(make_submission(offline / "subs", "pool", "model.py", model_py=POOL_ENCODER))
    folder = embed(loaded, data="synthetic", device="cpu", batch=512)
    assert folder.parent.parent == offline / "features" and folder.parent.name == "synthetic"
    store = open_store(folder)
    assert store.features.shape == (len(split_ids), 8) and store.features.dtype == np.float16
    assert store.image_ids == split_ids and not store.features.flags.writeable
    m = store.manifest
    assert m.synthetic and m.split.name == "synthetic-cv5-v1" and m.encoder.kind == "model.py"
    assert m.encoder.feature_dim == 8 and m.encoder.parameters == 8 * 3 * 9 + 8 and m.images_per_second > 0
    assert m.preprocess.size == 16 and "submission [preprocess]" in m.preprocess.source
    assert m.image_cache is None  # no image cache yet: the JPEGs were decoded by workers
    rows = store.rows_for([split_ids[5], split_ids[0]])
    assert rows.tolist() == [5, 0]
    with pytest.raises(BmbenchError, match="lacks 1 of the requested") as err:
        store.rows_for(["ABE_99999"])
    assert err.value.exit_code == 2
    # The features are the encoder's on the preprocessed pixels (row 3, computed independently).
    from bmbench.data.decode import decode_image
    from bmbench.data.layout import scan_data
    from bmbench.data.source import resolve_data
    from bmbench.features.batch import batch_transform

    path = scan_data(resolve_data("synthetic")).by_id()[split_ids[3]].path
    x = batch_transform(m.preprocess)(torch.from_numpy(decode_image(path)[0][None]))
    want = load_encoder(loaded).module(x).detach().numpy()[0].astype(np.float16)
    np.testing.assert_allclose(store.features[3].astype(np.float32), want.astype(np.float32), rtol=1e-2, atol=1e-3)
    # A complete matching store is reused, not recomputed.
    stamp = (folder / FEATURES_FILE).stat().st_mtime_ns
    assert embed(loaded, data="synthetic", device="cpu") == folder
    assert (folder / FEATURES_FILE).stat().st_mtime_ns == stamp


def test_resume_after_kill_gives_the_same_store(offline: Path, monkeypatch: pytest.MonkeyPatch,
                                               image_cache: Path, split_ids: list[str]) -> None:
    loaded = load_submission(make_submission(offline / "subs", "pool", "model.py", model_py=POOL_ENCODER))
    monkeypatch.setattr(embed_mod, "CHUNK_ROWS", 500)
    seen: list[int] = []

    def kill(done: int, total: int, label: str) -> None:
        seen.append(done)
        if done >= 1500:
            raise KeyboardInterrupt

    out = offline / "store"
    with pytest.raises(KeyboardInterrupt):
        embed(loaded, data="synthetic", out_dir=out, device="cpu", batch=250, progress=kill)
    assert (out / PROGRESS_FILE).is_file() and not (out / MANIFEST_FILE).exists()
    state = json.loads((out / PROGRESS_FILE).read_text())
    assert state["rows_done"] == 1500
    with pytest.raises(BmbenchError, match="unfinished") as err:
        open_store(out)
    assert err.value.exit_code == 2
    resumed_from: list[int] = []
    embed(loaded, data="synthetic", out_dir=out, device="cpu", batch=250,
          progress=lambda done, total, label: resumed_from.append(done))
    assert resumed_from[0] == 1750  # the first batch after the 1500 rows kept
    store = open_store(out)
    assert store.manifest.resumed == 1 and not (out / PROGRESS_FILE).exists()
    whole = open_store(embed(loaded, data="synthetic", out_dir=offline / "whole", device="cpu", batch=250))
    np.testing.assert_array_equal(np.asarray(store.features), np.asarray(whole.features))


def test_store_of_another_encoder_or_preprocessing_is_refused(offline: Path, image_cache: Path) -> None:
    subs = offline / "subs"
    a = load_submission(make_submission(subs, "a", "model.py", model_py=POOL_ENCODER))
    b = load_submission(make_submission(subs, "b", "model.py", model_py=POOL_ENCODER, preprocess="size = 20"))
    out = offline / "store"
    embed(a, data="synthetic", out_dir=out, device="cpu", batch=1024)
    with pytest.raises(BmbenchError, match="another encoder, preprocessing or data") as err:
        embed(b, data="synthetic", out_dir=out, device="cpu")
    assert err.value.exit_code == 2 and "preprocess" in err.value.message
    # A manifest whose D disagrees with the array is refused when opened.
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    manifest["dim"] = 9
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BmbenchError, match="records dim D = 9") as err:
        open_store(out)
    assert err.value.exit_code == 2
    (offline / "junk").mkdir()
    (offline / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(BmbenchError, match="not a feature store"):
        embed(a, data="synthetic", out_dir=offline / "junk", device="cpu")


@pytest.mark.parametrize(("body", "message"), [
    ("return nn.Conv2d(3, 4, 3)", "returned shape"),
    ("return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), Nan())", "NaN/infinite"),
    ("return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), Huge())", "float16"),
    ("return nn.Sequential(nn.Flatten(), nn.LazyLinear(4))", "lazy module"),
])
def test_bad_encoder_output_is_refused_and_nothing_kept(offline: Path, body: str, message: str) -> None:
    code = BAD_ENCODER.format(body=body)
    loaded = load_submission(make_submission(offline / "subs", "bad", "model.py", model_py=code,
                                             preprocess="size = 8"))
    out = offline / "store"
    with pytest.raises(BmbenchError, match=message) as err:
        embed(loaded, data="synthetic", out_dir=out, device="cpu", batch=64)
    assert err.value.exit_code == 2 and not out.exists()


def test_offline_without_cached_weights_is_a_fast_clear_error(offline: Path) -> None:
    subs = offline / "subs"
    started = time.perf_counter()
    for name, spec, needle in [
        ("t", "timm:test_resnet.r160_in1k", "model.safetensors of timm/test_resnet.r160_in1k"),
        ("h", "timm:hf-hub:bmbench-test/tiny", "config.json of bmbench-test/tiny"),
        ("v", "torchvision:mobilenet_v3_small", "mobilenet_v3_small-047dcff4.pth"),
    ]:
        loaded = load_submission(make_submission(subs, name, spec))
        with pytest.raises(BmbenchError, match="offline") as err:
            load_encoder(loaded)
        assert err.value.exit_code == 2 and needle in err.value.message
        assert str(offline / ("torch" if name == "v" else "hf")) in err.value.message
    assert time.perf_counter() - started < 10  # no hub retries


def test_timm_registry_weights_from_the_hub_cache(offline: Path) -> None:
    import timm

    source = timm.create_model("test_resnet", pretrained=False)
    snapshot = fake_hub_repo(offline / "hf", "timm/test_resnet.r160_in1k",
                             {"model.safetensors": safetensors_bytes(source, offline)})
    loaded = load_submission(make_submission(offline / "subs", "t", "timm:test_resnet.r160_in1k", preprocess=""))
    enc = load_encoder(loaded)
    assert enc.weights_sha256 == sha256_file(snapshot / "model.safetensors")
    assert (enc.preprocess.size, enc.preprocess.resize) == (160, 168)
    assert enc.preprocess.source == "timm data config"
    x = torch.randn(2, 3, 32, 32)
    expected = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    expected.load_state_dict({k: v for k, v in source.state_dict().items() if not k.startswith("fc.")})
    expected.eval()
    with torch.no_grad():
        torch.testing.assert_close(enc.module(x), expected(x))  # timm's weights, not a random init
    assert enc.module(x).shape == (2, 96)


def test_timm_hub_name_embeds_from_the_hub_cache(offline: Path, split_ids: list[str], image_cache: Path) -> None:
    import timm

    source = timm.create_model("test_efficientnet", pretrained=False)
    config = {"architecture": "test_efficientnet", "num_classes": 1000,
              "pretrained_cfg": {"input_size": [3, 24, 24], "interpolation": "bilinear", "crop_pct": 1.0,
                                 "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "num_classes": 1000,
                                 "classifier": "classifier"}}
    snapshot = fake_hub_repo(offline / "hf", "bmbench-test/tiny", {
        "config.json": json.dumps(config).encode(), "model.safetensors": safetensors_bytes(source, offline)})
    loaded = load_submission(make_submission(offline / "subs", "h", "timm:hf-hub:bmbench-test/tiny",
                                             preprocess='interpolation = "nearest"'))
    store = open_store(embed(loaded, data="synthetic", device="cpu", batch=512))
    m = store.manifest
    assert m.encoder.weights_sha256 == sha256_file(snapshot / "model.safetensors")
    assert m.encoder.id == "timm:hf-hub:bmbench-test/tiny" and m.dim == 256 and len(store) == len(split_ids)
    assert (m.preprocess.size, m.preprocess.std) == (24, (0.25, 0.25, 0.25))
    assert np.isfinite(np.asarray(store.features, dtype=np.float32)).all()


def test_torchvision_weights_from_the_torch_cache(offline: Path) -> None:
    import torchvision

    cached = torchvision_weights(offline / "torch")
    source = torchvision.models.mobilenet_v3_small(weights=None)
    source.load_state_dict(torch.load(cached))
    loaded = load_submission(make_submission(offline / "subs", "v", "torchvision:mobilenet_v3_small", preprocess=""))
    enc = load_encoder(loaded)
    assert enc.weights_sha256 == sha256_file(cached) and enc.kind == "torchvision"
    assert (enc.preprocess.size, enc.preprocess.resize) == (224, 256)
    source.classifier[3] = torch.nn.Identity()
    source.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc.module(x), source(x))
    assert enc.module(x).shape == (2, 1024)


def test_run_encoder_has_one_store_per_fold(offline: Path, split_ids: list[str], image_cache: Path) -> None:
    from bmbench.engine.checkpoint import save_checkpoint
    from bmbench.models.backbones import build_backbone

    ft_folder = tiny_ft_submission(offline / "subs")
    ft = load_submission(ft_folder)
    run_dir = offline / "runs" / "tiny_ft" / "synthetic"
    for fold in (0, 2):
        torch.manual_seed(fold)
        save_checkpoint(run_dir / f"fold{fold}" / "best.pt",
                        {"model": build_backbone("model.py", 21, ft_folder).state_dict()})
    (run_dir / "run.json").write_text(json.dumps({"submission": {"name": "tiny_ft", "folder": str(ft_folder),
                                                                 "digest": ft.digest}}))
    probe = load_submission(make_submission(offline / "subs", "probe", f"run:{run_dir}", preprocess=""))
    folder = embed(probe, data="synthetic", device="cpu", batch=1024, folds=(0, 2))
    stores = {fold: fold_store(folder, fold) for fold in (0, 2)}
    for fold, store in stores.items():
        assert store.folder == folder / f"fold{fold}" and store.manifest.encoder.fold == fold
        assert store.manifest.encoder.weights_sha256 == sha256_file(run_dir / f"fold{fold}" / "best.pt")
        assert store.dim == 6 and store.manifest.preprocess.size == 16
    assert not np.array_equal(np.asarray(stores[0].features), np.asarray(stores[2].features))
    with pytest.raises(BmbenchError, match="none for fold 1") as err:
        fold_store(folder, 1)
    assert err.value.exit_code == 2
    with pytest.raises(BmbenchError, match=r"no best.pt for fold\(s\) \[1\]"):
        embed(probe, data="synthetic", device="cpu", folds=(1,))


@pytest.mark.parametrize(("toml", "message"), [
    ('protocol = "linear"', "needs an encoder"),
    ('protocol = "knn"\nencoder = "timm:x"\nbackbone = "timm:x"', "names its network in encoder only"),
    ('encoder = "timm:x"\nbackbone = "timm:x"\ninit = "random"', "belong to frozen-feature submissions"),
    ('protocol = "fewshot"\nencoder = "keras:x"', "expected 'timm:<model name>'"),
    ('protocol = "linear"\nencoder = "timm:x"\n[preprocess]\nstd = [1, 0, 1]', "std must be > 0"),
    ('protocol = "linear"\nencoder = "model.py"', "build_encoder"),
])
def test_submission_schema_for_frozen_features(tmp_path: Path, toml: str, message: str) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "submission.toml").write_text(f'name = "s"\nauthors = ["a"]\ndescription = "d"\n{toml}\n')
    with pytest.raises(BmbenchError, match=message):
        load_submission(folder)


def test_cli_embed(offline: Path, image_cache: Path) -> None:
    from bmbench.cli.main import app

    folder = make_submission(offline / "subs", "pool", "model.py", model_py=POOL_ENCODER)
    runner = CliRunner()
    out = offline / "cli-store"
    result = runner.invoke(app, ["embed", str(folder), "--data", "synthetic", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "3118 x 8 float16 features of synthetic [SYNTHETIC]" in result.output
    assert "embed model.py: 3118/3118 images" in result.output  # the plain progress line (no terminal)
    finetune = offline / "subs" / "ft"
    finetune.mkdir()
    (finetune / "submission.toml").write_text('name = "ft"\nauthors = ["a"]\ndescription = "d"\n'
                                              'backbone = "torchvision:resnet18"\ninit = "random"\n')
    result = runner.invoke(app, ["embed", str(finetune), "--data", "synthetic", "--device", "cpu"])
    assert result.exit_code == 2 and "no encoder" in result.output


def test_bench_embed_json_is_the_typed_record(offline: Path, image_cache: Path) -> None:
    """`bench --embed --json`: one EmbedBench document (records.embed_bench) that reads back; damage exits 2."""
    from bmbench.cli.main import app
    from bmbench.records.embed_bench import read_embed_bench

    folder = make_submission(offline / "subs", "pool", "model.py", model_py=POOL_ENCODER)
    out = offline / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--embed", str(folder), "--data", "synthetic", "--device", "cpu",
                                      "--batch", "512", "--steps", "1", "--warmup", "0", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "embed / forward = " in result.output and f"wrote {out}" in result.output
    doc = read_embed_bench(out)
    assert doc.schema_version == 1 and doc.kind == "embed" and doc.submission == "pool"
    assert doc.encoder.kind == "model.py" and doc.embed.dim == 8 and doc.data.rows == 3118 and doc.data.synthetic
    assert doc.forward.input == [512, 3, 16, 16] and doc.ratio == round(
        doc.embed.images_per_second / doc.forward.images_per_second, 3)
    raw = json.loads(out.read_text())
    for key, value in (("ratio", -1), ("forward", {**raw["forward"], "steps": 0}), ("extra", 1)):
        out.write_text(json.dumps({**raw, key: value}))
        with pytest.raises(BmbenchError) as err:
            read_embed_bench(out)
        assert err.value.exit_code == 2 and str(out) in err.value.message and key in err.value.message
