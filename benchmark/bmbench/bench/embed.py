"""``bmbench bench --embed SUBMISSION``: embedding throughput next to the encoder's pure forward throughput.

Why: ``bmbench embed`` should be limited by the encoder, not by reading, decoding, copying or
preprocessing images. The pure forward pass runs the same encoder, the same way (eval, inference mode,
bf16 autocast + channels_last on CUDA), at the same batch on one preprocessed batch already resident on
the device; the embedding figure is a complete ``bmbench embed`` of the split into a temporary store
(its ``images_per_second``, what the manifest records). The ratio is embed / forward; the issue asks
for at least 0.8 on a GPU.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bmbench.features.embed import Progress, embed, forward_features
from bmbench.features.encoders import load_encoder, run_folds
from bmbench.features.preprocess import batch_transform
from bmbench.features.store import fold_folder, read_manifest
from bmbench.submissions.schema import LoadedSubmission

BENCH_SCHEMA_VERSION = 1


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pure_forward(loaded: LoadedSubmission, *, device: Any, batch: int, steps: int, warmup: int,
                 fold: int | None) -> dict[str, Any]:
    """Images/s of the encoder alone on one device-resident preprocessed batch (random uint8 pixels)."""
    import torch

    encoder = load_encoder(loaded, fold=fold)
    module = encoder.module.to(device)
    if device.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    encoder.module = module
    gen = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (batch, 250, 250, 3), dtype=torch.uint8, generator=gen)
    x = batch_transform(encoder.preprocess)(pixels.to(device))
    for _ in range(warmup):
        forward_features(encoder, x, device)
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        forward_features(encoder, x, device)
    _sync(device)
    seconds = time.perf_counter() - started
    return {"images_per_second": round(batch * steps / seconds, 2), "steps": steps, "warmup": warmup,
            "seconds": round(seconds, 3), "input": [batch, 3, encoder.preprocess.size, encoder.preprocess.size],
            "parameters": encoder.parameters}


def bench_embed(loaded: LoadedSubmission, *, data: str, split_name: str | None, device: str, batch: int, steps: int,
                warmup: int | None = None, progress: Progress | None = None,
                log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Embed the split into a temporary store and time the pure forward pass; both at ``batch``."""
    from bmbench.engine.device import resolve_device
    from bmbench.runs.provenance import device_info

    dev = resolve_device(device)
    warm = warmup if warmup is not None else (5 if dev.type == "cuda" else 1)
    fold = run_folds(str(loaded.submission.encoder))[0] if str(loaded.submission.encoder).startswith("run:") else None
    log(f"pure forward: {steps} timed batches of {batch} after {warm} warm-up")
    forward = pure_forward(loaded, device=dev, batch=batch, steps=steps, warmup=warm, fold=fold)
    with tempfile.TemporaryDirectory(prefix="bmbench-bench-embed-") as tmp:
        log("embedding the split into a temporary store")
        folder = embed(loaded, data=data, split_name=split_name, out_dir=Path(tmp) / "store", device=device,
                       batch=batch, progress=progress, folds=(fold,) if fold is not None else None)
        manifest = read_manifest(fold_folder(folder, fold) if fold is not None else folder)
    embed_ips = manifest.images_per_second
    return {
        "schema_version": BENCH_SCHEMA_VERSION,
        "kind": "embed",
        "submission": loaded.submission.name,
        "encoder": manifest.encoder.model_dump(mode="json"),
        "preprocess": manifest.preprocess.model_dump(mode="json"),
        "data": {"dataset": manifest.dataset, "synthetic": manifest.synthetic, "split": manifest.split.name,
                 "rows": manifest.rows, "image_cache": manifest.image_cache is not None},
        "device": device_info(dev),
        "batch": batch,
        "forward": forward,
        "embed": {"images_per_second": embed_ips, "wall_seconds": manifest.wall_seconds, "dim": manifest.dim},
        "ratio": round(embed_ips / forward["images_per_second"], 3) if forward["images_per_second"] else None,
    }


def render_embed_bench(doc: dict[str, Any], console: Any) -> None:
    """The two figures side by side, and their ratio."""
    from rich.table import Table

    tag = " [SYNTHETIC]" if doc["data"]["synthetic"] else ""
    table = Table(title=f"embed vs pure forward: {doc['encoder']['id']} on {doc['data']['split']}{tag}, "
                        f"batch {doc['batch']}, {doc['device'].get('name', doc['device'].get('type'))}",
                  title_justify="left")
    for col in ("path", "images/s", "seconds", "notes"):
        table.add_column(col, justify="right" if col in ("images/s", "seconds") else "left")
    f, e = doc["forward"], doc["embed"]
    table.add_row("pure forward (device-resident batch)", f"{f['images_per_second']:,.1f}", f"{f['seconds']:.2f}",
                  f"{f['steps']} batches of {f['input']}")
    source = "image cache" if doc["data"]["image_cache"] else "JPEG decoding"
    table.add_row("bmbench embed (whole split)", f"{e['images_per_second']:,.1f}", f"{e['wall_seconds']:.2f}",
                  f"{doc['data']['rows']} images from the {source}, D = {e['dim']}")
    console.print(table)
    if doc["ratio"] is not None:
        console.print(f"embed / forward = {doc['ratio']:.2f}", highlight=False)
