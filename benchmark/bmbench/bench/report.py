"""Derived figures of a ``bmbench bench`` document (ratios, MFU, device-hours) and its Rich table.

Device-hours of the full recipe per backbone and initialisation come from the measured throughput and the
exact sizes of ``bm-cv5-v1``: per fold, 75 epochs x (training part / training images/s + validation part /
evaluation images/s), plus the LR range test (100 steps) and one pass over the test part. They assume the
data path keeps up and ignore start-up (compilation, loading the cache), which the JSON lists separately.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from rich.console import Console
from rich.table import Table

from bmbench.bench.measure import BMBENCH, PLAIN

EPOCHS = 75
FOLDS_SPLIT = "bm-cv5-v1"
LR_FIND_STEPS = 100
INITS = 6
"""Initialisations per backbone in the paper's grid (random, imagenet, pcam, cd, imagenet+pcam, imagenet+cd)."""


@cache
def fold_sizes(split_name: str = FOLDS_SPLIT) -> tuple[tuple[int, int, int], ...]:
    """(train, val, test) image counts of every fold of the published split."""
    from bmbench.splits.store import load_split

    split = load_split(split_name)
    return tuple(tuple(len(split.members(f, role)) for role in ("train", "val", "test"))  # type: ignore[misc]
                 for f in range(split.folds))


def recipe_hours(train_ips: float, eval_ips: float, batch: int, epochs: int = EPOCHS) -> float:
    """Device-hours of ``epochs`` epochs on every fold of bm-cv5-v1 at the given throughputs."""
    seconds = 0.0
    for train, val, test in fold_sizes():
        seconds += epochs * (train / train_ips + val / eval_ips) + test / eval_ips
        seconds += LR_FIND_STEPS * batch / train_ips
    return seconds / 3600


def derive(doc: dict[str, Any]) -> dict[str, Any]:
    """Add ``mfu``, ``recipe_device_hours`` per variant and ``ratios`` per backbone (bmbench vs plain)."""
    peak = doc["device"].get("peak_bf16_flops")
    for entry in doc["backbones"]:
        flops = entry.get("train_flops_per_image")
        for record in entry["variants"].values():
            train, ev = record.get("train"), record.get("eval")
            if train is None:
                continue
            achieved = flops * train["images_per_s"] if flops else None
            record["achieved_flops_per_s"] = achieved
            record["mfu"] = achieved / peak if achieved and peak else None
            if ev is not None:
                record["recipe_device_hours"] = recipe_hours(train["images_per_s"], ev["images_per_s"],
                                                             train["batch"])
                record["grid_device_hours"] = INITS * record["recipe_device_hours"]
        plain = next((r for r in entry["variants"].values() if r["path"] == PLAIN and "train" in r), None)
        fast = [r for r in entry["variants"].values() if r["path"] == BMBENCH and "train" in r]
        best = max(fast, key=lambda r: r["train"]["images_per_s"]) if fast else None
        ratios: dict[str, float | None] = {}
        if plain and best:
            ratios["train"] = best["train"]["images_per_s"] / plain["train"]["images_per_s"]
            if "eval" in plain and "eval" in best:
                ratios["eval"] = best["eval"]["images_per_s"] / plain["eval"]["images_per_s"]
            if plain.get("recipe_device_hours") and best.get("recipe_device_hours"):
                ratios["recipe_hours"] = plain["recipe_device_hours"] / best["recipe_device_hours"]
        entry["ratios"] = ratios
        entry["best_bmbench_layout"] = best.get("layout") if best else None
    data = doc.get("data_only", {})
    plain_data = [d["images_per_s"] for d in data.values() if d["path"] == PLAIN]
    fast_data = [d["images_per_s"] for d in data.values() if d["path"] == BMBENCH]
    trains = [r["train"]["images_per_s"] for e in doc["backbones"] for r in e["variants"].values()
              if r["path"] == BMBENCH and "train" in r]
    doc["data_only_summary"] = {
        "plain_images_per_s": min(plain_data) if plain_data else None,
        "bmbench_images_per_s": min(fast_data) if fast_data else None,
        "ratio": (min(fast_data) / min(plain_data)) if plain_data and fast_data else None,
        "bmbench_over_fastest_training": (min(fast_data) / max(trains)) if fast_data and trains else None,
    }
    return doc


