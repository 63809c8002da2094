"""``glfer-edge info``: presets with parameter counts and MACs per segment."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", action="append", help="only these presets (repeatable); default all")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from glfer_edge.config import PRESETS, get_preset
    from glfer_edge.errors import require

    require("torch", "torch", "counting parameters and MACs")
    from glfer_edge.model.complexity import measure_complexity
    from glfer_edge.model.glfernet import GLFERNet

    names = args.preset or list(PRESETS)
    rows = []
    for name in names:
        cfg = get_preset(name)
        c = measure_complexity(GLFERNet(cfg))
        rows.append({
            "preset": name, "classes": cfg.model.num_classes, "segment_s": cfg.segment_seconds,
            "parameters": c.parameters, "network_gmac": c.network_macs / 1e9, "frontend_gmac": c.frontend_macs / 1e9,
            "gru_gmac": c.gru_macs / 1e9,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'preset':<28} {'classes':>7} {'params':>11} {'GMAC/seg':>9} {'frontend':>9} {'GRU':>7}")
    for r in rows:
        print(
            f"{r['preset']:<28} {r['classes']:>7} {r['parameters']:>11,} {r['network_gmac']:>9.3f} "
            f"{r['frontend_gmac']:>9.3f} {r['gru_gmac']:>7.4f}"
        )
    print(f"MACs per {rows[0]['segment_s']:g}-s segment at batch 1; 'GMAC/seg' excludes the STFT-as-conv frontend "
          "(listed apart, as the paper's count does).")
    return 0
