"""python -m bench [--quick] [--runs N] [--json [PATH]] [--only NAME,...]"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from . import report
from .runner import Bench, checkout, versions
from .scenarios import SCENARIOS
from .tools import BY_ID, BenchError, rclone_version

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=(
        "Time skycompile against the tools users would otherwise use (aws s3 sync, s5cmd, "
        "rclone, git ls-files, python3 -c pass, cp, rclone cat) on a loopback `rclone serve "
        "s3`, in throwaway nodes for the scripts' scenarios, and check the issue's targets. Run it from the repository root. See bench/README.md."))
    p.add_argument("--quick", action="store_true",
                   help="tiny data sets (a smoke run for CI, well under a minute)")
    p.add_argument("--runs", type=int, default=3, metavar="N",
                   help="timed runs per tool and scenario, after one warm-up (default 3)")
    p.add_argument("--json", nargs="?", const=DEFAULT_JSON, type=Path, metavar="PATH",
                   help=f"also write the results as JSON (PATH default: {DEFAULT_JSON})")
    p.add_argument("--only", metavar="NAME,...",
                   help="run only these scenarios: " + ", ".join(s.name for s in SCENARIOS))
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    names = [s.name for s in SCENARIOS]
    args.scenarios = SCENARIOS
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown or not wanted:
            p.error(f"--only: unknown scenario {', '.join(unknown) or '(none)'}; "
                    f"choose from {', '.join(names)}")
        args.scenarios = [s for s in SCENARIOS if s.name in wanted]
    return args


def run(args: argparse.Namespace) -> dict:
    tools = [BY_ID[i] for i in dict.fromkeys(i for s in args.scenarios for i in s.tools)]
    found = versions(tools)  # before anything else: a missing tool fails at once
    for t in tools:
        if t.version_argv() == BY_ID["skycompile"].version_argv():
            found[t.id] += f" (checkout {checkout()})"
    doc = {"mode": "quick" if args.quick else "full", "runs": args.runs, "warmup": 1,
           "machine": report.machine(), "load_before": os.getloadavg(),
           "tools": {t.id: {"label": t.label, "version": found[t.id]} for t in tools}}
    with Bench(args.quick) as bench:
        doc["server"] = f"rclone serve s3 ({rclone_version()}) at {bench.server.endpoint}"
        datasets = {name: bench.dataset(name) for name in dict.fromkeys(
            s.dataset for s in args.scenarios) if name}
        doc["datasets"] = {name: ds.summary() for name, ds in datasets.items()}
        doc["scenarios"] = {}
        for scenario in args.scenarios:
            raw = bench.measure(scenario, [BY_ID[i] for i in scenario.tools], args.runs)
            size = datasets[scenario.dataset].bytes if scenario.dataset else 0
            doc["scenarios"][scenario.name] = report.summarize(
                scenario, raw, {t.id: t.label for t in tools}, size)
    doc["load_after"] = os.getloadavg()  # other work on the machine skews every figure
    return doc


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # a plain `kill` must clean up too: SystemExit unwinds through Bench's exit
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        doc = run(args)
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    print(report.table(doc))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
