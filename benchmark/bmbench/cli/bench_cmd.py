"""``bmbench bench``: the plain reference path and the bmbench path, measured side by side in one run."""

from __future__ import annotations

import copy
import shlex
import sys
from pathlib import Path

import typer

from bmbench.cli.common import (check_json_out, emit_json, err_console, human_console, json_option, json_to_stdout,
                                progress_bar, user_errors)


@user_errors
def bench(
    backbone: list[str] = typer.Option([], "--backbone", help="torchvision:NAME, timm:NAME, a submission name, or "
                                       "a torchvision model name; repeat for several (default: the paper's four "
                                       "on CUDA, resnet18 on a CPU)."),
    batch: str = typer.Option("32", "--batch", help="Batch size, or 'max': the largest that fits (CUDA)."),
    device: str = typer.Option("auto", "--device", help="auto, cuda or cpu."),
    steps: int = typer.Option(20, "--steps", min=1, help="Timed steps per measurement."),
    warmup: int | None = typer.Option(None, "--warmup", min=0, help="Untimed steps first (compilation happens "
                                      "here; default 5 on CUDA, 1 on a CPU)."),
    eval_steps: int | None = typer.Option(None, "--eval-steps", min=1, help="Timed evaluation batches (default 5 "
                                          "on CUDA, 1 on a CPU)."),
    data: str = typer.Option("synthetic", "--data", help="Data folder or 'synthetic'; every image is cached."),
    images: int | None = typer.Option(None, "--images", min=1, help="Images per epoch: the cached images tiled "
                                      "to this many (e.g. 109700, a real fold's training part)."),
    compile_: bool | None = typer.Option(None, "--compile/--no-compile", help="torch.compile on the bmbench "
                                         "path (default: on CUDA)."),
    layouts: str = typer.Option("auto", "--layouts", help="bmbench path memory layouts: auto (channels_last; "
                                "both for RegNet), both, channels_last or nchw."),
    cuda_graphs: bool = typer.Option(False, "--cuda-graphs", help="CUDA graphs (compile mode reduce-overhead)."),
    paths: str = typer.Option("plain,bmbench", "--paths", help="Which paths to measure."),
    concurrent: int = typer.Option(1, "--concurrent", min=1, help="Also run the bmbench path in N processes at "
                                   "once and report the total throughput (--concurrent-folds N)."),
    only_train: bool = typer.Option(False, "--only-train", help="Training steps only (no data-only, no eval)."),
    json_out: Path | None = json_option("Write the measurements (JSON; a file is rewritten after each backbone) to"),
    seed: int = typer.Option(0, "--seed", help="Seed of sampling, augmentation and initialisation."),
    embed: str | None = typer.Option(None, "--embed", help="A frozen-feature submission: `bmbench embed` throughput vs its encoder's pure forward at the same --batch (other path options ignored)."),
) -> None:
    """Measure data-only throughput, training steps and evaluation of the plain and the bmbench path.

    Prints one side-by-side table per backbone (images/s, step time, peak memory, MFU, ratio, estimated
    device-hours of the full recipe) and writes everything to --json.
    """
    if embed is not None:  # frozen-feature embedding benchmark (bmbench.bench.embed)
        from bmbench.cli.embed_cmd import bench_embed_command

        return bench_embed_command(embed, data=data, device=device, batch=batch, steps=steps, warmup=warmup,
                                   json_out=json_out)
    from bmbench.extras import require

    require("torch", "train", "bmbench bench")
    from bmbench import atomic
    from bmbench.bench.measure import BenchOptions, run_bench
    from bmbench.bench.report import derive, render
    from bmbench.errors import BmbenchError

    check_json_out(json_out)  # refused before any work starts
    chosen = tuple(p.strip() for p in paths.split(",") if p.strip())
    if not chosen or set(chosen) - {"plain", "bmbench"}:
        raise BmbenchError(f"--paths takes plain and/or bmbench separated by a comma, not {paths!r}")
    if batch != "max" and not batch.isdigit():
        raise BmbenchError(f"--batch must be a positive number or 'max', not {batch!r}")
    options = BenchOptions(backbones=tuple(backbone), batch=batch if batch == "max" else int(batch), device=device,
                           steps=steps, warmup=warmup, eval_steps=eval_steps, data=data, images=images,
                           compile=compile_, layouts=layouts, cuda_graphs=cuda_graphs, paths=chosen,
                           concurrent=concurrent, only_train=only_train, seed=seed)

    def log(message: str) -> None:
        err_console.print(f"[dim]{message}[/]", highlight=False)

    open_bars: list = []

    def progress(description: str, total: int):  # noqa: ANN202 - a progress callback factory
        """A Rich bar that closes itself once ``total`` is reached (logs print below it afterwards)."""
        bar = progress_bar(description, total)
        advance, done = bar.__enter__(), [0]
        open_bars.append(bar)

        def step(k: int) -> None:
            advance(k)
            done[0] += k
            if done[0] >= total and bar in open_bars:
                open_bars.remove(bar)
                bar.__exit__(None, None, None)

        return step

    command = "bmbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        doc = run_bench(options, log=log, progress=progress, command=command,
                        on_backbone=(lambda so_far: atomic.write_json(json_out, derive(copy.deepcopy(so_far))))
                        if json_out is not None and not json_to_stdout(json_out) else None)
    except ModuleNotFoundError as exc:
        raise BmbenchError(f"bmbench bench needs the Python package {exc.name!r}, which is not installed "
                           "(see scripts/device-check.sh for running without network access)") from None
    finally:
        for bar in open_bars:
            bar.__exit__(None, None, None)
    derive(doc)
    render(doc, human_console(json_out))
    emit_json(json_out, doc)
