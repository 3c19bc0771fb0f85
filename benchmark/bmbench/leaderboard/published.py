"""The paper's published results as leaderboard entries of status ``reported in a paper``.

Every row of Table 4 (24 Glüge et al. 2023 rows and the Matek et al. 2021 ResNeXt-50 row) becomes an
entry; the two rows with per-class figures in Table 5 (RegNet_y_32gf ImageNet+CD and Matek 2021) carry them,
and the board derives their mean row from those figures (:func:`derived_metrics`), which must come out as
Table 4 printed it (:func:`printed_mismatches`). Figures come from the package's copies of the tables
(``bmbench/resources/paper``); who reported them and on which split comes from ``sources.toml`` beside this
module. Nothing here is typed by hand: ``bmbench leaderboard import-published`` writes these entries and
``bmbench leaderboard check`` verifies the files still equal them.
"""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from bmbench.classes import CLASS_CODES
from bmbench.leaderboard.schema import (
    PAPER_METRICS,
    PAPER_STATUS,
    ClassFigures,
    Code,
    Compute,
    Entry,
    MeanStd,
    Metrics,
    PublishedResults,
    Source,
    SplitRef,
)
from bmbench.scoring.metrics import paper_summary

PAPER_RESOURCE = "bmbench.resources.paper"
DISPLAY_DECIMALS = 3
"""The paper prints three decimals; derived rows are compared with it at that precision."""


@dataclass(frozen=True)
class SourceInfo:
    """One publication: citation, URL, authors, split and how its per-class figures sit in Table 5."""

    key: str
    citation: str
    url: str
    year: str
    authors: tuple[str, ...]
    tables: str
    per_class_tables: str
    backbone_prefix: str
    parameters_note: str
    split_name: str
    split_description: str
    per_class_prefix: str
    per_class_model: str
    per_class_pretraining: str


