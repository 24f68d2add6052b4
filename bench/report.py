"""Figures (median, min, max), same-run ratios, the machine, and the table printed from the
same document that goes to JSON."""
from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path

from .dataset import MiB, human

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
             "rss_mib_median": statistics.median(r["rss_mib"]), "rss_mib": r["rss_mib"],
             "verified": r["verified"]}
        if scenario.throughput and tool_id in (scenario.reference, *rivals(scenario)):
            s["mib_per_s"] = data_bytes / MiB / s["median"]
        s["figures"] = {name: {"median": statistics.median(v), "min": min(v), "max": max(v),
                               "values": v} for name, v in r["figures"].items()}
        tools[tool_id] = s
    found = ratios(tools, scenario.reference, rivals(scenario))
    return {"title": scenario.title, "dataset": scenario.dataset, "reference": scenario.reference,
            "tools": tools, "ratios": found, "goals": goals(scenario.goals, found, tools)}


def rivals(scenario) -> tuple[str, ...]:
    """The tools the reference is compared with: the scenario's rivals, else all others."""
    if scenario.rivals is not None:
        return scenario.rivals
    return tuple(t for t in scenario.tools if t != scenario.reference)


def ratios(tools: dict[str, dict], reference: str, rival_ids: tuple[str, ...]) -> dict:
    """REFERENCE/RIVAL for every rival, and REFERENCE/fastest-other (named)."""
    if reference not in tools:
        return {}
    ref = tools[reference]["median"]
    others = {k: tools[k]["median"] for k in rival_ids if k in tools}
    out = {f"{reference}/{k}": ref / m for k, m in others.items()}
    if others:
        fastest = min(others, key=others.get)
        out[f"{reference}/fastest-other"] = ref / others[fastest]
        out["fastest-other"] = fastest
    return out


def goals(wanted, found: dict, tools: dict) -> list[dict]:
    """Each of the issue's targets with its measured value, and whether it is met."""
    out = []
    for g in wanted:
        if g.key.startswith("rss:"):
            value = tools[g.key[4:]]["rss_mib_median"]
        elif g.key.startswith("figure:"):
            _, tool, name = g.key.split(":")
            value = tools[tool]["figures"][name]["median"]
        elif g.key in found:
            value = found[g.key]
        else:  # TOOL/TOOL: a ratio of two medians
            a, b = g.key.split("/")
            value = tools[a]["median"] / tools[b]["median"]
        out.append({"target": g.text, "key": g.key, "value": value, "bound": g.bound,
                    "met": value <= g.bound})
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
        extra = f", {ds['rules']} .gitignore rules keep {ds['kept']}" if "rules" in ds else ""
        lines.append(f"data set {name}: {ds['files']} files, {human(ds['bytes'])} in {ds['dirs']} "
                     f"directories ({human(ds['min_size'])}-{human(ds['max_size'])} each, "
                     f"seed {ds['seed']}{extra})")
    lines += [f"  {t['label']}: {t['version']}" for t in doc["tools"].values()]
    for name, sc in doc["scenarios"].items():
        ref = sc["reference"]
        on = f" (data set {sc['dataset']})" if sc["dataset"] else ""
        lines += ["", f"{name}: {sc['title']}{on}",
                  f"  {'tool':<34}{'median':>9}{'min':>9}{'max':>9}{'CPU':>9}{'RSS MiB':>9}"
                  f"{'MiB/s':>8}{'ratio':>8}"]
        for tool_id, t in sc["tools"].items():
            rate = f"{t['mib_per_s']:.1f}" if "mib_per_s" in t else "-"
            key = f"{ref}/{tool_id}"
            ratio = f"{sc['ratios'][key]:.2f}" if key in sc["ratios"] else ""
            lines.append(f"  {t['label']:<34}{t['median']:>8.2f}s{t['min']:>8.2f}s"
                         f"{t['max']:>8.2f}s{t['cpu_median']:>8.2f}s{t['rss_mib_median']:>9.0f}"
                         f"{rate:>8}{ratio:>8}")
            for fig, f in t.get("figures", {}).items():
                lines.append(f"    {fig}: median {f['median']:.2f}, min {f['min']:.2f}, "
                             f"max {f['max']:.2f}")
        r = sc["ratios"]
        if "fastest-other" in r:
            lines.append(f"  ratio = {sc['tools'][ref]['label']}'s median / the tool's; fastest "
                         f"other: {sc['tools'][r['fastest-other']]['label']}")
        for g in sc["goals"]:
            lines.append(f"  target {g['target']}: {g['value']:.2f} "
                         f"{'met' if g['met'] else 'NOT MET'}")
    lines += scaling(doc)
    return "\n".join(lines)


def scaling(doc: dict) -> list[str]:
    """The scale-* scenarios as a curve: time per 1,000 files at each size."""
    rows = []
    for name, sc in doc["scenarios"].items():
        if name.startswith("scale-upload-"):
            size = name.rpartition("-")[2]
            resync = doc["scenarios"].get(f"scale-resync-{size}")
            files = doc["datasets"][sc["dataset"]]["files"]
            up = sc["tools"]["skycompile"]
            row = (f"  {files:>8} {up['median']:>9.2f}s {1000 * up['median'] / files:>9.3f}s "
                   f"{up['rss_mib_median']:>8.0f}")
            if resync:
                re_ = resync["tools"]["skycompile"]
                row += (f" {re_['median']:>9.2f}s {1000 * re_['median'] / files:>9.3f}s "
                        f"{re_['rss_mib_median']:>8.0f}")
            rows.append(row)
    if not rows:
        return []
    return ["", "scaling (skycompile): upload and re-sync, seconds per 1,000 files, peak RSS MiB",
            f"  {'files':>8} {'upload':>10} {'per 1k':>10} {'RSS':>8} {'re-sync':>10} "
            f"{'per 1k':>10} {'RSS':>8}", *rows]
