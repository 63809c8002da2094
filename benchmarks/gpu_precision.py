"""Accuracy of the reference network on a GPU: CUDA FP32 / FP16 / BF16 autocast, eager and compiled,
each against CPU FP32 eager, on generated scenes, with the project's FP16 tolerances.

It answers what a Jetson user asks before shipping FP16: do the SED decisions and DOAs survive half
precision? (TensorRT's FP16 engine is a different compiler; this is the torch-side evidence.)

    python benchmarks/gpu_precision.py --scenes 32 [--weights W] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

VARIANTS = {  # name -> (autocast dtype or None, compiled)
    "cuda-fp32": (None, False),
    "cuda-fp16": ("float16", False),
    "cuda-bf16": ("bfloat16", False),
    "cuda-compile-fp16": ("float16", True),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=None, help="weights (.safetensors); default: the bundled model")
    p.add_argument("--scenes", type=int, default=32)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--json", default=None)
    args = p.parse_args()

    import torch

    from glfer_edge.parity import score_recordings, synth_recordings
    from glfer_edge.parity import TOLERANCES, compare_outputs, violations
    from glfer_edge.weights import DEFAULT_WEIGHTS, load_model

    model = load_model(args.weights or DEFAULT_WEIGHTS).eval()
    config = model.config
    recordings = synth_recordings(config, args.scenes, seed=args.seed)
    audio = torch.from_numpy(np.stack([r.audio for r in recordings]))

    def run(net: torch.nn.Module, device: str, dtype: str | None) -> tuple[np.ndarray, np.ndarray, float]:
        sed, doa, t0 = [], [], time.perf_counter()
        with torch.inference_mode(), torch.autocast(device, dtype=getattr(torch, dtype or "float16"),
                                                    enabled=dtype is not None):
            for chunk in audio.split(args.batch):
                s, d = net(chunk.to(device))
                sed.append(s.float().cpu().numpy())
                doa.append(d.float().cpu().numpy())
        return np.concatenate(sed), np.concatenate(doa), time.perf_counter() - t0

    def flat(a: np.ndarray) -> np.ndarray:  # (B, T, ...) -> (B*T, ...)
        return a.reshape(-1, *a.shape[2:])

    ref_sed, ref_doa, _ = run(model, "cpu", None)
    ref_seld = score_recordings(config, recordings, ref_sed, ref_doa).seld
    tol = TOLERANCES["fp16"]
    rows = {}
    gpu = model.to("cuda")
    compiled = torch.compile(gpu, mode="reduce-overhead")
    for name, (dtype, use_compiled) in VARIANTS.items():
        net = compiled if use_compiled else gpu
        run(net, "cuda", dtype)  # warm-up / compile
        sed, doa, secs = run(net, "cuda", dtype)
        stats = compare_outputs(flat(ref_sed), flat(ref_doa), flat(sed), flat(doa), threshold=config.sed_threshold)
        delta = score_recordings(config, recordings, sed, doa).seld - ref_seld
        rows[name] = {**dataclasses.asdict(stats), "seld_delta": delta,
                      "violations_fp16_tolerances": violations(stats, tol, delta), "seconds": secs}
    print(f"{args.scenes} scenes of {config.segment_seconds:g} s, reference CPU FP32 eager (SELD {ref_seld:.4f}); "
          f"tolerances: fp16 set; torch {torch.__version__} on {torch.cuda.get_device_name()}")
    print("| variant | SED max abs | SED agreement | DOA mean deg | DOA p99 deg | SELD delta | within fp16 tol |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        within = "NO" if r["violations_fp16_tolerances"] else "yes"
        print(f"| {name} | {r['sed_max_abs']:.2e} | {r['sed_agreement']:.4f} | {r['doa_angle_mean_deg']:.3f} | "
              f"{r['doa_angle_p99_deg']:.3f} | {r['seld_delta']:+.4f} | {within} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"scenes": args.scenes, "reference_seld": ref_seld, "variants": rows}, f, indent=1, default=float)


if __name__ == "__main__":
    main()
