"""Merge ``glfer-edge bench --json`` reports of one machine (e.g. one per backend, as
benchmarks/gpu_session.sh writes them) into one report, its markdown table and its plot.

    python benchmarks/merge_bench.py bench-*.json --json all.json --markdown all.md --plot all.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from glfer_edge import bench


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reports", nargs="+", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path)
    p.add_argument("--plot", type=Path)
    args = p.parse_args()
    parts = [json.loads(path.read_text()) for path in args.reports]
    gpus = {json.dumps(r["machine"].get("gpu")) for r in parts}
    if len(gpus) > 1:
        raise SystemExit(f"reports come from different GPUs ({', '.join(sorted(gpus))}); compare only one machine")
    merged = {**parts[0], "command": " && ".join(r["command"] for r in parts),
              "results": [x for r in parts for x in r["results"]]}
    markdown = bench.render_markdown(merged)
    print(markdown, end="")
    if args.json:
        args.json.write_text(json.dumps(merged, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown)
    if args.plot:
        bench.plot_results(merged["results"], args.plot)


if __name__ == "__main__":
    main()
