"""``bmbench explain``: Grad-CAM galleries of one class for a finished run (paper Figs. 5 and 6).

For a run folder (``runs/<submission>/<dataset>``) and a class, this picks test images of that class from
the run's ``predictions.csv`` (each predicted by its own fold's model), the correctly classified ones with the
highest probability for the class and the misclassified ones with the most confident wrong prediction,
loads each fold's ``best.pt`` into the submission's network (refusing a submission whose files changed since
the run: its digest must equal the one in ``run.json``), and computes Grad-CAM maps: for the predicted class
(what drove the decision) and, for a misclassified image, also for the true class. It writes, atomically,
``gallery.png`` (the grid), ``gallery.html`` (one self-contained page: images embedded, every string escaped)
and ``explain.json`` (what was shown and why) into ``<run>/explain/<CLASS>/`` (or ``--out``).
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bmbench import atomic
from bmbench.classes import CLASS_CODES, CLASS_INDEX, NUM_CLASSES, cell_classes
from bmbench.errors import BmbenchError
from bmbench.records.explain import EXPLAIN_FILE, Available, ExplainedImage, ExplainRecord, write_explain
from bmbench.records.run import DataRef, RunRecord, check_submission, read_run

CORRECT_PER_ROW = 6
WRONG_PER_ROW = 4
PANEL, GAP, CARD_GAP, CAPTION, MARGIN, TITLE, HEADER = 200, 6, 24, 34, 16, 36, 32
"""Gallery geometry in pixels: panel side, gaps, caption band, margin, title and section header heights."""
SELECTION_RULE = ("correctly classified: highest probability for the class first; misclassified: most "
                  "confident wrong prediction first; ties by image id; half of --n each where available")


@dataclass(frozen=True)
class ExplainOptions:
    """What ``bmbench explain`` lets a user choose besides the run folder."""

    code: str
    n: int = 16
    folds: tuple[int, ...] | None = None
    data: str | None = None
    submission: str | None = None
    out: Path | None = None
    device: str = "auto"


@dataclass(frozen=True)
class Example:
    """One test image of the class: where it is, which fold tested it, what the run predicted."""

    image_id: str
    fold: int
    true: str
    pred: str
    p_true: float
    p_pred: float

    @property
    def correct(self) -> bool:
        return self.true == self.pred


@dataclass
class ExplainedExample:
    """An example with its pixels (RGB uint8, stored size) and Grad-CAM maps (input size) by target class."""

    example: Example
    image: np.ndarray = field(repr=False)
    maps: dict[str, np.ndarray] = field(repr=False)


@dataclass
class ExplainResult:
    """What ``explain_run`` wrote and showed."""

    out_dir: Path
    png: Path
    html: Path
    json: Path
    examples: list[ExplainedExample]
    available_correct: int
    available_wrong: int
    target_layer: str
    target_rule: str
    synthetic: bool
    smoke: bool
    record: ExplainRecord = field(repr=False)

    @property
    def meta(self) -> dict[str, Any]:
        """The record as written to ``explain.json`` (JSON types, ``class`` for the class code)."""
        return self.record.model_dump(mode="json")


def _submission_for(run: RunRecord, run_dir: Path, override: str | None) -> Any:
    """The run's submission, refused if its files differ from what the run recorded (digest)."""
    from bmbench.submissions.registry import resolve_submission

    recorded = run.submission
    ref = override or (recorded.folder if Path(recorded.folder).is_dir() else recorded.name)
    loaded = resolve_submission(ref)
    check_submission(run, loaded.folder, where=run_dir / "run.json")  # its checkpoints must fit the code
    if loaded.submission.kind == "baseline":
        raise BmbenchError(f"{loaded.submission.name} is a baseline; Grad-CAM needs a neural network")
    return loaded


