"""Figures (median, min, max), same-run ratios, the machine, and the table printed from the
same document that goes to JSON."""
from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path

from .dataset import MiB, human

REFERENCE = "skycompile"  # every ratio is skycompile's median / another tool's median


def machine() -> dict:
    def field(path: str, name: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(name):
                    return line.partition(":")[2].strip()
        except OSError:
            pass
        return ""

    return {"cpus": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
            "cpu_model": field("/proc/cpuinfo", "model name") or platform.processor(),
            "memory": field("/proc/meminfo", "MemTotal"), "os": platform.platform(),
            "python": platform.python_version()}


def summarize(scenario, raw: dict[str, dict], labels: dict[str, str], data_bytes: int) -> dict:
    tools = {}
    for tool_id, r in raw.items():
        times = r["times"]
        s = {"label": labels[tool_id], "median": statistics.median(times), "min": min(times),
             "max": max(times), "times": times, "warmup": r["warmup"],
             "cpu_median": statistics.median(r["cpu"]), "cpu": r["cpu"],
             "verified": r["verified"]}
        if scenario.throughput:
            s["mib_per_s"] = data_bytes / MiB / s["median"]
        tools[tool_id] = s
    return {"title": scenario.title, "dataset": scenario.dataset, "tools": tools,
            "ratios": ratios(tools)}


def ratios(tools: dict[str, dict]) -> dict:
    """skycompile/OTHER for every other tool, and skycompile/fastest-other (named)."""
    if REFERENCE not in tools:
        return {}
    ref = tools[REFERENCE]["median"]
    others = {k: v["median"] for k, v in tools.items() if k != REFERENCE}
    out = {f"{REFERENCE}/{k}": ref / m for k, m in others.items()}
    if others:
        fastest = min(others, key=others.get)
        out[f"{REFERENCE}/fastest-other"] = ref / others[fastest]
        out["fastest-other"] = fastest
    return out


def table(doc: dict) -> str:
    m = doc["machine"]
    load = {k: " ".join(f"{x:.2f}" for x in doc[k]) for k in ("load_before", "load_after")}
    lines = [f"skycompile bench ({doc['mode']}): median of {doc['runs']} run(s) after "
             f"{doc['warmup']} warm-up; {m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}",
             f"server: {doc['server']}",
             f"load average (1, 5, 15 min): {load['load_before']} before, "
             f"{load['load_after']} after"]
    for name, ds in doc["datasets"].items():
        lines.append(f"data set {name}: {ds['files']} files, {human(ds['bytes'])} in {ds['dirs']} "
                     f"directories ({human(ds['min_size'])}-{human(ds['max_size'])} each, "
                     f"seed {ds['seed']})")
    lines += [f"  {t['label']}: {t['version']}" for t in doc["tools"].values()]
    for name, sc in doc["scenarios"].items():
        lines += ["", f"{name}: {sc['title']} (data set {sc['dataset']})",
                  f"  {'tool':<28}{'median':>9}{'min':>9}{'max':>9}{'CPU':>9}{'MiB/s':>8}"
                  f"{REFERENCE + ' ÷ tool':>20}"]
        for tool_id, t in sc["tools"].items():
            rate = f"{t['mib_per_s']:.1f}" if "mib_per_s" in t else "-"
            ratio = "" if tool_id == REFERENCE else f"{sc['ratios'][f'{REFERENCE}/{tool_id}']:.2f}"
            lines.append(f"  {t['label']:<28}{t['median']:>8.2f}s{t['min']:>8.2f}s"
                         f"{t['max']:>8.2f}s{t['cpu_median']:>8.2f}s{rate:>8}{ratio:>20}")
        r = sc["ratios"]
        if "fastest-other" in r:
            parts = [f"{REFERENCE} / fastest other ({sc['tools'][r['fastest-other']]['label']}) "
                     f"= {r[f'{REFERENCE}/fastest-other']:.2f}"]
            if f"{REFERENCE}/aws" in r:
                parts.insert(0, f"{REFERENCE} / aws s3 sync = {r[f'{REFERENCE}/aws']:.2f}")
            lines.append("  " + "; ".join(parts))
    return "\n".join(lines)
