"""Parity of two artifacts (weights, ONNX, engines): output agreement, task metrics, first divergent layer.

``compare_artifacts`` runs both artifacts through :class:`glfer_edge.runtime.SELDRuntime` on the
same labelled recordings (generated scenes or a DCASE folder) and reports, for B against the
reference A: max / mean absolute error and cosine similarity per output, SED decision agreement at
the model's threshold, DOA angular error on the frames A marks active, and both sides' SELD metrics
against the labels with their delta, checked against a :class:`~glfer_edge.tolerances.Tolerances` set.

``locate_divergence`` (ONNX vs ONNX) is Polygraphy's ``--onnx-outputs mark all`` in one call: it
marks every intermediate tensor both graphs compute, runs both with onnxruntime, walks A in
topological order and names the first layer whose output leaves the layer tolerance, so the user
sees which layer to keep at higher precision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glfer_edge._fileio import json_safe
from glfer_edge.config import SELDConfig
from glfer_edge.data.dcase import LabelRow
from glfer_edge.errors import InputError
from glfer_edge.tolerances import TOLERANCES, ParityStats, Tolerances, compare_outputs, violations

if TYPE_CHECKING:
    from glfer_edge.metrics import SELDResult

__all__ = [
    "Recording", "ArtifactSummary", "ParityReport", "LayerTolerance", "LayerStat", "LayerReport",
    "LAYER_TOLERANCES", "synth_recordings", "dcase_recordings", "score_recordings", "compare_artifacts",
    "locate_divergence", "render_markdown",
]

_SELD_KEYS = ("ER20", "F20", "LE_CD", "LR_CD", "SELD")


@dataclass(frozen=True)
class Recording:
    """A labelled FOA recording; it is cut into the model's segments (the tail zero-padded)."""

    name: str
    audio: np.ndarray  # (4, N) float32
    rows: tuple[LabelRow, ...]  # DCASE label rows, 100-ms frames from the start of the recording
    edition: str = "2023"


def synth_recordings(config: SELDConfig, n: int, seed: int = 0) -> list[Recording]:
    """``n`` generated scenes of one segment each, with the model's classes where the generator has them."""
    from glfer_edge.config import SYNTH_CLASSES
    from glfer_edge.data.sources import SOURCE_CLASSES
    from glfer_edge.data.synth import SceneConfig, generate_scene

    if n < 1:
        raise InputError(f"--synth {n}: generate at least one scene")
    classes = config.class_names
    if not set(classes) <= set(SOURCE_CLASSES):  # e.g. STARSS23 names: labels by index, scores still comparable
        classes = SYNTH_CLASSES[: config.model.num_classes]
    scene_cfg = SceneConfig(duration_s=max(config.segment_seconds, 1.0), sample_rate=config.features.sample_rate,
                            class_names=classes, max_polyphony=min(3, len(classes)))
    scenes = [generate_scene(scene_cfg, seed, i) for i in range(n)]
    n_samples = config.segment_samples
    return [Recording(f"scene{i:04d}", s.audio[:, :n_samples], tuple(s.rows)) for i, s in enumerate(scenes)]


def dcase_recordings(
    root: str | Path, sample_rate: int, *, layout: str = "synth", select: str | Sequence[str] | None = None,
    max_files: int | None = None,
) -> list[Recording]:
    """Recordings and labels of a DCASE-layout folder (glfer_edge.data.layout.list_pairs) at ``sample_rate``."""
    import soundfile as sf

    from glfer_edge.data.dcase import read_metadata_csv
    from glfer_edge.data.layout import get_layout, list_pairs

    lay = get_layout(layout)
    out = []
    for wav, csv in list_pairs(root, select, lay)[:max_files]:
        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
        if sr != sample_rate or audio.shape[1] != 4:
            raise InputError(f"{wav} is {audio.shape[1]}-channel {sr} Hz; the model takes 4-channel FOA at "
                             f"{sample_rate} Hz: resample or convert it first")
        out.append(Recording(wav.stem, np.ascontiguousarray(audio.T), tuple(read_metadata_csv(csv, lay.edition)),
                             lay.edition))
    return out


