"""Lever for the CPU FP32 target: would onnxruntime run MSFE's grouped convolutions faster with fewer groups?

The profile puts MSFE's grouped convolutions (groups 2/4/8, 2-16 channels per group, no NCHWc
kernel) at ~22 % of ORT FP32's time for ~11 % of the MACs. A grouped convolution can be rewritten
exactly as one with fewer groups (block-diagonal weights, zeros between the blocks): more MACs, but
possibly a faster kernel. This times every MSFE convolution of the paper preset (batch 1, 8 s), alone
in a one-node graph, at its own group count and at each halving down to a dense convolution.
``--int8`` times QLinearConv instead (the int8-cpu form); its result sets the export's
``CPU_MIN_GROUP_OUTPUTS``.

``--depthwise`` times a second exact FP32 rewrite beside each grouped convolution: replicate every
input channel once per output of its group (a 0/1 1x1 convolution), a depthwise convolution (which,
unlike a grouped one, has an NCHWc kernel), and a 0/1 1x1 convolution that sums each group's inputs.
``--rewrite IN OUT`` writes a whole model with that form for the convolutions with at most
``--max-outputs`` outputs per group, for an A/B with ``levers.py --extra``.

    python benchmarks/grouped_conv.py --rounds 15 --threads 2 [--int8 | --depthwise]
    python benchmarks/grouped_conv.py --rewrite model.fp32.onnx model.depthwise.onnx --max-outputs 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def conv_graph(cin: int, cout: int, k: int, groups: int, hw: tuple[int, int], int8: bool = False) -> bytes:
    """One Conv, or with ``int8`` one QLinearConv (U8 activations, per-channel S8 weights, INT32 bias: the
    int8-cpu artifact's form)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    shape = (cout, cin // groups, k, k)
    attrs = dict(group=groups, pads=[k // 2] * 4, kernel_shape=[k, k])
    if int8:
        tensors = {
            "w": rng.integers(-127, 128, shape, dtype=np.int8), "b": np.zeros(cout, np.int32),
            "xs": np.float32(0.02), "xz": np.uint8(128), "ws": np.full(cout, 0.01, np.float32),
            "wz": np.zeros(cout, np.int8), "ys": np.float32(0.05), "yz": np.uint8(128),
        }
        node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], **attrs)
        dtype = TensorProto.UINT8
    else:
        tensors = {"w": (rng.standard_normal(shape) * 0.05).astype(np.float32), "b": np.zeros(cout, np.float32)}
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)
        dtype = TensorProto.FLOAT
    graph = helper.make_graph(
        [node], "conv", [helper.make_tensor_value_info("x", dtype, [1, cin, *hw])],
        [helper.make_tensor_value_info("y", dtype, None)],
        [numpy_helper.from_array(np.asarray(v), name) for name, v in tensors.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def depthwise_form(model, max_outputs: int) -> int:
    """Rewrite, in place, each constant-weight grouped Conv with at most ``max_outputs`` outputs per group
    as 1x1 replicate -> depthwise -> 1x1 group sum (exact: 0/1 weights); returns how many it rewrote."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    nodes, rewritten = [], 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        g = attrs.pop("group", 1)
        if node.op_type != "Conv" or g == 1 or node.input[1] not in inits:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        cout, ci, kh, kw = w.shape
        co, cin = cout // g, ci * g
        if co > max_outputs or ci == 1:
            nodes.append(node)
            continue
        # depthwise channel (group, input i, output o) <- input channel (group, i); output (group, o)
        rep = np.kron(np.eye(cin, dtype=np.float32), np.ones((co, 1), np.float32))[..., None, None]
        dw = w.reshape(g, co, ci, kh, kw).transpose(0, 2, 1, 3, 4).reshape(cin * co, 1, kh, kw)
        group_sum = np.kron(np.eye(g, dtype=np.float32), np.tile(np.eye(co, dtype=np.float32), ci))[..., None, None]
        p = node.name or node.output[0]
        for name, arr in (("rep", rep), ("dw", dw), ("sum", group_sum)):
            model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(arr), f"{p}_{name}"))
        attrs.pop("kernel_shape", None)
        nodes += [
            helper.make_node("Conv", [node.input[0], f"{p}_rep"], [f"{p}_x"], kernel_shape=[1, 1]),
            helper.make_node("Conv", [f"{p}_x", f"{p}_dw"], [f"{p}_y"], group=cin * co, kernel_shape=[kh, kw], **attrs),
            helper.make_node("Conv", [f"{p}_y", f"{p}_sum", *node.input[2:3]], list(node.output), kernel_shape=[1, 1]),
        ]
        rewritten += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    kept = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return rewritten


def rewrite(src: str, dst: str, max_outputs: int) -> None:
    """Write ``src`` with its narrow grouped convolutions in the depthwise form; check both agree."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(src)
    n = depthwise_form(model, max_outputs)
    onnx.save(model, dst)
    sessions = [ort.InferenceSession(path, providers=["CPUExecutionProvider"]) for path in (src, dst)]
    inp = sessions[0].get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    feed = {inp.name: (np.random.default_rng(0).standard_normal(shape) * 0.05).astype(np.float32)}
    diff = max(float(np.abs(a - b).max()) for a, b in zip(*(s.run(None, feed) for s in sessions)))
    print(f"rewrote {n} grouped convolution(s); largest output difference {diff:.1e}")


def median_ms(graph: bytes, cin: int, hw: tuple[int, int], rounds: int, threads: int, int8: bool = False) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads  # graph optimization level: the default (ALL), as the runtime
    session = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    shape = (1, cin, *hw)
    x = rng.integers(0, 256, shape, dtype=np.uint8) if int8 else rng.standard_normal(shape).astype(np.float32)
    for _ in range(3):
        session.run(None, {"x": x})
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        session.run(None, {"x": x})
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def main() -> None:
    import onnx

    from glfer_edge.config import get_preset

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--int8", action="store_true", help="time QLinearConv (the int8-cpu form) instead of Conv")
    p.add_argument("--depthwise", action="store_true", help="also time each convolution's depthwise form")
    p.add_argument("--rewrite", nargs=2, metavar=("IN", "OUT"), help="write IN with the depthwise form to OUT")
    p.add_argument("--max-outputs", type=int, default=2, help="--rewrite: largest outputs per group to rewrite")
    args = p.parse_args()
    if args.rewrite:
        rewrite(*args.rewrite, args.max_outputs)
        return
    cfg = get_preset("paper")
    m = cfg.model
    n_branches = len(m.msfe_kernels)
    print("| stage | input | kernel | groups: median ms (own group count first, down to dense) |")
    print("|---|---|---|---|")
    for stage, width in enumerate(m.glf_channels):
        hw = (cfg.segment_frames >> (stage + 1), cfg.features.n_bins >> (stage + 1))
        for k, g in zip(m.msfe_kernels, m.msfe_groups):
            if g == 1:
                continue
            cells, groups = [], g
            if args.depthwise:
                model = onnx.load_from_string(conv_graph(width, width // n_branches, k, g, hw))
                depthwise_form(model, max_outputs=width)
                ms = median_ms(model.SerializeToString(), width, hw, args.rounds, args.threads)
                cells.append(f"depthwise {ms:.2f}")
            while groups >= 1:
                graph = conv_graph(width, width // n_branches, k, groups, hw, args.int8)
                ms = median_ms(graph, width, hw, args.rounds, args.threads, args.int8)
                cells.append(f"g{groups} {ms:.2f}")
                groups //= 2
            print(f"| {stage + 1} | {width}x{hw[0]}x{hw[1]} | {k}x{k} | {' / '.join(cells)} |")


if __name__ == "__main__":
    main()
