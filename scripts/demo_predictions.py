"""Write majority-class predictions for every fold of the SYNTHETIC split (the demo's stand-in model).

Until `bmbench run` trains models, the demo scores this calibration baseline: in each fold it predicts
the class that is most frequent in that fold's training part, with the training class frequencies as
probabilities. Its macro F1 is the floor every real submission must clear.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bmbench import atomic
from bmbench.classes import CLASS_CODES, NUM_CLASSES
from bmbench.splits.store import load_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    split = load_split("synthetic-cv5-v1")
    lines = ["image_id,fold,pred," + ",".join(f"p_{c}" for c in CLASS_CODES)]
    for fold in range(split.folds):
        train = split.labels[split.members(fold, "train")]
        freq = np.bincount(train, minlength=NUM_CLASSES) / len(train)
        probs = ",".join(f"{p:.8f}" for p in freq)
        majority = CLASS_CODES[int(freq.argmax())]
        lines += [f"{split.image_ids[i]},{fold},{majority},{probs}" for i in split.members(fold, "test")]
    atomic.write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote majority-class predictions for the SYNTHETIC split to {args.out}")


if __name__ == "__main__":
    main()
