"""`bmbench bench` on a CPU: the side-by-side table, the JSON, and the derived figures."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from bmbench.bench.measure import BMBENCH, PLAIN, BenchOptions, largest_batch, peak_bf16_flops, variants
from bmbench.bench.report import derive, fold_sizes, recipe_hours
from bmbench.cli.main import app

runner = CliRunner()


def test_peak_table_matches_specific_devices_first() -> None:
    assert peak_bf16_flops("NVIDIA H100 80GB HBM3") == pytest.approx(989.4e12)
    assert peak_bf16_flops("NVIDIA H100 PCIe") == pytest.approx(756.5e12)
    assert peak_bf16_flops("NVIDIA H100 NVL") == pytest.approx(835.5e12)
    assert peak_bf16_flops("NVIDIA H200") == pytest.approx(989.4e12)
    assert peak_bf16_flops("NVIDIA A100-SXM4-80GB") == pytest.approx(312e12)
    assert peak_bf16_flops("Tesla T4") is None


def test_variants_per_device_and_backbone() -> None:
    cuda, cpu = SimpleNamespace(type="cuda"), SimpleNamespace(type="cpu")
    regnet = variants(BenchOptions(), "torchvision:regnet_y_32gf", cuda)  # the run's layout: NCHW for RegNet
    assert [(v.path, v.layout, v.as_run) for v in regnet] == [(PLAIN, "nchw", False), (BMBENCH, "nchw", True)]
    assert not regnet[0].bf16 and not regnet[0].compile and regnet[1].bf16 and regnet[1].compile
    both = variants(BenchOptions(layouts="both", cuda_graphs=True), "torchvision:resnet152", cuda)
    assert [(v.layout, v.cuda_graphs, v.as_run) for v in both[1:]] == [
        ("channels_last", False, True), ("channels_last", True, False), ("nchw", False, False), ("nchw", True, False)]
    on_cpu = variants(BenchOptions(), "torchvision:regnet_y_32gf", cpu)
    assert [(v.path, v.layout, v.bf16, v.compile) for v in on_cpu] == [(PLAIN, "nchw", False, False),
                                                                       (BMBENCH, "nchw", False, False)]
    assert largest_batch(None, on_cpu[1], cpu, 224) == 32


def test_plain_recipe_defaults_equal_the_pydantic_recipe() -> None:
    from dataclasses import asdict

    from bmbench.recipe import Recipe
    from bmbench.recipe_defaults import PlainRecipe

    assert asdict(PlainRecipe()) == Recipe().model_dump()


def test_recipe_hours_follow_the_split_sizes() -> None:
    sizes = fold_sizes()
    assert len(sizes) == 5 and sum(s[2] for s in sizes) == 171_374
    expected = sum(75 * (tr / 1000 + va / 2000) + te / 2000 + 100 * 32 / 1000 for tr, va, te in sizes) / 3600
    assert recipe_hours(1000.0, 2000.0, 32) == pytest.approx(expected)


def test_derive_computes_mfu_and_ratios() -> None:
    doc = {"device": {"peak_bf16_flops": 1e15}, "data_only": {
        "a": {"path": PLAIN, "images_per_s": 500.0}, "b": {"path": BMBENCH, "images_per_s": 20000.0}},
        "backbones": [{"train_flops_per_image": 1e11, "variants": {
            "plain": {"path": PLAIN, "train": {"images_per_s": 400.0, "batch": 32}, "eval": {"images_per_s": 1000.0}},
            "fast": {"path": BMBENCH, "train": {"images_per_s": 1600.0, "batch": 32},
                     "eval": {"images_per_s": 5000.0}}}}]}
    derive(doc)
    entry = doc["backbones"][0]
    assert entry["variants"]["fast"]["mfu"] == pytest.approx(1600 * 1e11 / 1e15)
    assert entry["ratios"]["train"] == pytest.approx(4.0) and entry["ratios"]["eval"] == pytest.approx(5.0)
    assert entry["ratios"]["recipe_hours"] > 4.0
    assert doc["data_only_summary"]["ratio"] == pytest.approx(40.0)
    assert doc["data_only_summary"]["bmbench_over_fastest_training"] == pytest.approx(12.5)


def test_bench_prints_the_side_by_side_table_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", "--backbone", "demo_cnn", "--device", "cpu", "--steps", "2",
                                 "--batch", "8", "--json", str(out)])
    assert result.exit_code == 0, result.output
    for text in ("plain", "bmbench", "training, images/s", "data only, images/s", "SYNTHETIC DATA", "ratio",
                 "device-hours"):
        assert text in result.output
    doc = json.loads(out.read_text())
    entry = doc["backbones"][0]
    assert entry["backbone"] == "demo_cnn" and entry["image_size"] == 64 and entry["train_flops_per_image"] > 0
    assert set(entry["variants"]) == {"plain", "bmbench (NCHW)"}
    for record in entry["variants"].values():
        assert record["train"]["images"] == 16 and record["train"]["images_per_s"] > 0
        assert record["eval"]["images_per_s"] > 0 and record["recipe_device_hours"] > 0
    assert entry["variants"]["bmbench (NCHW)"]["storage"] == "device"
    assert {d["path"] for d in doc["data_only"].values()} == {PLAIN, BMBENCH}
    assert doc["device"]["type"] == "cpu" and doc["data"]["synthetic"] is True
    assert doc["command"].startswith("bmbench ")


def test_bench_refuses_bad_options() -> None:
    assert runner.invoke(app, ["bench", "--paths", "fast"]).exit_code != 0
    assert runner.invoke(app, ["bench", "--batch", "big"]).exit_code != 0
    result = runner.invoke(app, ["bench", "--backbone", "baseline_majority", "--device", "cpu"])
    assert result.exit_code != 0 and "baseline" in result.output
