"""Lever for the int8-cpu form: 2x2 average pooling as QLinearAveragePool or as a depthwise QLinearConv?

Times both, alone in a one-node graph (U8 in and out, the int8-cpu artifact's form), on the inputs
of the paper preset's four pools (batch 1, 8 s), and prints the largest difference in output steps.
Its result is why the export rewrites AveragePool into a depthwise Conv with weights 1/4
(``glfer_edge.export.int8_cpu.pools_as_depthwise_convs``).

    python benchmarks/avgpool_int8.py --rounds 15 --threads 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def pool_graph(kind: str, shape: tuple[int, int, int]) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    c = shape[0]
    scales = {"xs": np.float32(0.02), "xz": np.uint8(128), "ys": np.float32(0.02), "yz": np.uint8(128)}
    if kind == "QLinearAveragePool":
        tensors = scales
        node = helper.make_node("QLinearAveragePool", ["x", "xs", "xz", "ys", "yz"], ["y"], domain="com.microsoft",
                                kernel_shape=[2, 2], strides=[2, 2])
    else:  # weight 1/4 quantized per channel: 127 with scale 0.25 / 127
        tensors = {**scales, "w": np.full((c, 1, 2, 2), 127, np.int8), "ws": np.full(c, 0.25 / 127, np.float32),
                   "wz": np.zeros(c, np.int8)}
        node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], group=c,
                                kernel_shape=[2, 2], strides=[2, 2])
    graph = helper.make_graph(
        [node], "pool", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, *shape])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in tensors.items()],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def main() -> None:
    import onnxruntime as ort

    from glfer_edge.config import get_preset

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    cfg = get_preset("paper")
    t, f = cfg.segment_frames, cfg.features.n_bins
    widths = (cfg.model.stem_channels, *cfg.model.glf_channels)
    print("| pool input | QLinearAveragePool ms | depthwise QLinearConv ms | max step difference |")
    print("|---|---|---|---|")
    for i, c in enumerate(widths):
        shape = (c, t >> i, f >> i)
        x = np.random.default_rng(0).integers(0, 256, (1, *shape), dtype=np.uint8)
        cells, outs = [], []
        for kind in ("QLinearAveragePool", "QLinearConv"):
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            session = ort.InferenceSession(pool_graph(kind, shape), so, providers=["CPUExecutionProvider"])
            outs.append(session.run(None, {"x": x})[0].astype(np.int32))
            times = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                session.run(None, {"x": x})
                times.append(time.perf_counter() - t0)
            cells.append(f"{np.median(times) * 1e3:.2f}")
        print(f"| {c}x{shape[1]}x{shape[2]} | {' | '.join(cells)} | {int(np.abs(outs[0] - outs[1]).max())} |")


if __name__ == "__main__":
    main()
