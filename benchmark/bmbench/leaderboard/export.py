"""Machine-readable exports of a board: ``results.csv`` (one row per entry) and ``results.json``.

Both are written by ``bmbench leaderboard build`` beside the pages, checked byte for byte by ``check`` like
them, and printed by ``bmbench leaderboard show --format csv|json``. Deterministic: rows in board order,
floats as Python's shortest round-trip ``repr``, no dates. Every figure comes from the same computed
sections the pages show (:mod:`bmbench.leaderboard.board`); absent figures are empty cells / ``null``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from bmbench.classes import CLASS_CODES
from bmbench.leaderboard.board import Board, Row, Section, external_data_kind, may_have_seen_test_images, status_text
from bmbench.metric_registry import ALL_METRICS

EXPORT_SCHEMA_VERSION = 1
RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"


def _metric(row: Row, name: str) -> dict[str, float | None] | None:
    value = getattr(row, name) if name in ("precision", "recall", "f1") else row.fold_metrics.get(name)
    return None if value is None else {"mean": value.mean, "std": value.std}


def row_record(section: Section, row: Row) -> dict[str, Any]:
    """Everything the board shows about one row, as plain JSON values."""
    entry = row.entry
    comparison = row.comparison
    test = comparison.test if comparison is not None else None
    return {
        "split": section.split_name,
        "split_sha256": section.split_sha256,
        "dataset": section.dataset,
        "rank": row.rank or None,
        "tier": row.tier,
        "name": entry.name,
        "protocol": entry.protocol,
        "status": entry.status,
        "status_text": status_text(entry),
        "backbone": entry.backbone,
        "encoder": entry.encoder.model_dump(mode="json") if entry.encoder else None,
        "init": entry.init,
        "pretraining_data": list(entry.pretraining_data),
        "external_data": external_data_kind(entry.pretraining_data),
        "may_have_seen_test_images": may_have_seen_test_images(entry),
        "parameters": entry.parameters if entry.parameters is not None else
        (entry.encoder.parameters if entry.encoder else None),
        "device_hours": entry.compute.device_hours,
        "smoke": entry.smoke,
        "metrics": {name: _metric(row, name) for name in ALL_METRICS},
        "metrics_source": "confusions" if entry.has_confusions else "published",
        "f1_ci": list(row.ci) if row.ci else None,
        "rank_ci": list(row.rank_ci) if row.rank_ci else None,
        "vs_leader": None if comparison is None else {
            "verdict": comparison.verdict, "method": test.method if test else None,
            "p": test.p if test else None, "p_adjusted": comparison.p_adjusted, "reason": comparison.reason},
        "per_class_f1": {code: row.per_class[code]["f1"] for code in CLASS_CODES} if row.per_class else None,
        "weights": entry.weights.model_dump(mode="json") if entry.weights else None,
        "code": entry.code.model_dump(mode="json"),
        "predictions": entry.predictions.model_dump(mode="json") if entry.predictions else None,
    }


def results_json(board: Board, sections: Sequence[Section]) -> str:
    """``results.json``: the board's sections with every entry's computed figures."""
    document = {
        "schema_version": EXPORT_SCHEMA_VERSION,
        "board": board.kind,
        "title": board.title,
        "sections": [{"split": s.split_name, "split_sha256": s.split_sha256, "dataset": s.dataset,
                      "synthetic": s.synthetic, "title": s.title,
                      "entries": [row_record(s, r) for r in s.rows]} for s in sections],
    }
    return json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


CSV_COLUMNS: tuple[str, ...] = (
    "split", "split_sha256", "dataset", "rank", "tier", "name", "protocol", "status", "backbone", "init",
    "pretraining_data", "external_data", "may_have_seen_test_images", "parameters", "device_hours", "smoke",
    *(f"{m}_{part}" for m in ALL_METRICS for part in ("mean", "std")),
    "f1_ci_low", "f1_ci_high", "rank_ci_low", "rank_ci_high", "vs_leader", "vs_leader_method",
    "vs_leader_p_adjusted", "weights_url", "weights_sha256", "code_url",
    *(f"f1_{code}" for code in CLASS_CODES),
)
"""One column per board column (metrics as mean and std), then the per-class F1 means."""


def csv_row(section: Section, row: Row) -> dict[str, str]:
    """One ``results.csv`` row."""
    rec = row_record(section, row)
    out: dict[str, Any] = {k: rec[k] for k in ("split", "split_sha256", "dataset", "rank", "tier", "name", "protocol",
                                               "status", "backbone", "init", "external_data",
                                               "may_have_seen_test_images", "parameters", "device_hours", "smoke")}
    out["pretraining_data"] = "; ".join(rec["pretraining_data"])
    for m in ALL_METRICS:
        value = rec["metrics"][m]
        out[f"{m}_mean"] = value["mean"] if value else None
        out[f"{m}_std"] = value["std"] if value else None
    out["f1_ci_low"], out["f1_ci_high"] = rec["f1_ci"] or (None, None)
    out["rank_ci_low"], out["rank_ci_high"] = rec["rank_ci"] or (None, None)
    vs = rec["vs_leader"] or {}
    out["vs_leader"], out["vs_leader_method"], out["vs_leader_p_adjusted"] = (
        vs.get("verdict"), vs.get("method"), vs.get("p_adjusted"))
    out["weights_url"] = (rec["weights"] or {}).get("url")
    out["weights_sha256"] = (rec["weights"] or {}).get("sha256")
    out["code_url"] = rec["code"].get("url")
    for code in CLASS_CODES:
        out[f"f1_{code}"] = rec["per_class_f1"][code] if rec["per_class_f1"] else None
    return {k: _cell(out[k]) for k in CSV_COLUMNS}


def results_csv(sections: Sequence[Section]) -> str:
    """``results.csv``: a header and one row per entry, in board order."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for section in sections:
        for row in section.rows:
            writer.writerow(csv_row(section, row))
    return buffer.getvalue()