# -- running artifacts ------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactSummary:
    path: str
    backend: str
    precision: str
    description: str


@dataclass(frozen=True)
class _Outputs:
    summary: ArtifactSummary
    config: SELDConfig
    sed: list[np.ndarray]  # per recording (T, C) at the output frame rate
    doa: list[np.ndarray]  # per recording (T, C, 3)


def _run(path: str | Path, recordings: Sequence[Recording], *, batch: int, device: str) -> _Outputs:
    from glfer_edge.runtime import SELDRuntime
    from glfer_edge.runtime.segments import infer_long

    with SELDRuntime.open(path, device=device) as rt:
        outs = [infer_long(rt, rec.audio, batch_size=batch) for rec in recordings]
        summary = ArtifactSummary(str(path), rt.backend, rt.precision, rt.description)
        return _Outputs(summary, rt.config, [o.sed[0] for o in outs], [o.doa[0] for o in outs])


def score_recordings(
    config: SELDConfig, recordings: Sequence[Recording], sed: Sequence[np.ndarray], doa: Sequence[np.ndarray]
) -> SELDResult:
    """DCASE metrics of per-recording outputs (T, C) and (T, C, 3) against the labels, each recording one file."""
    from glfer_edge.metrics import SELDMetrics
    from glfer_edge.postprocess import outputs_to_rows

    metrics = SELDMetrics(config.model.num_classes, edition=recordings[0].edition)
    for rec, s, d in zip(recordings, sed, doa):
        metrics.update(list(rec.rows), outputs_to_rows(s, d, config))
    return metrics.compute()


def _seld(config: SELDConfig, out: _Outputs, recordings: Sequence[Recording]) -> dict[str, float]:
    """ER20, F20, LE_CD, LR_CD and SELD of one side against the labels, decided as ``config`` decides."""
    return score_recordings(config, recordings, out.sed, out.doa).scores()


