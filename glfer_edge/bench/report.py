"""The bench report: one JSON-ready dict (command, machine, options, cases, rounds) and its markdown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["make_report", "render_markdown"]


def make_report(command: str, options: dict[str, Any], results: list[dict[str, Any]],
                rounds: Sequence[dict[str, Any]] = (), machine: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything a figure needs to be read later: the command, the machine (CPU model, core count, ISA
    flags, library versions, load average at start and end), the options, every case and every round."""
    import os

    from glfer_edge.machine import describe_machine

    return {
        "command": command,
        "machine": machine or describe_machine(),
        "load_average_end": list(os.getloadavg()),
        "options": options,
        "results": results,
        "rounds": list(rounds),
    }


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _loads(values: Sequence[float] | None) -> str:
    return "/".join(f"{x:.2f}" for x in values) if values else "?"


def _cases_table(rows: list[dict[str, Any]]) -> list[str]:
    ref = {(r["model"], r["batch"]): r["latency_ms"]["median"]
           for r in rows if r["backend"] == "torch" and "latency_ms" in r}
    gpu = any(r.get("gpu_compute_ms") for r in rows)
    head = ["model", "backend", "batch", "Latency median ms", "mean", "p90", "p99"]
    head += ["GPU Compute median ms"] if gpu else []
    head += ["segments/s", "audio-s/s", "RTF", "x torch", "GFLOP/s", "cold start s", "peak RSS MiB",
             "frontend %", "GRU %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "latency_ms" not in r:
            continue
        lat = r["latency_ms"]
        base = ref.get((r["model"], r["batch"]))
        cells = [r["model"], r["backend"], str(r["batch"]), f"{lat['median']:.1f}", f"{lat['mean']:.1f}",
                 f"{lat['p90']:.1f}", f"{lat['p99']:.1f}"]
        cells += [_fmt((r.get("gpu_compute_ms") or {}).get("median"), ".2f")] if gpu else []
        cells += [
            f"{r['throughput_segments_per_s']:.2f}", f"{r['throughput_audio_s_per_s']:.1f}", f"{r['rtf']:.4f}",
            _fmt(base / lat["median"] if base else None, ".2f"), _fmt(r.get("achieved_gflops"), ".1f"),
            f"{r['cold_start_s']:.2f}", f"{r['peak_rss_mb']:.0f}",
            _fmt(None if r["frontend_share"] is None else 100 * r["frontend_share"], ".1f"),
            _fmt(None if r["gru_share"] is None else 100 * r["gru_share"], ".1f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _rounds_table(block: dict[str, Any]) -> list[str]:
    ref = block["reference"]
    lines = [f"Interleaved rounds: {block['model']}, batch {block['batch']}, {block['rounds']} rounds; "
             f"SGEMM ({block['sgemm_size']}^3) {block['sgemm_gflops_median']:.1f} GFLOP/s per-round median; "
             f"{_fmt(block['gflop_per_segment'], '.2f')} GFLOP per segment.", "",
             f"| backend | per-round median ms | x {ref} (median of per-round ratios) | audio-s/s | GFLOP/s | "
             "% of SGEMM |", "|---|---|---|---|---|---|"]
    for name, r in block["backends"].items():
        share = r.get("share_of_sgemm")
        lines.append(f"| {name} | {r['median_ms']:.1f} | {_fmt(r['x_reference'], '.2f')} | {r['audio_s_per_s']:.1f} | "
                     f"{_fmt(r.get('achieved_gflops'), '.1f')} | {_fmt(None if share is None else 100 * share, '.0f')} |")
    lines += [f"- {b}: skipped ({why})" for b, why in block.get("skipped", {}).items()]
    return lines + [""]


def render_markdown(report: dict[str, Any]) -> str:
    """The cases table, the interleaved-rounds tables, skipped/failed cases and the machine."""
    rows = report["results"]
    lines = _cases_table(rows) if any("latency_ms" in r for r in rows) else []
    if lines:
        lines += ["", "Latency = end-to-end SELDRuntime.infer with host arrays (trtexec 'Latency'), one subprocess per "
                  "case, cases one after another; throughput = calls x batch / total host walltime; RTF = mean "
                  "latency / audio seconds per call; 'x torch' = PyTorch eager median / this one; GFLOP/s = 2 x "
                  "executed MACs per segment (glfer_edge.model.complexity.segment_macs) / median latency.", ""]
    notes = [f"- {r['model']} {r['backend']} batch {r['batch']}: " + (f"skipped ({r['skipped']})" if "skipped" in r
             else f"FAILED ({r['error']})") for r in rows if "latency_ms" not in r]
    lines += notes + ([""] if notes else [])
    for block in report.get("rounds", []):
        lines += _rounds_table(block)
    m = report["machine"]
    cpu = m["cpu"]
    flags = ", ".join(cpu["flags"]) or "–"
    lines.append(f"Machine: {cpu['model']}, {cpu['logical_cores']} logical cores, flags {flags}; "
                 f"GPU {', '.join(m['gpu']) if m.get('gpu') else 'none'}; load average (1, 5, 15 min) at start "
                 f"{_loads(m.get('load_average'))}, at end {_loads(report.get('load_average_end'))}.")
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    lines.append(f"Versions: {versions}.")
    lines.append(f"Command: `{report['command']}`")
    return "\n".join(lines) + "\n"
