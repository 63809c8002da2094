"""Where an ONNX artifact's time goes in onnxruntime: per op type, per model scope and per node, with 1 and N threads.

    python benchmarks/profile_ops.py MODEL.onnx [--threads 2] [--runs 6] [--top 25] [--out profile.txt]

Scopes are the module paths of the node names (``/encoder/stages.0/msfe``, ``/frontend``, ...); nodes that
ORT's optimizers add (layout Transposes, NCHWc reorders) have no module path and count as ``(ORT layout)``.
Convolutions and MatMuls also get their multiply-accumulates (from the kernel's input and output shapes)
and the GMAC/s they reached.

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
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np


def kernel_times(model: Path, threads: int, runs: int) -> tuple[dict[str, float], dict[str, tuple[str, str, float]]]:
    """ms per run of every node (kernel time, the warm-up run left out), and each node's (op type, input shapes,
    multiply-accumulates: convolutions and MatMuls only, else 0)."""
    import onnxruntime as ort

    weights = conv_weights(model)
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
            outputs = [list(d.values())[0] for d in event["args"].get("output_type_shape", [])]
            op = event["args"]["op_name"]
            info[name] = (op, str([s for s in shapes if s][:2]), macs(name, op, shapes, outputs, weights))
    return {k: float(np.mean(v[1:])) for k, v in durations.items() if len(v) > 1}, info


def conv_weights(model: Path) -> dict[str, int]:
    """Conv node name -> weight elements per output channel (Cin/group x kernel), through a DequantizeLinear of
    a constant weight too: ORT's profile lists no shape for a prepacked weight."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model)).graph
    dims = {t.name: list(t.dims) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].t.dims:
            dims[n.output[0]] = list(numpy_helper.to_array(n.attribute[0].t).shape)
    for n in graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in dims:
            dims[n.output[0]] = dims[n.input[0]]
    return {n.name: math.prod(dims[n.input[1]][1:]) for n in graph.node
            if n.op_type == "Conv" and len(n.input) > 1 and len(dims.get(n.input[1], [])) >= 3}


def macs(name: str, op: str, inputs: list[list[int]], outputs: list[list[int]], weights: dict[str, int]) -> float:
    """Multiply-accumulates of one convolution (any ORT kernel: Conv, NCHWc Conv, QLinearConv) or MatMul kernel
    call: the output's elements times the weight's elements per output channel, or times the reduced length."""
    if not outputs or not outputs[0]:
        return 0.0
    if "MatMul" in op:
        return float(math.prod(outputs[0]) * inputs[0][-1]) if inputs and inputs[0] else 0.0
    if "Conv" not in op:
        return 0.0
    base = re.sub(r"(_token_\d+|_output_0_nchwc|_nchwc)$", "", name)
    per_output = weights.get(base) or weights.get(name)
    if per_output is None and len(inputs) > 1 and len(inputs[1]) >= 3:
        per_output = math.prod(inputs[1][1:])
    return float(math.prod(outputs[0]) * per_output) if per_output else 0.0


def scope(name: str) -> str:
    """The node's module path, three levels deep (``/encoder/stages.0/msfe``), or ``(ORT layout)``."""
    if not name.startswith("/"):
        return "(ORT layout)"
    parts = name.split("/")[1:-1]
    return "/" + "/".join(parts[:3]) if parts else "(graph)"


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
    load = os.getloadavg()
    lines = [f"# {Path(model).name} (ORT kernel times, mean of {runs} runs; {threads} threads vs 1; load average {load[0]:.2f})",
             f"{'op type':24s} {f'{threads} thr ms':>9s} {'share':>6s} {'1 thr ms':>9s} {'speedup':>8s}  nodes"]
    for op, ms in by_op.most_common():
        lines.append(f"{op:24s} {ms:9.2f} {100 * ms / total:5.1f}% {by_op1[op]:9.2f} {by_op1[op] / max(ms, 1e-9):8.2f}"
                     f"  {count[op]}")
    lines.append(f"{'total':24s} {total:9.2f} {'':6s} {sum(by_op1.values()):9.2f}")
    lines.append(f"\n## per model scope ({threads} threads; 1 thread)")
    by_scope: dict[str, float] = collections.Counter()
    by_scope1: dict[str, float] = collections.Counter()
    mac_scope: dict[str, float] = collections.Counter()
    for name, ms in many.items():
        by_scope[scope(name)] += ms
        by_scope1[scope(name)] += one.get(name, 0.0)
        mac_scope[scope(name)] += info[name][2]
    lines.append(f"{'scope':36s} {f'{threads} thr ms':>9s} {'share':>6s} {'1 thr ms':>9s} {'GMAC':>7s}"
                 f" {'GMAC/s 1 thr':>13s}")
    for sc, ms in by_scope.most_common():
        rate = mac_scope[sc] / 1e6 / max(by_scope1[sc], 1e-9)
        lines.append(f"{sc:36s} {ms:9.2f} {100 * ms / total:5.1f}% {by_scope1[sc]:9.2f} {mac_scope[sc] / 1e9:7.3f}"
                     f" {rate:13.1f}")
    conv_ms1 = sum(one.get(n, 0.0) for n in many if info[n][2])
    conv_macs = sum(info[n][2] for n in many)
    lines.append(f"\nConv/MatMul kernels: {conv_macs / 1e9:.2f} GMAC executed, {conv_ms1:.1f} ms on 1 thread "
                 f"({conv_macs / 1e6 / max(conv_ms1, 1e-9):.1f} GMAC/s); everything else "
                 f"{sum(one.values()) - conv_ms1:.1f} ms on 1 thread")
    lines.append(f"\n## top {top} nodes ({threads} threads; x: 1-thread time / {threads}-thread time;"
                 " GMAC/s on 1 thread)")
    for name, ms in sorted(many.items(), key=lambda kv: -kv[1])[:top]:
        op, shapes, n_macs = info[name]
        rate = f"{n_macs / 1e6 / max(one.get(name, 0.0), 1e-9):6.1f}" if n_macs else f"{'':6s}"
        lines.append(f"{ms:7.2f} ms  x{one.get(name, 0.0) / max(ms, 1e-9):4.2f}  {rate}  {op:20s} {shapes:44s} {name}")
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
