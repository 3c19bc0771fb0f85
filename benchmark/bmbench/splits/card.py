"""The split card (``splits/README.md``): the algorithm, the counts per class and fold, and caveats.

Rendered from the same derivation as the split files, so ``bmbench splits verify`` can check that the
card still describes the files byte for byte.
"""

from __future__ import annotations

from collections import Counter

from bmbench.classes import cell_classes
from bmbench.splits.algorithm import ROLES
from bmbench.splits.store import SUMS_NAME, SplitSpec, split_specs

_ALGORITHM = '''\
## The algorithm

Every split is derived from nothing but the list of image ids (file stems such as `ABE_00001`; for the
BM data `<CODE>_<n:05d>` for n = 1 .. the number of images of the class), the split's name and, for
`dinobloom-bm-v1`, DinoBloom's published list of test ids. It uses
no library's random generator, so anyone can re-derive it:

The cross-validation splits (`*-cv5-*`):

- `key(purpose, id)` = hex SHA-256 of the UTF-8 string `"<split name>:<purpose>:<id>"`.
- **Test folds.** Per class, order the ids by `key("test", id)`; the id of rank r (0-based) is in the
  test set of fold `r mod 5`. Every image is tested exactly once; each fold tests 20 % of every class.
- **Validation.** For fold k, per class, take the m ids whose test fold is not k and order them by
  `key("val<k>", id)` (purposes `val0` ... `val4`); the first `floor(0.2 * m + 0.5)` of them are `val`
  in fold k, the rest `train`.

This is the protocol of Glüge et al. (2023): stratified 5-fold cross-validation, and inside each fold's
training part 20 % of each class held out for validation (model selection and the learning-rate
schedule), the test part never seen in training.

A reference implementation in plain Python:

```python
import hashlib, math

def key(split, purpose, image_id):
    return hashlib.sha256(f"{split}:{purpose}:{image_id}".encode()).hexdigest()

def derive(split, ids_of_one_class, folds=5, val_fraction=0.2):
    ranked = sorted(ids_of_one_class, key=lambda i: key(split, "test", i))
    test_fold = {i: r % folds for r, i in enumerate(ranked)}
    roles = {i: ["train"] * folds for i in ids_of_one_class}
    for k in range(folds):
        rest = sorted((i for i in ids_of_one_class if test_fold[i] != k), key=lambda i: key(split, f"val{k}", i))
        for i in rest[: math.floor(val_fraction * len(rest) + 0.5)]:
            roles[i][k] = "val"
    for i, k in test_fold.items():
        roles[i][k] = "test"
    return roles
```

## Hold-out splits (one fold)

A hold-out split has one fold, `fold0`. Its test part is either a published list of ids (the list is
shipped with bmbench under `sources/` and checked against its SHA-256 before use) or, per class, the first
`floor(0.2 * n)` ids by `key("test", id)`. Of the m other ids of each class, the first
`floor(0.2 * m + 0.5)` by `key("val0", id)` are `val`, the rest `train`. With one fold there is no
standard deviation over folds and no fold-paired test; intervals come from bootstrapping test images.

## File format

`<name>.csv`: header `image_id,label,fold0,fold1,fold2,fold3,fold4` (`image_id,label,fold0` for a hold-out
split), one row per image sorted by
`image_id`, `label` the class code, each fold cell `train`, `val` or `test`; UTF-8, `\\n` line ends, no
quoting. `SHA256SUMS` holds the SHA-256 of each file in `sha256sum` format (`sha256sum -c SHA256SUMS`
checks them). bmbench refuses to read a split whose hash differs; `bmbench splits verify` re-derives
every file from the algorithm and compares bytes, hashes and this card.

## Image-level, not patient-level

The BM release carries no patient identifiers, so these splits are image-level: cells from the same
patient and the same smear can fall into both the training and the test part of a fold. They share
staining, illumination and patient-specific morphology, so test scores can be optimistic compared with
a split by patient and do not measure generalisation to new patients, laboratories or scanners. Every
entry on the bmbench board shares this property, so entries remain comparable with each other, and
with the paper, which used the same kind of split; they are not estimates of clinical performance.
'''


def _counts_table(spec: SplitSpec) -> str:
    """Per class: images, and per fold the sizes of the train / val / test parts."""
    rows = spec.derive()
    counts: Counter[tuple[str, int, str]] = Counter()
    for row in rows:
        for fold, role in enumerate(row.roles):
            counts[(row.label, fold, role)] += 1
    per_class = Counter(row.label for row in rows)
    fold_heads = " | ".join(f"fold {f} train / val / test" for f in range(spec.folds))
    lines = [
        f"| class | name | images | {fold_heads} |",
        "|---|---|---:|" + "---:|" * spec.folds,
    ]
    for cls in cell_classes():
        cells = " | ".join(
            " / ".join(str(counts[(cls.code, f, role)]) for role in ROLES) for f in range(spec.folds)
        )
        lines.append(f"| {cls.code} | {cls.name} | {per_class[cls.code]} | {cells} |")
    totals = " | ".join(
        " / ".join(str(sum(counts[(c.code, f, role)] for c in cell_classes())) for role in ROLES)
        for f in range(spec.folds)
    )
    lines.append(f"| **all** | | **{len(rows)}** | {totals} |")
    return "\n".join(lines)


def render_card(hashes: dict[str, str]) -> str:
    """The full split card, given the SHA-256 of each split file (file name -> hash)."""
    parts = [
        "# Published splits\n",
        "These files define the bmbench benchmark: which images train, validate and test in each fold.\n"
        "They are generated by `bmbench splits build` and checked by `bmbench splits verify`; do not edit them.\n",
        "| split | data set | folds | images | SHA-256 |",
        "|---|---|---:|---:|---|",
    ]
    specs = list(split_specs().values())
    for spec in specs:
        digest = hashes.get(spec.filename, "(not built)")
        parts.append(f"| `{spec.name}` | {spec.dataset.title} | {spec.folds} | {spec.dataset.total} | `{digest}` |")
    parts.append("")
    parts.append(_ALGORITHM)
    for spec in specs:
        parts.append(f"## `{spec.name}`\n")
        parts.append(spec.description + "\n")
        if spec.test_ids is not None:
            parts.append(f"Test ids: `{spec.test_ids}` (SHA-256 `{spec.test_ids_sha256}`), from {spec.source}. "
                         f"Licence of the list: {spec.licence}.\n")
        if spec.notes:
            parts.append(f"**Caveat.** {spec.notes}\n")
        if spec.dataset.synthetic:
            parts.append("**SYNTHETIC data: for demos and tests only, never ranked with real results.**\n")
        parts.append("Images per class, and per fold the number of train / val / test images:\n")
        parts.append(_counts_table(spec) + "\n")
    parts.append(f"Hashes: see `{SUMS_NAME}`.\n")
    return "\n".join(parts)
