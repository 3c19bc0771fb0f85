"""``bmbench pretrain``: in-domain pre-training that produces the pcam / cd / imagenet+pcam / imagenet+cd inits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from bmbench.cli.common import console, user_errors
from bmbench.cli.run_cmd import RichLoopProgress


class RichPretrainProgress(RichLoopProgress):
    """``bmbench run``'s progress bars, labelled with the data set, plus log lines and byte counters."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.epochs = 0

    def epoch_start(self, fold: int, epoch: int, epochs: int, steps: int) -> None:
        self.epochs = epochs
        super().epoch_start(fold, epoch, epochs, steps)

    def epoch_end(self, record: Any) -> None:
        super().epoch_end(record)
        if record.epoch + 1 == self.epochs:
            self.progress.console.print(f"{self.label}: testing the best epoch on the test part", highlight=False)

    def log(self, message: str) -> None:
        self.progress.console.print(message, highlight=False, markup=False)

    def counter(self, description: str, total: int | None) -> Callable[[int], None]:
        """A bar for work before training (decompressing PCam); it goes away once complete."""
        size = f": {total / 1e6:,.1f} MB" if total else ""
        self.log(f"{description}{size}")
        task = self.progress.add_task(description, total=total, rate="")
        done = [0]

        def advance(k: int) -> None:
            done[0] += k
            if total is not None and done[0] >= total:
                self.progress.remove_task(task)
            elif done[0] > 0:
                self.progress.update(task, advance=k)

        return advance


def _summary(result: Any) -> None:
    meta = result.meta
    smoke = " [bold yellow]SMOKE — shortened training[/]" if meta.get("smoke") else ""
    if not result.trained:
        console.print(f"{result.checkpoint} already complete ({meta['dataset']} from {meta['init']}); nothing done")
        return
    test = meta.get("test_accuracy")
    console.print(
        f"[bold]{meta['backbone']}[/] {meta['checkpoint_init']}{smoke}: best epoch {meta['best_epoch'] + 1} of "
        f"{meta['epochs']} | val acc {meta['val_accuracy']:.3f} (final epoch {meta['final_val_accuracy']:.3f})"
        + (f" | test acc {test:.3f}" if test is not None else " | no test split")
        + f" | {meta['seconds']:.0f} s",
        highlight=False,
    )
    console.print(f"checkpoint {result.checkpoint}\n  sha256 {meta['sha256']}\nmetadata   {result.meta_path}",
                  highlight=False)
    console.print(f"submissions with backbone = \"{meta['backbone']}\" and init = \"{meta['checkpoint_init']}\" "
                  "now start from it (the in-domain head is dropped)", highlight=False)


@user_errors
def pretrain(
    dataset: str = typer.Option(..., "--dataset", help="In-domain data set: pcam or cd."),
    backbone: str = typer.Option(..., "--backbone", help="torchvision:<name> or timm:<name>, as in submission.toml."),
    init: str = typer.Option("random", "--init", help="Where pre-training starts: random or imagenet."),
    data: str | None = typer.Option(
        None, "--data", help="Release folder, hf:<id>, a save_to_disk folder or parquet "
        "(default $BMBENCH_PCAM_DATA / $BMBENCH_CD_DATA)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override epochs (smoke checkpoint)."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1,
                                         help="Cap training steps per epoch (smoke checkpoint)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    out_weights: Path | None = typer.Option(
        None, "--out-weights", help="Weights folder to write into (default: $BMBENCH_WEIGHTS or <cache>/weights)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted pre-training from its last epoch."),
    seed: int = typer.Option(0, "--seed", help="Seed of sampling, augmentation and initialisation."),
    recipe: Path | None = typer.Option(
        None, "--recipe", help="TOML with recipe keys to change (the keys of a submission's recipe table), e.g. "
        "batch_size, grad_accumulation, num_workers."),
    image_column: str | None = typer.Option(None, "--image-column", help="Hugging Face image column."),
    label_column: str | None = typer.Option(None, "--label-column", help="Hugging Face label column."),
) -> None:
    """Pre-train a backbone on PatchCamelyon or Comparison Detector; writes the in-domain checkpoint + metadata."""
    from bmbench.extras import require

    require("torch", "pretrain", "bmbench pretrain")
    from bmbench.pretraining.pretrain import PretrainOptions, load_recipe_file, pretrain as run_pretrain

    options = PretrainOptions(
        dataset=dataset, backbone=backbone, init=init, data=data, epochs=epochs, max_steps=max_steps,
        device=device, out_weights=out_weights, resume=resume, seed=seed,
        recipe=load_recipe_file(recipe, dataset) if recipe is not None else None,
        image_column=image_column, label_column=label_column,
    )
    with RichPretrainProgress(dataset) as progress:
        result = run_pretrain(options, progress=progress)
    _summary(result)
