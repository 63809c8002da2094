"""Where an ONNX artifact's time goes in onnxruntime: per op type and per node, with 1 and with N threads.

    python benchmarks/profile_ops.py MODEL.onnx [--threads 2] [--runs 6] [--top 25] [--out profile.txt]

onnxruntime's own profiler (``enable_profiling``) times every kernel; the sums per op type, and the
speedup of each op type from 1 to N threads, show which kernels run on one thread only (on ORT 1.32:
DequantizeLinear, QLinearConcat, a broadcasting QLinearMul, BatchNormalization, Slice). The profiler
adds overhead, and on a shared VM the two thread counts run minutes apart: compare shares and
speedups here, and latencies with ``levers.py`` (side by side).
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np


def kernel_times(model: Path, threads: int, runs: int) -> tuple[dict[str, float], dict[str, tuple[str, str]]]:
    """ms per run of every node (kernel time, the warm-up run left out), and each node's (op type, input shapes)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        first = session.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in first.shape]
        audio = (np.random.default_rng(0).standard_normal(shape) * 0.05).astype(np.float32)
        for _ in range(1 + runs):
            session.run(None, {first.name: audio})
        events = json.loads(Path(session.end_profiling()).read_text())
    durations: dict[str, list[float]] = collections.defaultdict(list)
    info = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            name = event["name"][: -len("_kernel_time")]
            durations[name].append(event["dur"] / 1e3)
            shapes = [list(d.values())[0] for d in event["args"].get("input_type_shape", [])]
            info[name] = (event["args"]["op_name"], str([s for s in shapes if s][:2]))
    return {k: float(np.mean(v[1:])) for k, v in durations.items() if len(v) > 1}, info


def report(model: Path, threads: int, runs: int, top: int) -> str:
    one, info = kernel_times(model, 1, runs)
    many, _ = kernel_times(model, threads, runs)
    by_op1: dict[str, float] = collections.Counter()
    by_op: dict[str, float] = collections.Counter()
    count: dict[str, int] = collections.Counter()
    for name, ms in many.items():
        by_op[info[name][0]] += ms
        by_op1[info[name][0]] += one.get(name, 0.0)
        count[info[name][0]] += 1
    total = sum(many.values())
    lines = [f"# {model} (ORT kernel times, mean of {runs} runs; {threads} threads vs 1)",
             f"{'op type':24s} {f'{threads} thr ms':>9s} {'share':>6s} {'1 thr ms':>9s} {'speedup':>8s}  nodes"]
    for op, ms in by_op.most_common():
        lines.append(f"{op:24s} {ms:9.2f} {100 * ms / total:5.1f}% {by_op1[op]:9.2f} {by_op1[op] / max(ms, 1e-9):8.2f}"
                     f"  {count[op]}")
    lines.append(f"{'total':24s} {total:9.2f} {'':6s} {sum(by_op1.values()):9.2f}")
    lines.append(f"\n## top {top} nodes ({threads} threads)")
    for name, ms in sorted(many.items(), key=lambda kv: -kv[1])[:top]:
        op, shapes = info[name]
        lines.append(f"{ms:7.2f} ms  x{one.get(name, 0.0) / max(ms, 1e-9):4.2f}  {op:20s} {shapes:44s} {name}")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=6)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = p.parse_args()
    text = report(args.model, args.threads, args.runs, args.top)
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