@cache
def _config() -> dict[str, Any]:
    text = resources.files("bmbench.leaderboard").joinpath("sources.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def sources() -> dict[str, SourceInfo]:
    """The publications of Table 4, by the key used in its ``source`` column."""
    return {key: SourceInfo(key=key, **{**value, "authors": tuple(value["authors"])})
            for key, value in _config()["sources"].items()}


def pretraining_data(init: str) -> list[str]:
    """External data sets behind a Table 4 initialisation (``imagenet+cd`` -> ImageNet-1k, Comparison Detector)."""
    table = _config()["pretraining_data"]
    if init not in table:
        raise KeyError(f"sources.toml has no [pretraining_data] for initialisation {init!r}")
    return list(table[init])


def read_table(number: int) -> list[dict[str, str]]:
    """Rows of ``published_table<number>.csv`` from the package."""
    text = resources.files(PAPER_RESOURCE).joinpath(f"published_table{number}.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def entry_name(source: str, model: str, pretraining: str) -> str:
    """``gluge2023_regnet_y_32gf_imagenet_cd``: safe for a file name, unique per Table 4 row."""
    return f"{source}_{model}_{pretraining}".replace("+", "_").lower()


def _figure(row: dict[str, str], mean_column: str, std_column: str) -> MeanStd:
    std = row.get(std_column, "")
    return MeanStd(mean=float(row[mean_column]), std=float(std) if std not in ("", None) else None)


def _per_class(info: SourceInfo, table5: list[dict[str, str]]) -> dict[str, ClassFigures]:
    by_code = {row["class"]: row for row in table5}
    prefix = info.per_class_prefix
    return {
        code: ClassFigures(**{m: _figure(by_code[code], f"{prefix}_{m}", f"{prefix}_{m}_std") for m in PAPER_METRICS})
        for code in CLASS_CODES
    }


def published_entries() -> list[Entry]:
    """One entry per Table 4 row, in the table's order (the per-class figures attached where Table 5 has them)."""
    info_by_key = sources()
    table3 = {row["model"]: int(row["params_1000_class_head"]) for row in read_table(3)}
    table5 = read_table(5)
    entries: list[Entry] = []
    for row in read_table(4):
        info = info_by_key[row["source"]]
        model, init = row["model"], row["pretraining"]
        has_per_class = (model, init) == (info.per_class_model, info.per_class_pretraining)
        parameters = table3.get(model) if info.backbone_prefix else None
        data = pretraining_data(init)
        entries.append(Entry(
            name=entry_name(info.key, model, init),
            status=PAPER_STATUS,
            authors=list(info.authors),
            backbone=f"{info.backbone_prefix}{model}",
            init=init,
            pretraining_data=data,
            external_data=bool(data),
            parameters=parameters,
            parameters_note=info.parameters_note if parameters is not None else None,
            code=Code(),
            compute=Compute(),
            split=SplitRef(name=info.split_name, sha256=None, dataset="bm", description=info.split_description),
            date=info.year,
            results=PublishedResults(
                kind="published",
                source=Source(citation=info.citation, url=info.url,
                              tables=info.per_class_tables if has_per_class else info.tables),
                per_class=_per_class(info, table5) if has_per_class else None,
            ),
            metrics=Metrics(**{m: _figure(row, f"{m}_mean", f"{m}_std") for m in PAPER_METRICS}),
        ))
    return entries


def reported_sources() -> list[str]:
    """Keys of the ``[reported.*]`` publications (entry names start with ``<key>_``)."""
    return sorted(_config().get("reported", {}))


def reported_entries() -> list[Entry]:
    """Figures reported on one of bmbench's published splits (``[reported.*]`` of sources.toml), not re-scored."""
    from bmbench.splits.store import default_splits_dir, get_split_spec, read_sums

    entries: list[Entry] = []
    for key, info in sorted(_config().get("reported", {}).items()):
        spec = get_split_spec(info["split_name"])
        sha = read_sums(default_splits_dir())[spec.filename]
        text = resources.files(PAPER_RESOURCE).joinpath(info["table"]).read_text(encoding="utf-8")
        for row in csv.DictReader(text.splitlines()):
            figures = {m: MeanStd(mean=float(row[m])) for m in ("accuracy", "balanced_accuracy", "weighted_f1")
                       if row.get(m)}
            data = list(info["pretraining_data"])
            entries.append(Entry(
                name=f"{key}_{row['model']}_{row['protocol']}".replace("-", "_"),
                status=PAPER_STATUS,
                protocol=row["protocol"],
                authors=list(info["authors"]),
                backbone=row["label"],
                init=info["init"],
                pretraining_data=data,
                external_data=bool(data),
                code=Code(url=info["url"]),
                compute=Compute(),
                split=SplitRef(name=spec.name, sha256=sha, dataset=spec.dataset.id),
                date=info["year"],
                results=PublishedResults(kind="published", source=Source(citation=info["citation"], url=info["url"],
                                                                          tables=info["tables"])),
                metrics=Metrics(**figures),
                notes=f"{info['notes']} Feature dimension {row['feature_dim']}.",
            ))
    return entries


def all_published_entries() -> list[Entry]:
    """The paper's Table 4 rows and the figures reported on published splits: what import-published writes."""
    return published_entries() + reported_entries()


def derived_metrics(entry: Entry) -> dict[str, MeanStd] | None:
    """Precision / recall / F1 in the paper's convention from an entry's per-class figures (None without them)."""
    if not isinstance(entry.results, PublishedResults) or entry.results.per_class is None:
        return None
    per_class = entry.results.per_class
    out: dict[str, MeanStd] = {}
    for metric in PAPER_METRICS:
        figures = [getattr(per_class[code], metric) for code in CLASS_CODES]
        summary = paper_summary([f.mean for f in figures], [f.std for f in figures])
        out[metric] = MeanStd(mean=summary.mean, std=summary.std)
    return out


def fmt(value: float | None) -> str:
    """A figure as the paper prints it (three decimals)."""
    return "—" if value is None else f"{value:.{DISPLAY_DECIMALS}f}"


def printed_mismatches(entry: Entry) -> list[tuple[str, str, str]]:
    """(field, derived, stated) where the mean row derived from per-class figures differs from the stated row."""
    derived = derived_metrics(entry)
    if derived is None:
        return []
    problems = []
    for metric in PAPER_METRICS:
        stated = getattr(entry.metrics, metric)
        got = derived[metric]
        for part in ("mean", "std"):
            if fmt(getattr(got, part)) != fmt(getattr(stated, part)):
                problems.append((f"metrics.{metric}.{part}", fmt(getattr(got, part)), fmt(getattr(stated, part))))
    return problems