def pick_examples(split: Any, preds: Any, code: str, n: int,
                  folds: tuple[int, ...] | None = None) -> tuple[list[Example], int, int]:
    """Up to ``n`` test images of class ``code`` (half correct, half misclassified where there are enough).

    Returns ``(examples, correct available, misclassified available)``; see :data:`SELECTION_RULE`.
    """
    cls = CLASS_INDEX[code]
    probs = preds.probs
    rows = np.flatnonzero(split.labels[preds.positions] == cls)
    if folds is not None:
        rows = rows[np.isin(preds.folds[rows], folds)]
    correct, wrong = [], []
    for r in rows:
        pos, pred = int(preds.positions[r]), int(preds.pred[r])
        p_true = float(probs[r, cls]) if probs is not None else math.nan
        p_pred = float(probs[r, pred]) if probs is not None else math.nan
        ex = Example(str(split.image_ids[pos]), int(preds.folds[r]), code, CLASS_CODES[pred], p_true, p_pred)
        (correct if pred == cls else wrong).append(ex)
    correct.sort(key=lambda e: (-np.nan_to_num(e.p_true, nan=0.0), e.image_id))
    wrong.sort(key=lambda e: (-np.nan_to_num(e.p_pred, nan=0.0), e.image_id))
    n_correct = min(len(correct), max(n - min(len(wrong), n // 2), 0))
    n_wrong = min(len(wrong), n - n_correct)
    return correct[:n_correct] + wrong[:n_wrong], len(correct), len(wrong)


def _data_index(run: RunRecord, option: str | None) -> Any:
    import os

    from bmbench.data.layout import scan_data
    from bmbench.data.source import DATA_ENV, SYNTHETIC, resolve_data

    data = run.data
    if option is None and not os.environ.get(DATA_ENV):
        root = Path(data.root)
        option = str(root) if root.is_dir() else (SYNTHETIC if data.synthetic else None)
    index = scan_data(resolve_data(option))
    if index.dataset.id != data.dataset:
        raise BmbenchError(f"the run was made on data set {data.dataset!r} but {index.root} holds "
                           f"{index.dataset.id!r}; pass --data with the run's data")
    return index


def _load_fold_model(loaded: Any, run_dir: Path, fold: int, device: Any) -> Any:
    from bmbench.models.backbones import build_backbone
    from bmbench.engine.checkpoint import load_checkpoint

    path = run_dir / f"fold{fold}" / "best.pt"
    if not path.is_file():
        raise BmbenchError(f"{path} is missing: fold {fold}'s best checkpoint is needed to explain its test images")
    model = build_backbone(loaded.submission.backbone, NUM_CLASSES, loaded.folder)
    state = load_checkpoint(path)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as err:
        raise BmbenchError(f"{path} does not fit {loaded.submission.backbone}: {err}") from None
    return model.to(device).float().eval()


def explain_run(run_dir: Path, options: ExplainOptions) -> ExplainResult:
    """Grad-CAM gallery of class ``options.code`` for the run in ``run_dir``; see the module docstring."""
    import torch
    from PIL import Image

    from bmbench.data.decode import decode_image
    from bmbench.explain.cam import grad_cam_maps
    from bmbench.explain.targets import choose_target_layer
    from bmbench.scoring.predictions import read_predictions
    from bmbench.splits.store import check_folds, load_split
    from bmbench.engine.device import resolve_device
    from bmbench.datapaths.transforms import eval_transform

    run_dir = Path(run_dir)
    code = options.code.strip().upper()
    if code not in CLASS_INDEX:
        raise BmbenchError(f"--class must be one of {', '.join(CLASS_CODES)}, not {options.code!r}")
    if options.n < 1:
        raise BmbenchError("--n must be at least 1")
    run = read_run(run_dir)
    loaded = _submission_for(run, run_dir, options.submission)
    split = load_split(run.split.name)
    if split.sha256 != run.split.sha256:
        raise BmbenchError(f"split {split.name} has SHA-256 {split.sha256}, the run recorded "
                           f"{run.split.sha256}: the run was made on another version of the split")
    if options.folds is not None:
        check_folds(options.folds, split)
    preds = read_predictions(run_dir / "predictions.csv", split)
    absent = [f for f in options.folds or () if f not in preds.folds_scored]
    if absent:
        raise BmbenchError(f"--folds: fold {', '.join(map(str, absent))} is not in this run (it has folds "
                           f"{', '.join(map(str, preds.folds_scored))})")
    examples, n_correct, n_wrong = pick_examples(split, preds, code, options.n, options.folds)
    fold_label = "-".join(map(str, options.folds)) if options.folds is not None else None
    if not examples:
        where = f" in fold {fold_label}" if fold_label is not None else ""
        raise BmbenchError(f"the run has no test image of class {code}{where}")
    index = _data_index(run, options.data)
    paths = dict(zip((e.image_id for e in examples), index.paths_for([e.image_id for e in examples], split.name),
                     strict=True))
    device = resolve_device(options.device)
    transform = eval_transform(loaded.submission.recipe)
    explained: list[ExplainedExample] = []
    target_name = target_rule = ""
    for fold in sorted({e.fold for e in examples}):
        model = _load_fold_model(loaded, run_dir, fold, device)
        target = choose_target_layer(model, loaded.submission.backbone)
        target_name, target_rule = target.name, target.rule
        members = [e for e in examples if e.fold == fold]
        pixels = [decode_image(paths[e.image_id])[0] for e in members]
        inputs = torch.stack([transform(Image.fromarray(p)) for p in pixels])
        jobs = [(i, e.pred) for i, e in enumerate(members)] + [(i, e.true) for i, e in enumerate(members)
                                                               if not e.correct]
        maps = grad_cam_maps(model, target, inputs[[i for i, _ in jobs]], [CLASS_INDEX[c] for _, c in jobs])
        by_member: list[dict[str, np.ndarray]] = [{} for _ in members]
        for (i, c), m in zip(jobs, maps, strict=True):
            by_member[i][c] = m
        explained += [ExplainedExample(e, p, m) for e, p, m in zip(members, pixels, by_member, strict=True)]
        del model
    order = {e.image_id: k for k, e in enumerate(examples)}
    explained.sort(key=lambda x: order[x.example.image_id])

    out_dir = options.out or run_dir / "explain" / (code if fold_label is None else f"{code}-fold{fold_label}")
    synthetic = run.data.synthetic
    smoke = run.smoke is not None
    record = ExplainRecord(
        run_dir=str(run_dir), submission=run.submission, split=run.split,
        data=DataRef(dataset=index.dataset.id, synthetic=synthetic, root=str(index.root)), smoke=run.smoke,
        class_code=code, class_name=cell_classes()[CLASS_INDEX[code]].name, folds=list(options.folds) if options.folds is not None else None,
        n_requested=options.n, available=Available(correct=n_correct, misclassified=n_wrong),
        selection=SELECTION_RULE, method="Grad-CAM (pytorch_grad_cam.GradCAM, float32)", target_layer=target_name,
        target_rule=target_rule, input_size=int(loaded.submission.recipe.eval_size),
        examples=[ExplainedImage(image_id=x.example.image_id, fold=x.example.fold, true=x.example.true,
                                 pred=x.example.pred, p_true=_probability(x.example.p_true),
                                 p_pred=_probability(x.example.p_pred), correct=x.example.correct,
                                 maps_for=list(x.maps)) for x in explained],
    )
    result = ExplainResult(out_dir=out_dir, png=out_dir / "gallery.png", html=out_dir / "gallery.html",
                           json=out_dir / EXPLAIN_FILE, examples=explained, available_correct=n_correct,
                           available_wrong=n_wrong, target_layer=target_name, target_rule=target_rule,
                           synthetic=synthetic, smoke=smoke, record=record)
    atomic.write_bytes(result.png, render_png(result))
    atomic.write_text(result.html, render_html(result))
    write_explain(result.json, record)
    return result


def _probability(p: float) -> float | None:
    """A probability for the record: None when the run's predictions carry none (NaN here)."""
    return p if math.isfinite(p) else None


def _title(result: ExplainResult) -> str:
    record = result.record
    tags = (" - SYNTHETIC DATA" if result.synthetic else "") + (" - SMOKE RUN, not comparable" if result.smoke else "")
    folds = record.folds
    fold = f", fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))}" if folds is not None else ""
    return (f"Grad-CAM: {record.class_code} ({record.class_name}), {record.submission.name} on "
            f"{record.split.name}{fold}{tags}")


def _panels(x: ExplainedExample) -> list[tuple[np.ndarray, str]]:
    """(RGB image, caption) panels of one example: the image, the map for the prediction, the true class's map."""
    from bmbench.explain.cam import overlay

    e = x.example
    p = f"{e.p_pred:.2f}" if math.isfinite(e.p_pred) else "n/a"
    out = [(x.image, f"{e.image_id} (fold {e.fold})\npred {e.pred} p={p}")]
    out.append((overlay(x.image, x.maps[e.pred]), f"Grad-CAM for {e.pred}" + (" (pred)" if not e.correct else "")))
    if not e.correct:
        out.append((overlay(x.image, x.maps[e.true]), f"Grad-CAM for {e.true} (true)"))
    return out


def render_png(result: ExplainResult) -> bytes:
    """The gallery as one PNG (drawn with Pillow): correct cards (image, map), then misclassified (image, 2 maps)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=13)
    big = ImageFont.load_default(size=18)
    correct = [x for x in result.examples if x.example.correct]
    wrong = [x for x in result.examples if not x.example.correct]
    sections = [(f"Correctly classified ({len(correct)} of {result.available_correct})", correct, CORRECT_PER_ROW, 2),
                (f"Misclassified ({len(wrong)} of {result.available_wrong})", wrong, WRONG_PER_ROW, 3)]

    def card_width(panels: int) -> int:
        return panels * PANEL + (panels - 1) * GAP

    width = max(per_row * card_width(panels) + (per_row - 1) * CARD_GAP for _, _, per_row, panels in sections)
    width += 2 * MARGIN
    row_height = CAPTION + PANEL + CARD_GAP
    height = MARGIN + TITLE + sum(HEADER + max(1, math.ceil(len(items) / per_row)) * row_height
                                  for _, items, per_row, _ in sections) + MARGIN
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    warn = result.synthetic or result.smoke
    draw.text((MARGIN, MARGIN), _title(result), fill=(170, 0, 0) if warn else (0, 0, 0), font=big)
    y = MARGIN + TITLE
    for title, items, per_row, panels in sections:
        draw.text((MARGIN, y + 4), title, fill=(0, 0, 0), font=big)
        y += HEADER
        if not items:
            draw.text((MARGIN, y + CAPTION), "none", fill=(90, 90, 90), font=font)
        for k, x in enumerate(items):
            row, col = divmod(k, per_row)
            x0 = MARGIN + col * (card_width(panels) + CARD_GAP)
            y0 = y + row * row_height
            for j, (img, caption) in enumerate(_panels(x)):
                px = x0 + j * (PANEL + GAP)
                for line_no, line in enumerate(caption.splitlines()[:2]):
                    draw.text((px, y0 + line_no * 15), line, fill=(0, 0, 0), font=font)
                canvas.paste(Image.fromarray(img).resize((PANEL, PANEL), Image.BILINEAR), (px, y0 + CAPTION))
        y += max(1, math.ceil(len(items) / per_row)) * row_height
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _data_uri(img: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def render_html(result: ExplainResult) -> str:
    """One self-contained page (images as data URIs, no external files); every string is HTML-escaped."""
    e = html.escape
    record = result.record
    banner = ""
    if result.synthetic:
        banner += "<p class=warn>SYNTHETIC DATA: these are generated images, not real cells.</p>"
    if result.smoke:
        banner += "<p class=warn>SMOKE RUN (shortened training): not comparable with full runs.</p>"
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>{e(_title(result))}</title><style>",
        "body{font-family:sans-serif;margin:1.5em}.warn{color:#a00;font-weight:bold}"
        ".cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ccc;padding:6px;border-radius:4px}"
        ".card img{width:180px;height:180px;margin-right:4px}.cap{font-size:12px;margin-top:4px}"
        "figure{display:inline-block;margin:0}figcaption{font-size:11px;text-align:center}",
        f"</style></head><body><h1>{e(_title(result))}</h1>{banner}",
        f"<p>Run <code>{e(record.run_dir)}</code>; submission <code>{e(record.submission.name)}</code> "
        f"(digest {e(record.submission.digest[:12])}…); split {e(record.split.name)}; "
        f"Grad-CAM target layer <code>{e(result.target_layer)}</code> ({e(result.target_rule)}); "
        f"model input {record.input_size}×{record.input_size} px. Red = high contribution to the named class.</p>",
        f"<p>Selection: {e(SELECTION_RULE)}.</p>",
    ]
    for title, items in ((f"Correctly classified ({sum(x.example.correct for x in result.examples)} of "
                          f"{result.available_correct})", [x for x in result.examples if x.example.correct]),
                         (f"Misclassified ({sum(not x.example.correct for x in result.examples)} of "
                          f"{result.available_wrong})", [x for x in result.examples if not x.example.correct])):
        parts.append(f"<h2>{e(title)}</h2><div class=cards>")
        if not items:
            parts.append("<p>none</p>")
        for x in items:
            figs = "".join(f"<figure><img src=\"{_data_uri(img)}\" alt=\"{e(cap)}\"><figcaption>"
                           f"{e(cap.splitlines()[0] if k == 0 else cap)}</figcaption></figure>"
                           for k, (img, cap) in enumerate(_panels(x)))
            ex = x.example
            p_true = f"{ex.p_true:.3f}" if math.isfinite(ex.p_true) else "n/a"
            p_pred = f"{ex.p_pred:.3f}" if math.isfinite(ex.p_pred) else "n/a"
            parts.append(f"<div class=card>{figs}<div class=cap>true {e(ex.true)} (p={p_true}) · predicted "
                         f"{e(ex.pred)} (p={p_pred}) · fold {ex.fold}</div></div>")
        parts.append("</div>")
    parts.append("</body></html>\n")
    return "".join(parts)
