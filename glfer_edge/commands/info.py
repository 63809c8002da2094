"""``glfer-edge info``: presets with parameter counts and MACs per segment, or one artifact's contract."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glfer_edge._fileio import STDOUT, add_force_argument, add_json_argument, check_output, write_json

if TYPE_CHECKING:
    from glfer_edge.config import SELDConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", action="append", help="only these presets (repeatable); default all")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="describe one artifact instead (.safetensors, .onnx, .engine; 'default': the bundled "
                        "model): classes, input, decision settings, provenance; needs no torch")
    add_json_argument(p, "the table")
    add_force_argument(p)


def run(args: argparse.Namespace) -> int:
    check_output(args.json, args.force, "--json")
    if args.model is not None:
        return _describe_model(args)
    from glfer_edge.config import PRESETS, get_preset
    from glfer_edge.errors import require

    require("torch", "torch", "counting parameters and MACs")
    from glfer_edge.model.complexity import segment_macs

    names = args.preset or list(PRESETS)
    rows = []
    for name in names:
        cfg = get_preset(name)
        c = segment_macs(cfg)
        rows.append({
            "preset": name, "classes": cfg.model.num_classes, "segment_s": cfg.segment_seconds,
            "parameters": c.parameters, "executed_gmac": c.executed_macs / 1e9, "paper_gmac": c.paper_macs / 1e9,
            "frontend_gmac": c.frontend_macs / 1e9, "gru_gmac": c.gru_macs / 1e9,
        })
    if args.json is not None:
        write_json(args.json, rows)
        if args.json == STDOUT:
            return 0
    print(f"{'preset':<28} {'classes':>7} {'params':>11} {'GMAC/seg':>9} {'paper':>7} {'frontend':>9} {'GRU':>7}")
    for r in rows:
        print(
            f"{r['preset']:<28} {r['classes']:>7} {r['parameters']:>11,} {r['executed_gmac']:>9.3f} "
            f"{r['paper_gmac']:>7.3f} {r['frontend_gmac']:>9.3f} {r['gru_gmac']:>7.4f}"
        )
    print(f"MACs per {rows[0]['segment_s']:g}-s segment at batch 1 (glfer_edge.model.complexity.segment_macs): "
          "'GMAC/seg' is the executed graph after reparameterization, frontend included (what bench's GFLOP/s "
          "counts); 'paper' is the training network without the frontend, as the paper counts.")
    return 0


def describe_artifact(path: str | Path) -> dict[str, Any]:
    """What an artifact promises its caller, from its metadata alone (nothing is loaded onto a device)."""
    from glfer_edge import metadata as md
    from glfer_edge.runtime.artifact import artifact_kind, artifact_metadata, calibration_of, config_from_metadata
    from glfer_edge.runtime.trt_compat import read_sidecar

    path = Path(path)
    backend = artifact_kind(path)
    meta = artifact_metadata(path)
    config, precision = config_from_metadata(meta, path)
    training = json.loads(meta.get(md.KEY_TRAINING, "null"))  # weights only; exports point at them by sha256
    info: dict[str, Any] = {
        "file": str(path), "backend": backend, "precision": precision, "preset": config.name,
        "classes": list(config.class_names), "sample_rate": config.features.sample_rate,
        "channel_order": config.features.channel_order, "segment_seconds": config.segment_seconds,
        "output_hop_seconds": config.output_hop_seconds,
        "outputs": _outputs(config),
        "decisions": {str(views): _decision(config, views, training or {})
                      for views in (1, *(v for v, _, _ in config.tta_decisions))},
        # Exports name the weights they came from; a weights file is its own.
        "weights_sha256": md.sha256_file(path) if backend == "torch" else meta.get(md.KEY_WEIGHTS_SHA256),
        "sdk_version": meta.get(md.KEY_VERSION),
    }
    if training is not None and "average" in training:
        info["training"] = {"averaged_from": [p["sha256"] for p in training["average"]["parents"]]}
    elif training is not None:
        info["training"] = {"epoch": training.get("epoch"), "init_weights": (training.get("init_weights") or {}).get("sha256")}
    if calibration_of(meta) is not None:
        info["calibration"] = calibration_of(meta)
    if backend == "tensorrt":
        sidecar = read_sidecar(path)
        info["tensorrt"] = {**sidecar["tensorrt"], "gpu": sidecar.get("gpu"), "built_at": sidecar.get("built_at")}
    return info


def _outputs(config: SELDConfig) -> dict[str, dict[str, Any]]:
    """Each output of one segment: shape (batch, frames, classes[, 3]) and what its values are."""
    from glfer_edge import metadata as md

    t, c = config.output_frames, config.model.num_classes
    what = {"sed": ([t, c], "activity probability per class"),
            "doa": ([t, c, 3], "Cartesian DOA vector (x, y, z) per class"),
            md.DISTANCE_NAME: ([t, c], "source distance per class, metres")}
    return {name: {"shape": ["batch", *what[name][0]], "values": what[name][1]} for name in md.output_names(config)}


def _decision(config: SELDConfig, views: int, training: dict[str, Any]) -> dict[str, Any]:
    """The pair for ``views`` views, with its validation SELD error where tune-threshold recorded the sweep."""
    threshold, frames = config.decision(views)
    sweep = (training.get("threshold" if views == 1 else f"threshold_tta{views}") or {}).get("sweep", [])
    row = next((r for r in sweep if (r["threshold"], r.get("doa_smoothing", 1)) == (threshold, frames)), None)
    return {"threshold": threshold, "doa_smoothing": frames, "validation_seld": row and row["SELD"]}


def _describe_model(args: argparse.Namespace) -> int:
    from glfer_edge.runtime.seld import default_model

    path = default_model()[0] if args.model == "default" else args.model
    info = describe_artifact(path)
    if args.json is not None:
        write_json(args.json, info)
        if args.json == STDOUT:
            return 0
    decisions = "; ".join(
        f"{'one view' if views == '1' else f'--tta {views}'}: threshold {d['threshold']:g}, "
        f"DOA smoothing {d['doa_smoothing']} frame(s)"
        + (f" (validation SELD {d['validation_seld']:.3f})" if d["validation_seld"] is not None else "")
        for views, d in info["decisions"].items())
    lines = [
        f"{info['file']}: {info['backend']} {info['precision']}, preset {info['preset']}",
        f"classes ({len(info['classes'])}): {', '.join(info['classes'])}",
        f"input: FOA {info['channel_order'].upper()} at {info['sample_rate']} Hz, {info['segment_seconds']:g}-s segments; "
        f"outputs every {info['output_hop_seconds']:g} s",
        "outputs: " + "; ".join(f"{name} ({', '.join(map(str, o['shape']))}): {o['values']}"
                                for name, o in info["outputs"].items()),
        f"decides at: {decisions}",
        f"weights sha256: {info['weights_sha256'] or 'not recorded'}",
    ]
    if "averaged_from" in info.get("training", {}):
        lines.append("training: average of weights " + ", ".join(h[:12] for h in info["training"]["averaged_from"]))
    elif "training" in info:
        t = info["training"]
        lines.append(f"training: best epoch {t['epoch']}"
                     + (f", fine-tuned from weights {t['init_weights'][:12]}" if t["init_weights"] else ""))
    if "tensorrt" in info:
        trt = info["tensorrt"]
        lines.append(f"engine: {trt['flavour']} {trt['version']}, built {trt['built_at']}")
    print("\n".join(lines))
    return 0
