"""Speedups between two variants of a ``levers.py`` JSON, from its per-round timings.

    python benchmarks/ratios.py levers.json "ort-fp32 ALL/ort-int8-cpu ALL" ["A/B" ...]

For each pair A/B: A's time over B's (B's speedup) by minimum, by median, and as the median of the
per-round ratios, with the spread of that median over blocks of rounds (on a shared VM the spread
says more than any one number).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def speedups(slower, faster) -> tuple[float, float]:
    """``faster``'s speedup over ``slower`` (per-round times, same rounds): of the minima, and the median of
    the per-round ratios."""
    a, b = np.asarray(slower, float), np.asarray(faster, float)
    return float(a.min() / b.min()), float(np.median(a / b))


def pair_summary(variants: dict, slower: str, faster: str, block: int = 20) -> str:
    a, b = np.array(variants[slower]["rounds_ms"]), np.array(variants[faster]["rounds_ms"])
    by_min, per_round = speedups(a, b)
    blocks = [speedups(a[k:k + block], b[k:k + block])[1] for k in range(0, len(a), block)]
    return (f"{faster} vs {slower}: min {a.min():.1f}/{b.min():.1f} = {by_min:.2f}x; median "
            f"{np.median(a):.1f}/{np.median(b):.1f} = {np.median(a) / np.median(b):.2f}x; per-round median "
            f"{per_round:.2f}x (blocks of {block}: {min(blocks):.2f}-{max(blocks):.2f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", type=Path, help="a levers.py --json file")
    p.add_argument("pairs", nargs="+", metavar="A/B", help="variant names as levers.py prints them, slower first")
    p.add_argument("--block", type=int, default=20)
    args = p.parse_args()
    variants = json.loads(args.json.read_text())["variants"]
    for pair in args.pairs:
        slower, sep, faster = pair.partition("/")
        missing = [v for v in (slower, faster) if v not in variants]
        if not sep or missing:
            raise SystemExit(f"{pair!r}: write A/B with names from {', '.join(variants)}")
        print(pair_summary(variants, slower, faster, args.block))


if __name__ == "__main__":
    main()