# -- the report -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParityReport:
    """B against reference A on ``n_recordings`` recordings (``n_frames`` output frames in all)."""

    a: ArtifactSummary
    b: ArtifactSummary
    tolerances: Tolerances
    stats: ParityStats
    violations: tuple[str, ...]
    data: str
    n_recordings: int
    n_frames: int
    seld_a: dict[str, float] | None = None  # ER20, F20, LE_CD, LR_CD, SELD
    seld_b: dict[str, float] | None = None
    layers: "LayerReport | None" = None

    @property
    def passed(self) -> bool:
        return not self.violations

    @property
    def seld_delta(self) -> float | None:
        return None if self.seld_a is None or self.seld_b is None else self.seld_b["SELD"] - self.seld_a["SELD"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN and infinities become None."""
        d = dataclasses.asdict(self)
        d["passed"], d["seld_delta"] = self.passed, self.seld_delta
        return json_safe(d)


def compare_artifacts(
    a: str | Path,
    b: str | Path,
    recordings: Sequence[Recording],
    *,
    tolerances: Tolerances | None = None,
    data: str = "",
    batch: int = 4,
    device: str = "cpu",
    with_seld: bool = True,
) -> ParityReport:
    """Run A (reference) and B on the same recordings; tolerances default to the set named by B's precision."""
    if not recordings:
        raise InputError("no recordings to compare on; pass --synth N or a --data folder with recordings")
    out_a = _run(a, recordings, batch=batch, device=device)
    out_b = _run(b, recordings, batch=batch, device=device)
    ca, cb = out_a.config, out_b.config
    if ca.segment_samples != cb.segment_samples or ca.model.num_classes != cb.model.num_classes:
        raise InputError(
            f"{a} and {b} are not the same model contract ({ca.segment_seconds:g}-s segments, "
            f"{ca.model.num_classes} classes vs {cb.segment_seconds:g}-s, {cb.model.num_classes}); "
            "export both from the same weights and segment length"
        )
    tol = tolerances or TOLERANCES[out_b.summary.precision]
    stats = compare_outputs(
        np.concatenate(out_a.sed), np.concatenate(out_a.doa), np.concatenate(out_b.sed), np.concatenate(out_b.doa),
        threshold=ca.sed_threshold,
    )
    # Both sides decided at A's threshold and DOA smoothing: the deltas are the networks', not the settings'.
    seld_a = _seld(ca, out_a, recordings) if with_seld else None
    seld_b = _seld(ca, out_b, recordings) if with_seld else None
    delta = None if seld_a is None or seld_b is None else seld_b["SELD"] - seld_a["SELD"]
    frames = sum(len(s) for s in out_a.sed)
    return ParityReport(
        out_a.summary, out_b.summary, tol, stats, tuple(violations(stats, tol, delta)), data,
        len(recordings), frames, seld_a, seld_b,
    )


# -- per-layer divergence (ONNX vs ONNX) --------------------------------------------------------


@dataclass(frozen=True)
class LayerTolerance:
    """A layer output diverges when its relative L2 error exceeds ``rel_max`` or its cosine is below ``cosine_min``."""

    rel_max: float
    cosine_min: float


# Per tensor, not per model output: FP32 differs only by reassociation (~1e-6), FP16 storage rounds
# every tensor (~5e-4 each, growing with depth), INT8 Q/DQ of activations and weights (~1-5 % each).
LAYER_TOLERANCES: dict[str, LayerTolerance] = {
    "fp32": LayerTolerance(rel_max=1e-4, cosine_min=0.9999),
    "fp16": LayerTolerance(rel_max=1e-2, cosine_min=0.999),
    "int8": LayerTolerance(rel_max=0.15, cosine_min=0.99),
}


_PASS_THROUGH = ("QuantizeLinear", "DequantizeLinear", "Cast")


@dataclass(frozen=True)
class LayerStat:
    index: int  # position of the producing node in A's topological order
    node: str
    op_type: str
    tensor: str  # the tensor's name in A
    max_abs: float
    rel_l2: float  # ||b - a|| / ||a||
    cosine: float
    diverged: bool


@dataclass(frozen=True)
class LayerReport:
    tolerance: LayerTolerance
    layers: tuple[LayerStat, ...]  # every compared tensor, topological order
    first: LayerStat | None  # first divergent layer, None when all within tolerance
    unmatched: int  # node outputs of A with no counterpart in B

    def worst(self, n: int = 10) -> list[LayerStat]:
        return sorted(self.layers, key=lambda s: -s.rel_l2)[:n]


def _canonical_names(graph: Any) -> dict[str, str]:
    """Node output -> the FP32 tensor it stands for: ``DequantizeLinear(QuantizeLinear(x))`` and Casts map to x."""
    canon: dict[str, str] = {}
    for node in graph.node:  # topological order: a node's inputs are resolved before it
        src = node.input[0] if node.op_type in _PASS_THROUGH and node.input and node.input[0] in canon else None
        for o in node.output:
            canon[o] = canon[src] if src else o
    return canon


def _counterparts(graph: Any) -> dict[str, str]:
    """FP32 name -> the float tensor of ``graph`` holding it: itself when present, else a DQ or Cast output."""
    quantized = {o for n in graph.node if n.op_type == "QuantizeLinear" for o in n.output}
    out: dict[str, str] = {}
    for tensor, name in _canonical_names(graph).items():
        if tensor not in quantized and (name not in out or tensor == name):
            out[name] = tensor
    return out


def _tensor_bytes(graph: Any) -> dict[str, int]:
    """Bytes per tensor at batch 1, from the shape-inferred value_info (float32)."""
    out = {}
    for v in graph.value_info:
        dims = [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]  # batch 1
        out[v.name] = 4 * int(np.prod(dims)) if dims else 4
    return out


def _run_marked(model: Any, names: list[str], audio: np.ndarray) -> dict[str, np.ndarray]:
    """Values of the intermediate tensors ``names`` (graph optimizations off)."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    present = {o.name for o in m.graph.output}
    m.graph.output.extend([onnx.ValueInfoProto(name=n) for n in names if n not in present])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    session = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: audio})))


def _layer_stat(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    if not np.isfinite(b64).all():
        return float("inf"), float("inf"), float("nan")
    diff = b64 - a64
    na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
    rel = float(np.linalg.norm(diff) / na) if na > 0 else (0.0 if nb == 0 else float("inf"))
    cos = float(a64 @ b64 / (na * nb)) if na > 0 and nb > 0 else float(na == nb)
    return float(np.max(np.abs(diff))) if diff.size else 0.0, rel, cos


def locate_divergence(
    a: str | Path,
    b: str | Path,
    audio: np.ndarray,
    *,
    tolerance: LayerTolerance | None = None,
    precision: str | None = None,
    budget_mb: float = 512.0,
) -> LayerReport:
    """First layer of ONNX ``b`` whose output leaves ``tolerance`` against ONNX ``a`` on ``audio`` (B, 4, N).

    Both graphs run with every shared float tensor marked as an output (in passes that stay within
    ``budget_mb`` of marked tensors each) and onnxruntime's graph optimizations off, so Q/DQ pairs
    and casts run as written (the arithmetic TensorRT is asked for) and no marked tensor is fused
    away. ``tolerance`` defaults to ``LAYER_TOLERANCES[precision]``, ``precision`` to B's metadata.
    """
    import onnx

    from glfer_edge.runtime.artifact import config_from_metadata

    for path in (a, b):
        if Path(path).suffix != ".onnx" or not Path(path).is_file():
            raise InputError(f"per-layer comparison needs two ONNX files; {path} is not one")
    ma, mb = onnx.load(str(a)), onnx.load(str(b))
    if tolerance is None:
        if precision is None:
            meta = {p.key: p.value for p in mb.metadata_props}
            precision = config_from_metadata(meta, b)[1] if meta else "fp32"
        tolerance = LAYER_TOLERANCES[precision]
    in_b = _counterparts(mb.graph)
    order = [(i, n, o) for i, n in enumerate(ma.graph.node) for o in n.output if o]
    shared = [(i, n, o) for i, n, o in order if o in in_b]
    sizes = _tensor_bytes(ma.graph)
    stats: list[LayerStat] = []
    for chunk in _chunks(shared, sizes, budget_mb * 2**20 / len(audio)):
        va = _run_marked(ma, [o for _, _, o in chunk], audio)
        vb = _run_marked(mb, [in_b[o] for _, _, o in chunk], audio)
        for i, node, o in chunk:
            x, y = va[o], vb[in_b[o]]
            if x.shape != y.shape or not (np.issubdtype(x.dtype, np.floating) and np.issubdtype(y.dtype, np.floating)):
                continue
            mx, rel, cos = _layer_stat(x, y)
            bad = not (rel <= tolerance.rel_max and cos >= tolerance.cosine_min)
            stats.append(LayerStat(i, node.name, node.op_type, o, mx, rel, cos, bad))
    first = next((s for s in stats if s.diverged), None)
    return LayerReport(tolerance, tuple(stats), first, len(order) - len(shared))


def _chunks(items: list, sizes: dict[str, int], budget: float) -> list[list]:
    chunks, current, used = [], [], 0
    for item in items:
        size = sizes.get(item[2], 16 * 2**20)
        if current and used + size > budget:
            chunks.append(current)
            current, used = [], 0
        current.append(item)
        used += size
    return chunks + ([current] if current else [])


# -- markdown ---------------------------------------------------------------------------------


_CHECKS = (  # Tolerances field, ParityStats field, label, bound sign
    ("sed_max_abs", "sed_max_abs", "SED max abs error", "≤"),
    ("doa_max_abs", "doa_max_abs", "DOA max abs error", "≤"),
    ("sed_agreement_min", "sed_agreement", "SED decision agreement", "≥"),
    ("doa_angle_mean_max_deg", "doa_angle_mean_deg", "mean DOA angular error (deg)", "≤"),
    ("seld_delta_max", None, "SELD error delta", "≤"),
)


def _check_rows(report: ParityReport) -> list[str]:
    tol, rows = report.tolerances, []
    for tol_field, stat_field, label, sign in _CHECKS:
        bound = getattr(tol, tol_field)
        if bound is None:
            continue
        value = report.seld_delta if stat_field is None else getattr(report.stats, stat_field)
        if value is None:
            rows.append(f"| {label} | – | {sign} {bound:g} | not measured |")
            continue
        single = Tolerances(tol.name, **{tol_field: bound})
        ok = not violations(report.stats, single, report.seld_delta if stat_field is None else None)
        rows.append(f"| {label} | {value:.4g} | {sign} {bound:g} | {'PASS' if ok else '**FAIL**'} |")
    nonfinite = report.stats.nonfinite
    rows.append(f"| NaN/Inf values in B | {nonfinite} | = 0 | {'PASS' if not nonfinite else '**FAIL**'} |")
    return rows


def render_markdown(report: ParityReport, worst: int = 10) -> str:
    """A one-page report: verdict, checks against tolerances, output statistics, SELD metrics, layers."""
    s = report.stats
    verdict = "PASS" if report.passed else "FAIL"
    lines = [
        f"# Parity: {verdict} ({report.tolerances.name} tolerances)", "",
        "| | artifact | backend | precision |", "|---|---|---|---|",
        f"| A (reference) | `{report.a.path}` | {report.a.backend} | {report.a.precision} |",
        f"| B | `{report.b.path}` | {report.b.backend} | {report.b.precision} |", "",
        f"Data: {report.data or 'recordings'}: {report.n_recordings} recordings, {report.n_frames} output frames.", "",
        "## Checks", "", "| check | value | tolerance | status |", "|---|---|---|---|", *_check_rows(report), "",
        "## Output statistics (B against A)", "",
        "| output | max abs | mean abs | cosine |", "|---|---|---|---|",
        f"| sed | {s.sed_max_abs:.3g} | {s.sed_mean_abs:.3g} | {s.sed_cosine:.6f} |",
        f"| doa | {s.doa_max_abs:.3g} | {s.doa_mean_abs:.3g} | {s.doa_cosine:.6f} |", "",
        f"SED decisions agree on {100 * s.sed_agreement:.2f} % of frame-class cells; DOA angular error on the "
        f"{s.active_cells} cells active in A: mean {s.doa_angle_mean_deg:.3g} deg, p99 {s.doa_angle_p99_deg:.3g} deg.",
    ]
    if report.seld_a and report.seld_b:
        lines += ["", "## SELD metrics against the labels", "", "| metric | A | B | B − A |", "|---|---|---|---|"]
        a, b = report.seld_a, report.seld_b
        lines += [f"| {k} | {a[k]:.4f} | {b[k]:.4f} | {b[k] - a[k]:+.4f} |" for k in _SELD_KEYS]
    if report.layers is not None:
        lines += ["", *_layer_lines(report.layers, worst)]
    if report.violations:
        lines += ["", "## Exceeded", "", *[f"- {v}" for v in report.violations]]
    return "\n".join(lines) + "\n"


def _layer_lines(layers: LayerReport, worst: int) -> list[str]:
    t = layers.tolerance
    first = layers.first
    head = (f"First divergent layer: **{first.node}** ({first.op_type}, output `{first.tensor}`, relative error "
            f"{first.rel_l2:.3g}, cosine {first.cosine:.6f}): keep it (or its inputs) at higher precision."
            if first else "No layer leaves the layer tolerance.")
    summary = (f"{len(layers.layers)} shared tensors compared (tolerance: relative L2 error ≤ {t.rel_max:g}, "
               f"cosine ≥ {t.cosine_min:g}); {layers.unmatched} tensors of A have no counterpart in B.")
    lines = ["## Per-layer comparison", "", summary, "", head, "",
             f"Worst {worst} layers by relative error (and the first divergent one):", "",
             "| # | node | op | max abs | rel. L2 | cosine | |", "|---|---|---|---|---|---|---|"]
    rows = layers.worst(worst)
    if first is not None and first not in rows:
        rows = [first, *rows]
    for st in rows:
        mark = "first" if st is first else ("out" if st.diverged else "")
        lines.append(f"| {st.index} | `{st.node}` | {st.op_type} | {st.max_abs:.3g} | {st.rel_l2:.3g} | "
                     f"{st.cosine:.6f} | {mark} |")
    return lines
