"""The board's fixed prose (introduction, section notes, footnotes), shared by the Markdown and HTML pages.

These are bmbench's own sentences, not entry data; both renderers still escape them.
"""

from __future__ import annotations

from bmbench.datasets import BM, SYNTHETIC
from bmbench.leaderboard import stats
from bmbench.leaderboard.board import (
    SEEN_TEST_IMAGES,
    Board,
    Section,
    may_have_seen_test_images,
    one_fold_split,
)

SYNTHETIC_BANNER = ("SYNTHETIC DATA: generated images, not real cells. These results only show that the "
                    "pipeline works; they are not comparable with real results and never enter the main leaderboard.")


def has_seen_rows(sections: list[Section] | tuple[Section, ...]) -> bool:
    """Whether any row is a DinoBloom entry (whose pre-training may have seen the test images)."""
    return any(may_have_seen_test_images(r.entry) for s in sections for r in s.rows)


def intro_lines(board: Board, entry_count: int, *, markdown: bool) -> list[str]:
    """Opening paragraphs: what is ranked, where the figures come from, where the interactive page is."""
    lines = []
    if board.is_demo:
        lines.append(("**" + SYNTHETIC_BANNER + "**") if markdown else SYNTHETIC_BANNER)
        data = f"the SYNTHETIC demo data set ({SYNTHETIC.total:,} generated images)"
    else:
        data = f"the Matek et al. 2021 data ({BM.total:,} expert-labelled images)"
    papers = "" if board.is_demo else ", or for results reported in a paper from its printed figures"
    lines.append(
        f"Bone-marrow cell classification into 21 classes on {data}. Every figure is computed by "
        f"`bmbench leaderboard build` from the {entry_count} entr{'y' if entry_count == 1 else 'ies'} in "
        f"`entries/`: from each result's per-fold confusion matrices through the official scorer{papers}."
    )
    if markdown:
        lines.append("The interactive page [index.html](index.html) adds sorting, filters, the per-class heat map "
                     "and each entry's mean confusion matrix. Every figure of every entry, machine-readable: "
                     "[results.csv](results.csv) and [results.json](results.json); the entry format: "
                     "[entry.schema.json](entry.schema.json).")
    lines.append("Rows are ordered by F1. Entries on different data sets or splits are never ranked together; on "
                 "one split, fine-tuned and frozen-feature entries (column Protocol) are ranked together, since they "
                 "predict the same test images. The leader and the entries not distinguishable from it (\u2248) "
                 "form the leading group" + (" (names in bold)" if markdown else " (highlighted)")
                 + "; Tier groups every entry with those not significantly worse than the best of the rest.")
    return lines


def section_note(section: Section) -> str:
    """One or two sentences under a section heading."""
    seen = any(may_have_seen_test_images(r.entry) for r in section.rows)
    caveat = f" \u2021 {SEEN_TEST_IMAGES}." if seen else ""
    if section.split_name.startswith("dinobloom-"):
        return ("DinoBloom's fixed hold-out (one fold: DinoBloom's published test images): std is not defined and "
                "entries are compared by a paired bootstrap over the test images of their stored predictions. Rows "
                "reported in a paper are DinoBloom's published linear-probe figures, not re-scored (no predictions "
                "were published)." + caveat)
    if section.split_sha256 is not None and one_fold_split(section.split_name):
        return ("A one-fold hold-out split: std is not defined and entries are compared by a paired bootstrap over "
                "the test images of their stored predictions." + caveat)
    if section.split_sha256 is None:
        what = section.description or "the paper's own split"
        return (f"On {what}: figures as published (mean \u00b1 std over folds), ranked only among themselves. "
                "Per-fold results were not published, so there is no paired comparison.")
    if section.synthetic:
        return ("The published SYNTHETIC split: the same folds and test images for every entry, so entries are "
                "compared fold by fold.")
    return ("The published split: the same folds and test images for every entry, so entries are compared fold by "
            "fold." + caveat)


STATISTICS_DOC = "docs/statistics.md"
"""The statistical procedure with formulas and sources, in the repository."""


STATISTICS_LEAD = "The procedure in full, with its formulas and sources:"


def statistics_link(board: Board) -> str | None:
    """The link from the board folder to :data:`STATISTICS_DOC` (after :data:`STATISTICS_LEAD`), if it has one.

    The main board lives at ``leaderboard/`` in the repository, so ``../docs/statistics.md`` resolves on
    GitHub and in a checkout; a demo board can be anywhere (``--dir``), so it names the file without a link.
    """
    return f"../{STATISTICS_DOC}" if board.kind == "main" else None


def per_class_intro() -> str:
    """What the per-class view shows."""
    return ("Per-class F1 and recall (means over folds) of every entry with per-class figures. Recall matters "
            "clinically for rare, decisive classes such as FGC (faggot cells) and BLA (blasts).")


def notes(board: Board, *, paper_rows: bool, seen_rows: bool = False) -> list[str]:
    """Numbered footnotes (those about the paper's rows only where the board shows some)."""
    out = [
        "Precision, recall and F1 follow Gl\u00fcge et al. (2023): per class and fold, precision is 0 for a class "
        "never predicted; the row is the mean over classes of the per-class means over folds \u00b1 the mean over "
        "classes of the per-class sample standard deviations. Macro F1, balanced accuracy and weighted F1 are "
        "mean \u00b1 sample std over folds.",
    ]
    if paper_rows:
        out.append(
            "For a paper that gives per-class figures (Table 5: RegNet_y_32gf ImageNet+CD and Matek et al. 2021) "
            "the row is derived from them and reproduces Table 4 as printed; Matek et al.'s per-class F1 was "
            "computed by Gl\u00fcge et al. from precision and recall means, so its F1 has no std.")
    out.append("AUROC (macro one-vs-rest), log loss (probabilities clipped at 1e-15), Brier score (sum over classes) "
               "and ECE (top-label, 15 equal-width bins) are computed by the official scorer from the 21 probability "
               "columns of the entry's stored predictions file, per fold, mean \u00b1 sample std over folds; "
               "`leaderboard check` recomputes them from that file. An entry without probabilities shows \u2014 "
               "(absent, never zero). Lower is better for log loss, Brier and ECE.")
    out.append(stats.METHOD_NOTE)
    if seen_rows:
        out.append(f"\u2021 {SEEN_TEST_IMAGES}: DinoBloom's encoders were pre-trained on hematology collections that "
                   "include the Matek et al. bone-marrow images, so their frozen features are not independent of the "
                   "test images.")
    if paper_rows:
        out.append(
            "\u2020 Parameters as published in Table 3 of Gl\u00fcge et al. (with the 1000-class ImageNet head); "
            "results run with bmbench count the 21-class model.")
    out.append(
        "Status: reproduced here (a maintainer re-ran the submission's code and got this result), submitted (by "
        "its authors, checked by CI but not re-run), reported in a paper (figures as printed), superseded.")
    out.append("Device-h: accelerator (GPU) hours over all folds; a CPU-only run counts 0 (its wall time is in "
               "the entry).")
    if board.is_demo:
        out.append(SYNTHETIC_BANNER)
    return out