def _num(value: float | None, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def concurrent_storage(conc: dict[str, Any]) -> str:
    """Where the concurrent processes kept their images, and why any fell back to host memory."""
    storages = conc.get("storage_per_process") or []
    if "host" not in storages:
        return f"images in device memory ({', '.join(storages) or 'storage not recorded'})"
    why = "; ".join(conc.get("storage_notes") or []) or "no reason recorded"
    return f"FELL BACK to host memory in {storages.count('host')} of {len(storages)} processes: {why}"


def render(doc: dict[str, Any], console: Console) -> None:
    """One side-by-side table per backbone, then the data-only summary."""
    synthetic = " [bold red]SYNTHETIC DATA[/]" if doc["data"]["synthetic"] else ""
    device = doc["device"]
    peak = device.get("peak_bf16_flops")
    console.print(f"[bold]bmbench bench[/] on {device['name']}{synthetic} — MFU against "
                  + (f"{peak / 1e12:,.1f} TFLOP/s dense bf16" if peak else "unknown peak (MFU not reported)"))
    for entry in doc["backbones"]:
        labels = list(entry["variants"])
        table = Table(title=f"{entry['backbone']} ({entry['image_size']} px, "
                      f"{_num(entry.get('train_flops_per_image'), ',.3g')} training FLOPs per image)",
                      title_justify="left")
        table.add_column("measure")
        for label in labels:
            table.add_column(label, justify="right")
        table.add_column("ratio", justify="right")
        records = [entry["variants"][label] for label in labels]
        data_only = doc.get("data_only", {})

        def row(name: str, values: list[str], ratio: str = "") -> None:
            table.add_row(name, *values, ratio)

        ratios = entry.get("ratios", {})
        data_ips = [data_only.get(r.get("data_only_key") or "", {}).get("images_per_s") for r in records]
        plain_ips = [v for v, r in zip(data_ips, records, strict=True) if v and r["path"] == PLAIN]
        fast_ips = [v for v, r in zip(data_ips, records, strict=True) if v and r["path"] == BMBENCH]
        row("data only, images/s", [_num(v) for v in data_ips],
            f"{max(fast_ips) / plain_ips[0]:.1f}×" if plain_ips and fast_ips else "")
        row("batch", [str(r["train"]["batch"]) if "train" in r else r.get("error", "-") for r in records])
        row("training, images/s", [_num(r.get("train", {}).get("images_per_s")) for r in records],
            f"{ratios['train']:.2f}×" if ratios.get("train") else "")
        row("step time, ms", [_num(r.get("train", {}).get("step_ms"), ",.1f") for r in records])
        row("evaluation, images/s", [_num(r.get("eval", {}).get("images_per_s")) for r in records],
            f"{ratios['eval']:.2f}×" if ratios.get("eval") else "")
        row("peak memory, GiB", [_num(r.get("train", {}).get("peak_memory_gib"), ".1f") for r in records])
        row("MFU", [_num(100 * r["mfu"], ".1f") + " %" if r.get("mfu") else "-" for r in records])
        row("warm-up (incl. compile), s", [_num(r.get("train", {}).get("warmup_s"), ".1f") for r in records])
        row("device-hours, 5 folds × 75 epochs", [_num(r.get("recipe_device_hours"), ",.1f") for r in records],
            f"{ratios['recipe_hours']:.2f}×" if ratios.get("recipe_hours") else "")
        row("device-hours, × 6 initialisations", [_num(r.get("grid_device_hours"), ",.0f") for r in records])
        console.print(table)
        conc = entry.get("concurrent")
        if conc:
            if "error" in conc:
                console.print(f"  concurrent: [red]{conc['error']}[/]")
            else:
                console.print(f"  {conc['processes']} concurrent processes: {conc['images_per_s_total']:,.0f} images/s "
                              f"in total vs {conc['images_per_s_one_process']:,.0f} in one "
                              f"({conc['ratio_vs_one_process']:.2f}×); {concurrent_storage(conc)}", highlight=False)
    summary = doc["data_only_summary"]
    if summary.get("bmbench_over_fastest_training"):
        console.print(f"data path alone: bmbench {_num(summary['bmbench_images_per_s'])} images/s = "
                      f"{summary['bmbench_over_fastest_training']:.1f}× the fastest measured training throughput")
    console.print(f"measured {doc['created_at']}; images per epoch {doc['data']['images_per_epoch']:,}"
                  f" ({doc['data']['cached_images']:,} cached); device-hours assume bm-cv5-v1's fold sizes")


TARGET_RATIO = 2.5
"""Issue 6: training throughput of the bmbench path at least 2.5x the plain path (resnet152, regnet, batch 32)."""
TARGET_DATA = 10.0
"""Data-only throughput at least 10x the training throughput of the fastest backbone."""
TARGET_MFU = 0.40
"""MFU of at least 40 % for vgg19_bn and vit_l_32 at their best batch size."""


def markdown(docs: list[dict[str, Any]]) -> str:
    """A Markdown summary of several bench documents (for docs/performance.md), with the issue's targets."""
    lines = ["| backbone | batch | plain img/s | bmbench img/s (layout) | ratio | MFU plain | MFU bmbench | "
             "peak GiB | device-h plain | device-h bmbench |", "|---|---|---|---|---|---|---|---|---|---|"]
    checks: list[str] = []
    best_mfu: dict[str, tuple[float, int, bool]] = {}  # name -> (MFU, batch, measured at the largest batch)
    fastest_train, slowest_data = 0.0, None
    for doc in docs:
        derive(doc)
        at_max = (doc.get("options") or {}).get("batch") == "max"
        summary = doc.get("data_only_summary", {})
        if summary.get("bmbench_images_per_s"):
            slowest_data = min(filter(None, [slowest_data, summary["bmbench_images_per_s"]]))
        for entry in doc["backbones"]:
            records = entry["variants"]
            plain = next((r for r in records.values() if r["path"] == PLAIN and "train" in r), None)
            fast = [r for r in records.values() if r["path"] == BMBENCH and "train" in r]
            best = max(fast, key=lambda r: r["train"]["images_per_s"]) if fast else None
            if best is None:
                continue
            fastest_train = max(fastest_train, best["train"]["images_per_s"])
            name = entry["backbone"].split(":")[-1]
            if best.get("mfu") and (name not in best_mfu or (at_max, best["mfu"]) > best_mfu[name][::2]):
                best_mfu[name] = (best["mfu"], int(best["train"]["batch"]), at_max)
            as_run = next((r for r in fast if r.get("as_run")), best)
            ratio = as_run["train"]["images_per_s"] / plain["train"]["images_per_s"] if plain else None
            batch = best["train"]["batch"]
            layouts = ", ".join(f"{r['layout']}{' + graphs' if r.get('cuda_graphs') else ''}"
                                f"{' (run)' if r.get('as_run') else ''} {r['train']['images_per_s']:,.0f}"
                                for r in fast)
            plain_batch = plain["train"]["batch"] if plain else batch
            batches = str(batch) if plain_batch == batch else f"{batch} (plain {plain_batch})"
            lines.append(
                f"| {name} | {batches} | {_num(plain['train']['images_per_s']) if plain else '-'} | {layouts} | "
                f"{_num(ratio, '.2f') + '×' if ratio else '-'} | "
                f"{_num(100 * plain['mfu'], '.1f') + ' %' if plain and plain.get('mfu') else '-'} | "
                f"{_num(100 * best['mfu'], '.1f') + ' %' if best.get('mfu') else '-'} | "
                f"{_num(best['train'].get('peak_memory_gib'), '.1f')} | "
                f"{_num(plain.get('recipe_device_hours'), ',.1f') if plain else '-'} | "
                f"{_num(best.get('recipe_device_hours'), ',.1f')} |")
            if name in ("resnet152", "regnet_y_32gf") and batch == 32 and ratio is not None:
                verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
                checks.append(f"- {name} batch 32: training on the path `bmbench run` uses ({as_run['layout']}"
                              f"{', CUDA graphs' if as_run.get('cuda_graphs') else ''}) {ratio:.2f}× the plain "
                              f"path (target ≥ {TARGET_RATIO}×): {verdict}")
                graphs = [r for r in fast if r.get("cuda_graphs") != as_run.get("cuda_graphs")
                          and r["layout"] == as_run["layout"]]
                if graphs:
                    g = graphs[0]["train"]["images_per_s"] / as_run["train"]["images_per_s"]
                    checks.append(f"- {name} batch 32: CUDA graphs {'on' if graphs[0].get('cuda_graphs') else 'off'}"
                                  f" gives {g:.2f}× the run's path")
            for r in fast:
                if r.get("compile_fallback"):
                    checks.append(f"- {name} {r['layout']}: torch.compile FELL BACK to eager: {r['compile_fallback']}")
            for label, r in records.items():
                if r.get("error"):
                    checks.append(f"- {name} {label}: FAILED: {r['error']}")
            conc = entry.get("concurrent")
            if conc and "error" not in conc:
                checks.append(f"- {name}: {conc['processes']} concurrent processes give "
                              f"{conc['images_per_s_total']:,.0f} images/s in total vs "
                              f"{conc['images_per_s_one_process']:,.0f} in one ({conc['ratio_vs_one_process']:.2f}×); "
                              f"{concurrent_storage(conc)}")
    for name in ("vgg19_bn", "vit_l_32"):
        if name in best_mfu:
            mfu, batch, at_max = best_mfu[name]
            where = f"at batch {batch}, the largest that fits" if at_max else \
                f"at batch {batch} only (the largest-batch measurement is missing, so the target is not judged)"
            verdict = ("met" if mfu >= TARGET_MFU else "NOT met") if at_max else "not judged"
            checks.append(f"- {name}: MFU {100 * mfu:.1f} % {where} (target ≥ {100 * TARGET_MFU:.0f} %): {verdict}")
    if slowest_data and fastest_train:
        checks.append(f"- data path alone {slowest_data:,.0f} images/s = {slowest_data / fastest_train:.1f}× the "
                      f"fastest training throughput (target ≥ {TARGET_DATA:.0f}×): "
                      f"{'met' if slowest_data >= TARGET_DATA * fastest_train else 'NOT met'}")
    head = docs[0] if docs else {}
    device = head.get("device", {}).get("name", "?")
    return "\n".join([f"Device: {device}; measured {head.get('created_at', '?')}; "
                      f"torch {head.get('versions', {}).get('torch')}.", "", *lines, "", *checks, ""])


def embed_check_markdown(doc: dict[str, Any]) -> list[str]:
    """The embed stage: pure forward vs the embedding data path, its components, the ratio vs the target."""
    enc, device = doc.get("encoder", {}), doc.get("device", {})
    lines = [f"Frozen-feature embedding: {enc.get('what', enc.get('timm'))} ({enc.get('parameters', 0) / 1e6:.0f} M "
             f"parameters, random weights), batch {doc.get('batch')}, {device.get('name', device.get('type'))}"
             f"{', bf16 + channels_last' if doc.get('bf16_channels_last') else ''}:", "",
             "| embed path | images/s | seconds | what |", "|---|---|---|---|"]
    rows = [("pure forward (device-resident batch)", doc.get("forward"), "")]
    rows += [(f"component: {name}", part, part.get("what", "")) for name, part in (doc.get("components") or {}).items()]
    rows.append(("data path (bmbench embed per batch)", doc.get("data_path"), (doc.get("data_path") or {}).get("what", "")))
    for name, part, what in rows:
        if part:
            lines.append(f"| {name} | {_num(part.get('images_per_second'))} | {_num(part.get('seconds'), '.2f')} | "
                         f"{what} |")
    if doc.get("ratio") is not None:
        verdict = {True: "meets", False: "MISSES", None: "not judged against"}[doc.get("meets_target")]
        lines += ["", f"data path / pure forward = {doc['ratio']:.2f}: {verdict} the {doc.get('target_ratio')} "
                  f"target{' (' + doc['note'] + ')' if doc.get('note') else ''}."]
    return lines


def device_check_markdown(report: dict[str, Any]) -> str:
    """The device check's report: a line per stage, then the figures of the stages that measured any."""
    lines = [f"# bmbench device check ({report['mode']}), {report['created_at']}", "",
             f"Budget {report['budget_s']:.0f} s, {report['elapsed_s']:.0f} s elapsed; torch.compile "
             f"{'on' if report.get('compile') else 'off'} for the measuring stages.", "",
             "| stage | status | seconds | details |", "|---|---|---|---|"]
    for doc in report["stages"]:
        detail = "; ".join(str(x) for x in [doc.get("error"), doc.get("reason"), *(doc.get("notes") or [])] if x)
        seconds = doc.get("wall_s", doc.get("seconds"))
        lines.append(f"| {doc['stage']} | {doc.get('status', '?')} | {_num(seconds, '.0f')} | "
                     f"{detail.replace('|', '/')} |")
    by_name = {d["stage"]: d for d in report["stages"]}
    env = by_name.get("env", {})
    if env.get("packages"):
        gpu = env.get("gpu") or {}
        lines += ["", f"Python {env.get('python')}; GPU {gpu.get('name', 'none')}"
                  f"{', %.0f GiB' % gpu['memory_gib'] if gpu.get('memory_gib') else ''}; "
                  + ", ".join(f"{k} {v or 'MISSING'}" for k, v in env["packages"].items())]
        probe = env.get("compile_probe") or {}
        if probe:
            lines.append(f"Compile probe: {'ok' if probe.get('ok') else 'FAILED'}"
                         f"{' in %.1f s' % probe['seconds'] if probe.get('seconds') is not None else ''}"
                         f"{': ' + probe['error'] if probe.get('error') else ''}.")
    data = (by_name.get("data") or {}).get("bench")
    if data and data.get("data_only"):
        lines += ["", "| data path | batch | size | images/s | storage | load s | error |", "|---|---|---|---|---|---|---|"]
        for d in data["data_only"].values():
            lines.append(f"| {d['path']} ({d['layout']}) | {d['batch']} | {d['size']} | "
                         f"{_num(d.get('images_per_s'))} | {d.get('storage') or '-'} | {_num(d.get('load_s'), '.1f')} | "
                         f"{d.get('error', '')} |")
    docs = [by_name[n]["bench"] for n in ("train32", "mfu") if (by_name.get(n) or {}).get("bench")]
    if docs:
        lines += ["", markdown(docs)]
        failed = [f"- {b['backbone']} {name}: {v['error']}" for d in docs for b in d.get("backbones", [])
                  for name, v in b.get("variants", {}).items() if v.get("error")]
        if failed:
            lines += ["", "Variants that did not measure (their error):", *failed]
    embed = (by_name.get("embed") or {}).get("embed")
    if embed:
        lines += ["", *embed_check_markdown(embed)]
    run = by_name.get("run") or {}
    if run.get("fold"):
        fold = run["fold"]
        lines += ["", f"`bmbench run` ({run.get('command')}): exit {run.get('exit_code')}, {run.get('seconds', 0):.0f} s; "
                  + ", ".join(f"{k} {v}" for k, v in fold.items())]
        for h in run.get("history") or []:
            lines.append(f"- epoch {h['epoch']}: {h['images_per_s']:,.0f} training images/s, {h['seconds']:.1f} s "
                         f"(the first epoch includes compilation), val acc {h['val_accuracy']:.3f}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m bmbench.bench.report A.json B.json ...: the Markdown summary
    import json
    import sys
    from pathlib import Path

    print(markdown([json.loads(Path(p).read_text(encoding="utf-8")) for p in sys.argv[1:]]))
