"""Long streaming soak: hours of synthetic FOA noise through StreamingSELD, memory and drift logged.

    python benchmarks/soak.py --hours 8 [--model MODEL.onnx|.engine] [--hop 0.4] [--device cuda]

Prints one line every simulated hour: real-time factor, process RSS, traced Python memory (tracemalloc)
and the last emitted timestamp against its exact expected value. Exit status 1 on drift or growth
beyond the given bounds. The pytest soak (tests/test_streaming.py) covers one hour on a small model.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc

import numpy as np

from glfer_edge.runtime import SELDRuntime, StreamingSELD


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, default=4.0)
    p.add_argument("--model", default=None, help="default: the bundled demo model")
    p.add_argument("--device", default="cpu")
    p.add_argument("--hop", type=float, default=None, help="stream hop in seconds (default: one segment)")
    p.add_argument("--chunk", type=float, default=0.1, help="seconds per pushed chunk (default 0.1)")
    p.add_argument("--max-growth-mib", type=float, default=64.0)
    args = p.parse_args(argv)

    with SELDRuntime.open(args.model, device=args.device) as rt:
        cfg = rt.config
        sr = cfg.features.sample_rate
        stream = StreamingSELD(rt, hop_seconds=args.hop)
        source = (np.random.default_rng(0).standard_normal((4, 60 * sr)) * 0.1).astype(np.float32)
        chunk = max(1, int(args.chunk * sr))
        total, pos, hour, last = int(args.hours * 3600 * sr), 0, 1, None
        tracemalloc.start()
        base_rss, t0 = None, time.perf_counter()
        while pos < total:
            n = min(chunk, total - pos)
            start = pos % (source.shape[1] - n)
            out = stream.push(source[:, start : start + n])
            if out.num_frames:
                last = out.frame_times[-1]
            pos += n
            if base_rss is None and pos >= 600 * sr:
                base_rss = _rss_mib()  # after ten minutes of warm-up
            if pos >= hour * 3600 * sr or pos == total:
                expected = (stream.frames_emitted - 1) * cfg.output_hop_seconds
                print(f"{pos / sr / 3600:6.2f} h  {pos / sr / (time.perf_counter() - t0):7.0f}x real time  "
                      f"RSS {_rss_mib():8.1f} MiB  traced {tracemalloc.get_traced_memory()[0] / 2**20:6.2f} MiB  "
                      f"last frame {last:.1f} s (expected {expected:.1f})", flush=True)
                hour += 1
        growth = _rss_mib() - (base_rss or _rss_mib())
    drift = last != (stream.frames_emitted - 1) * cfg.output_hop_seconds
    if drift or growth > args.max_growth_mib:
        print(f"FAIL: drift={drift}, RSS growth {growth:.1f} MiB (bound {args.max_growth_mib})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
