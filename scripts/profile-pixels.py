"""Per-image CPU cost of the plain data path's steps on the synthetic demo images (docs/performance.md, "make demo").

Run after `bmbench data verify --data synthetic` (which generates the set): `python scripts/profile-pixels.py`.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from PIL import Image

from bmbench.data.decode import decode_image
from bmbench.data.layout import scan_data
from bmbench.data.source import resolve_data
from bmbench.datapaths.transforms import train_transform
from bmbench.submissions.registry import default_submissions_dir
from bmbench.submissions.schema import load_submission

N = 500


def main() -> None:
    torch.set_num_threads(1)
    paths = [r.path for r in scan_data(resolve_data("synthetic")).records[:N]]
    transform = train_transform(load_submission(default_submissions_dir() / "demo_cnn").submission.recipe)
    start = time.process_time()
    pixels = [decode_image(Path(p))[0] for p in paths]
    decode = time.process_time() - start
    start = time.process_time()
    images = [Image.fromarray(p) for p in pixels]
    to_pillow = time.process_time() - start
    timed = {}
    for _ in range(2):  # alternate, best of 2: the two inputs side by side
        for name, inputs in (("train transforms from the array", pixels), ("train transforms from Pillow", images)):
            start = time.process_time()
            for image in inputs:
                transform(image)
            timed[name] = min(timed.get(name, float("inf")), time.process_time() - start)
    for name, seconds in (("JPEG decode", decode), ("Image.fromarray", to_pillow), *timed.items()):
        print(f"{name}: {seconds / len(paths) * 1e3:.2f} ms CPU per image ({len(paths)} images, one thread)")


if __name__ == "__main__":
    main()
