"""int8-cpu with 8-bit vs 7-bit (reduce-range) weights, timed side by side.

    python benchmarks/int8_weight_bits.py [--rounds 40] [--preset paper]

Both forms run the same onnxruntime kernels (batch 1, one segment, 2 threads, interleaved rounds);
the figure checks that the CPU form's 7-bit weights (exact on CPUs without VNNI, see
``glfer_edge.machine.u8s8_saturates``) cost no time. Prints the CPU with the numbers.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    import glfer_edge.export.int8 as int8
    from glfer_edge.calibration.readers import SynthReader
    from glfer_edge.config import get_preset
    from glfer_edge.export.onnx_fp32 import export_fp32
    from glfer_edge.machine import cpu_label
    from glfer_edge.model.glfernet import GLFERNet

    torch.manual_seed(0)
    config = get_preset(args.preset)
    fp32 = export_fp32(GLFERNet(config).eval(), f"random-init:{args.preset}")
    sessions = {}
    for bits in (8, 7):
        int8.CPU_REDUCE_RANGE = bits == 7
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 8 calibration segments: timing only
            graph = int8.quantize_int8(fp32, SynthReader(config, 8, seed=0), "minmax", target="cpu")
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.log_severity_level = 3
        sessions[bits] = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    audio = (np.random.default_rng(0).standard_normal((1, 4, config.segment_samples)) * 0.05).astype(np.float32)
    times: dict[int, list[float]] = {bits: [] for bits in sessions}
    for rnd in range(args.rounds + 3):
        for bits, session in sessions.items():
            t0 = time.perf_counter()
            session.run(None, {"audio": audio})
            if rnd >= 3:  # three warm-up rounds
                times[bits].append(time.perf_counter() - t0)
    ratio = float(np.median(np.array(times[8]) / np.array(times[7])))
    print(f"{cpu_label()}; onnxruntime {ort.__version__}; {args.preset} int8-cpu, batch 1, "
          f"{config.segment_seconds:g} s, {args.threads} threads, {args.rounds} interleaved rounds")
    print(f"per-round median: 8-bit weights {1e3 * np.median(times[8]):.1f} ms, 7-bit weights "
          f"{1e3 * np.median(times[7]):.1f} ms; median per-round ratio 8-bit / 7-bit {ratio:.3f}")


if __name__ == "__main__":
    main()
