"""Lever for the CPU FP32 target: would onnxruntime run MSFE's grouped convolutions faster with fewer groups?

The profile puts MSFE's grouped convolutions (groups 2/4/8, 2-16 channels per group, no NCHWc
kernel) at ~22 % of ORT FP32's time for ~11 % of the MACs. A grouped convolution can be rewritten
exactly as one with fewer groups (block-diagonal weights, zeros between the blocks): more MACs, but
possibly a faster kernel. This times every MSFE convolution of the paper preset (batch 1, 8 s), alone
in a one-node graph, at its own group count and at each halving down to a dense convolution.
``--int8`` times QLinearConv instead (the int8-cpu form); its result sets the export's
``CPU_MIN_GROUP_OUTPUTS``.

``--depthwise`` times the FP32 artifact's rewrite (``glfer_edge.export.fp32_cpu``) beside each grouped
convolution, whatever its kernel: the input's copies concatenated once per output of its group, a
depthwise convolution (which, unlike a grouped one, has an NCHWc kernel), and a 0/1 1x1 convolution
that sums each output's pairs. Its result sets the export's ``DEPTHWISE_MIN_KERNEL``; the whole-graph
A/B is ``levers.py``'s "ort-fp32 ALL, grouped convs kept" variant.

    python benchmarks/grouped_conv.py --rounds 15 --threads 2 [--int8 | --depthwise]
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
    from glfer_edge.export.fp32_cpu import depthwise_grouped_convs

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--int8", action="store_true", help="time QLinearConv (the int8-cpu form) instead of Conv")
    p.add_argument("--depthwise", action="store_true", help="also time each convolution's depthwise form")
    args = p.parse_args()
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
                model = depthwise_grouped_convs(onnx.load_from_string(conv_graph(width, width // n_branches, k, g, hw)),
                                                min_kernel=1)
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
