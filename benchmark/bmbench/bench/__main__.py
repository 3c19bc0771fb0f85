"""``python -m bmbench.bench``: the device check without the CLI's dependencies (no typer, no pydantic).

    python -m bmbench.bench device-check [--cpu-smoke] [--out DIR] [--work DIR] [--budget S]
    python -m bmbench.bench stage NAME --config CONFIG.json --out STAGE.json     (one stage; the runner's)
    python -m bmbench.bench report A.json [B.json ...]                         (Markdown of bench JSONs)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bmbench.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("device-check", help="every stage under the time budget; always writes a report")
    check.add_argument("--cpu-smoke", action="store_true", help="toy sizes on the CPU (tests the machinery)")
    default_work = Path(os.environ.get("DEVICE_CHECK_WORK", Path(os.environ.get("TMPDIR", "/tmp"),
                                                                  "bmbench-device-check")))
    check.add_argument("--work", type=Path, default=default_work, help="scratch folder (data cache, runs)")
    check.add_argument("--out", type=Path, default=None, help="results (default $OUT, else WORK/results)")
    check.add_argument("--budget", type=float, default=None, help="total seconds (default 480 on a GPU)")
    stage = sub.add_parser("stage", help="run one stage (used by device-check)")
    stage.add_argument("name")
    stage.add_argument("--config", type=Path, required=True)
    stage.add_argument("--out", type=Path, required=True)
    report = sub.add_parser("report", help="Markdown summary of bench JSON files")
    report.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)

    from bmbench.bench import device_check as dc

    if args.command == "stage":
        return dc.run_stage(args.name, json.loads(args.config.read_text(encoding="utf-8")), args.out)
    if args.command == "report":
        from bmbench.bench.report import markdown

        print(markdown([json.loads(p.read_text(encoding="utf-8")) for p in args.files]))
        return 0
    out = args.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else args.work / "results")
    os.environ.setdefault("BMBENCH_CACHE", str(args.work / "cache"))
    doc = dc.device_check("cpu" if args.cpu_smoke else "gpu", out, args.work, args.budget)
    bad = [s["stage"] for s in doc["stages"] if s.get("status") not in ("ok", "not available", "needs pydantic")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
