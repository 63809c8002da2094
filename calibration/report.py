"""INT8 calibration report: activation ranges of the Q/DQ graph and INT8-vs-FP32 accuracy on held-out scenes.

Written next to the artifact as ``<artifact>.calibration.json`` and ``.md``. Accuracy is measured
with ONNX Runtime on generated scenes the calibration never saw (another seed, same level range):
output parity (glfer_edge.tolerances) and the SELD error of both artifacts against the scenes'
labels (glfer_edge.metrics, DCASE 2023 rules), whose difference is the ``seld_delta`` tolerance.

Which arithmetic the figures describe depends on the form, and the report names it with the CPU:
the TensorRT form runs with graph optimizations off, so each Q/DQ pair is computed in float, which is
what TensorRT's integer kernels compute exactly (ORT's own CPU kernels would measure this CPU instead);
the CPU form runs on onnxruntime's INT8 kernels of the machine that writes the report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from glfer_edge import metadata as md
from glfer_edge.metadata import fixed_batch, graph_metadata
from glfer_edge._fileio import json_safe, write_text_atomic
from glfer_edge.config import SELDConfig
from glfer_edge.machine import cpu_label
from glfer_edge.runtime.artifact import calibration_of
from glfer_edge.parity.tensors import compare_outputs, violations
from glfer_edge.tolerances import TOLERANCES

INT8_MAX = 127
HELD_OUT_SEED_OFFSET = 1_000_003  # held-out scenes: a seed the calibration set never uses


def activation_ranges(qdq: onnx.ModelProto) -> dict[str, float]:
    """Tensor -> calibrated absolute range of every activation QuantizeLinear: scale * 127 for symmetric
    S8 (TensorRT form), the larger end of scale * ([0, 255] - zero point) for U8 (CPU form)."""
    inits = {t.name: t for t in qdq.graph.initializer}
    ranges = {}
    for node in qdq.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits:
            scale = float(np.max(numpy_helper.to_array(inits[node.input[1]])))
            zp = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] in inits else None
            if zp is not None and zp.dtype == np.uint8:
                z = float(np.asarray(zp).reshape(-1)[0])
                ranges[node.input[0]] = scale * max(z, 255.0 - z)
            else:
                ranges[node.input[0]] = scale * INT8_MAX
    return ranges


def held_out_accuracy(
    fp32: onnx.ModelProto, int8: onnx.ModelProto, config: SELDConfig, n_scenes: int = 16, seed: int = 0,
    exact: bool | None = None,
) -> dict[str, Any]:
    """Parity statistics, tolerance violations and SELD errors of INT8 vs FP32 on generated scenes.

    ``exact``: compute each Q/DQ pair in float (the arithmetic of TensorRT and of VNNI CPUs) instead of
    on this CPU's INT8 kernels; default: exact for the TensorRT form, kernels for the CPU form.
    """
    import onnxruntime as ort

    from glfer_edge.calibration.readers import DEFAULT_BATCH, SynthReader
    from glfer_edge.metrics import SELDMetrics
    from glfer_edge.postprocess import outputs_to_rows

    reader = SynthReader(config, n_scenes, seed + HELD_OUT_SEED_OFFSET, batch_size=fixed_batch(fp32) or DEFAULT_BATCH)
    emulated = exact if exact is not None else (calibration_of(graph_metadata(int8)) or {}).get("target") != "cpu"
    options = ort.SessionOptions()
    if emulated:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sessions = {
        name: ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
        for name, graph in (("fp32", fp32), ("int8", int8))
    }
    names = list(md.output_names(config))  # sed, doa[, distance]
    chunks = {name: [] for name in sessions}
    for batch in reader:  # batches of a few segments keep the activations of large presets in memory
        for name, session in sessions.items():
            chunks[name].append(session.run(names, batch))
    outputs = {name: [np.concatenate(parts) for parts in zip(*runs)] for name, runs in chunks.items()}
    (sed_a, doa_a, *dist_a), (sed_b, doa_b, *dist_b) = outputs["fp32"], outputs["int8"]
    stats = compare_outputs(sed_a, doa_a, sed_b, doa_b, threshold=config.sed_threshold,
                            distance_a=next(iter(dist_a), None), distance_b=next(iter(dist_b), None))
    labels = [reader.scene(i).rows for i in range(n_scenes)]
    seld = {}
    for name, (sed, doa, *_) in outputs.items():
        metrics = SELDMetrics(config.model.num_classes, edition="2023")
        for i, rows in enumerate(labels):
            if rows:  # the official 2023 scoring cannot score an empty reference
                metrics.update(rows, outputs_to_rows(sed[i], doa[i], config))
        seld[name] = metrics.compute().seld if metrics.num_files else float("nan")
    delta = seld["int8"] - seld["fp32"]
    arithmetic = ("Q/DQ computed in float (optimizations off): the exact integer arithmetic of TensorRT's kernels"
                  if emulated else "onnxruntime's INT8 CPU kernels on this CPU")
    return {
        "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider, {arithmetic}", "cpu": cpu_label(),
        "scenes": n_scenes, "seed": reader.seed, "parity": stats.to_dict(),
        "seld_fp32": seld["fp32"], "seld_int8": seld["int8"], "seld_delta": delta,
        "violations": violations(stats, TOLERANCES["int8"], None if np.isnan(delta) else delta),
    }


def write_calibration_report(artifact: str | Path, calibration: dict[str, Any], ranges: dict[str, float],
                             accuracy: dict[str, Any] | None) -> tuple[Path, Path]:
    """Write ``<artifact>.calibration.json`` and ``.md``; returns both paths."""
    artifact = Path(artifact)
    base = artifact.with_name(artifact.name.removesuffix(".onnx"))
    report = {"artifact": artifact.name, "calibration": calibration, "activation_ranges": ranges, "accuracy": accuracy}
    json_path, md_path = Path(f"{base}.calibration.json"), Path(f"{base}.calibration.md")
    write_text_atomic(json_path, json.dumps(json_safe(report), indent=2, sort_keys=True))
    write_text_atomic(md_path, _markdown(report))
    return json_path, md_path


def _markdown(report: dict[str, Any]) -> str:
    cal, acc, ranges = report["calibration"], report["accuracy"], report["activation_ranges"]
    lines = [f"# INT8 calibration report: {report['artifact']}", "", "## Calibration", ""]
    lines += [f"- {k}: {v}" for k, v in sorted(cal.items()) if k != "warnings"]
    lines += ["", "Warnings: " + ("; ".join(cal["warnings"]) if cal["warnings"] else "none"), ""]
    if acc is not None:
        p = acc["parity"]
        lines += [
            f"## INT8 vs FP32 on {acc['scenes']} held-out generated scenes (seed {acc['seed']})", "",
            f"Measured with {acc['runtime']}, on {acc['cpu']}.", "",
            "| metric | value | INT8 tolerance |", "|---|---|---|",
            f"| SED decision agreement | {p['sed_agreement']:.4f} | >= {TOLERANCES['int8'].sed_agreement_min} |",
            f"| mean DOA angle on active frames (deg) | {p['doa_angle_mean_deg']:.3f} | "
            f"<= {TOLERANCES['int8'].doa_angle_mean_max_deg} |",
            f"| SELD error FP32 / INT8 / delta | {acc['seld_fp32']:.4f} / {acc['seld_int8']:.4f} / "
            f"{acc['seld_delta']:+.4f} | <= {TOLERANCES['int8'].seld_delta_max} |",
            f"| SED max / mean abs error | {p['sed_max_abs']:.4g} / {p['sed_mean_abs']:.4g} | |",
            f"| DOA max / mean abs error | {p['doa_max_abs']:.4g} / {p['doa_mean_abs']:.4g} | |",
            *_distance_rows(p),
            "", "Violations: " + ("; ".join(acc["violations"]) if acc["violations"] else "none"), "",
        ]
    lines += ["## Activation ranges (|x| <= scale * 127)", "", "| tensor | range |", "|---|---|"]
    lines += [f"| `{name}` | {value:.4g} |" for name, value in sorted(ranges.items())]
    return "\n".join(lines) + "\n"


def _distance_rows(parity: dict[str, Any]) -> list[str]:
    """The distance lines of a distance model's report (none for a model without the distance head)."""
    if parity.get("distance_max_abs") is None:
        return []
    tol = TOLERANCES["int8"]
    rel = parity["distance_rel_mean"]
    rel = "n/a (no active reference cell)" if rel is None or np.isnan(rel) else f"{rel:.4f}"
    bound = f"<= {tol.distance_rel_mean_max}" if tol.distance_rel_mean_max is not None else ""
    abs_bound = f"<= {tol.distance_max_abs} m" if tol.distance_max_abs is not None else ""
    return [
        f"| mean relative distance error on active frames | {rel} | {bound} |",
        f"| distance max / mean abs error (m) | {parity['distance_max_abs']:.4g} / {parity['distance_mean_abs']:.4g} "
        f"| {abs_bound} |",
    ]
