"""Triton model repositories for glfer-edge artifacts: the folders and ``config.pbtxt`` files a stock Triton
(the ``nvidia-pytriton`` wheel's, an NGC ``tritonserver`` container, Triton's Jetson release) loads as is.

Forms (model names):

- ``python``: ``glfer`` (stateless, dynamic batching) and ``glfer_stream`` (one stream per Triton sequence,
  sequence batching with START/END/CORRID controls), both Python-backend models whose ``model.py`` runs the
  artifact through :class:`~glfer_edge.runtime.SELDRuntime`, fused frontend and event decoding included;
  the Triton's Python needs ``pip install glfer-edge``. Any artifact (.onnx, .engine/.plan, .safetensors).
- ``onnx``: ``glfer_onnx``, ``platform: "onnxruntime_onnx"``, for Triton's own onnxruntime backend. Its graph
  optimization level is the one our sessions use (:func:`ort_graph_level`).
- ``tensorrt``: ``glfer_trt``, ``platform: "tensorrt_plan"``, for an engine; the config names the TensorRT
  version the engine was built with, which the Triton release must ship (engines do not load elsewhere).

Every form takes ``audio`` (B, 4, segment) float32 and answers ``sed`` and ``doa``, so one client serves all;
a model with the distance head (``ModelConfig.distance``) answers ``distance`` (B, T', C) metres too, and
only such a model declares that output.
Each model carries the artifact's SELDConfig JSON as the parameter ``glfer_edge.config``: clients read the
model's contract (segment, classes, thresholds) from Triton's model config.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from glfer_edge.config import SELDConfig
from glfer_edge.errors import ArtifactError, InputError
from glfer_edge.metadata import DISTANCE_NAME
from glfer_edge.runtime.streaming import hop_frames
from glfer_edge.serve import python_model as pm

__all__ = [
    "ServeOptions", "FORMS", "BATCH_MODEL", "STREAM_MODEL", "ONNX_MODEL", "TRT_MODEL", "write_repository",
    "python_configs", "onnx_config", "tensorrt_config", "parse_config", "ort_graph_level",
]

FORMS = ("python", "onnx", "tensorrt")
BATCH_MODEL, STREAM_MODEL, ONNX_MODEL, TRT_MODEL = "glfer", "glfer_stream", "glfer_onnx", "glfer_trt"
MODEL_PY = '''"""Triton Python-backend model: a glfer-edge artifact (needs `pip install glfer-edge` in Triton's Python)."""

from glfer_edge.serve.python_model import TritonPythonModel  # noqa: F401
'''


@dataclass(frozen=True)
class ServeOptions:
    """The serving knobs of ``glfer-edge serve`` / ``export-triton`` (Triton's own config fields)."""

    max_batch_size: int = 16  # segments per dynamic batch (glfer) / sequences per batch (glfer_stream)
    max_queue_delay_us: int = 2000  # how long Triton holds a request to fill a batch
    instances: int = 1  # model instances (each one a Python stub process with its own runtime)
    kind: str = "cpu"  # instance kind: cpu | gpu
    threads: int | None = None  # onnxruntime intra-op threads per instance (None: cores // instances)
    stream_hop_seconds: float | None = None  # StreamingSELD window hop (None: the segment)
    sequence_idle_s: float = 30.0  # a stream idle this long loses its slot and its state
    max_sequences: int = 64  # concurrent streams (Triton's max_candidate_sequences)
    max_chunk_seconds: float = 60.0  # longest hop one stream request may carry
    graph_optimization: str | None = None  # onnx form: onnxruntime level (None: what OrtBackend picks)

    def check(self) -> "ServeOptions":
        if self.max_batch_size < 1:
            raise InputError(f"--max-batch-size {self.max_batch_size} must be at least 1")
        if self.max_queue_delay_us < 0:
            raise InputError(f"--max-queue-delay-us {self.max_queue_delay_us} must be 0 or more")
        if self.instances < 1:
            raise InputError(f"--instances {self.instances} must be at least 1")
        if self.kind not in ("cpu", "gpu"):
            raise InputError(f"instance kind {self.kind!r}: use cpu or gpu")
        if self.sequence_idle_s <= 0:
            raise InputError(f"--sequence-idle-s {self.sequence_idle_s:g} must be positive")
        if self.max_sequences < 1:
            raise InputError(f"--max-sequences {self.max_sequences} must be at least 1")
        return self

    def instance_threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.instances)


# -- config.pbtxt text ---------------------------------------------------------------------------------
def _dims(dims: list[int]) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def _tensor(name: str, dtype: str, dims: list[int], extra: str = "") -> str:
    return f'  {{ name: "{name}" data_type: {dtype} dims: {_dims(dims)}{extra} }}'


def _params(values: dict[str, str]) -> str:
    def quote(s: str) -> str:
        return s.replace("\\", "\\\\").replace('"', '\\"')

    rows = [f'  {{ key: "{k}" value: {{ string_value: "{quote(v)}" }} }}' for k, v in values.items()]
    return "parameters [\n" + ",\n".join(rows) + "\n]\n"


def _instances(options: ServeOptions, kind: str | None = None) -> str:
    kind = (kind or options.kind).upper()
    return f"instance_group [ {{ kind: KIND_{kind} count: {options.instances} }} ]\n"


def _network_outputs(config: SELDConfig, frames: list[int], dtype=lambda name: "TYPE_FP32") -> list[str]:
    """``sed`` (*frames, C), ``doa`` (*frames, C, 3) and, for a distance model, ``distance`` (*frames, C)."""
    c = config.model.num_classes
    outputs = [_tensor("sed", dtype("sed"), [*frames, c]), _tensor("doa", dtype("doa"), [*frames, c, 3])]
    if config.model.distance:
        outputs.append(_tensor(DISTANCE_NAME, dtype(DISTANCE_NAME), [*frames, c]))
    return outputs


def _io(config: SELDConfig, stream: bool) -> str:
    if stream:
        inputs = [_tensor("audio", "TYPE_FP32", [4, -1], " allow_ragged_batch: true")]
        network = _network_outputs(config, [-1])
        outputs = network[:2] + [
            _tensor("frame_times", "TYPE_FP64", [-1]), _tensor("diffuseness", "TYPE_FP32", [-1]),
            _tensor("level_dbfs", "TYPE_FP32", [-1]), _tensor("frame_index", "TYPE_INT64", [1]),
        ] + network[2:]  # distance last
    else:
        inputs = [_tensor("audio", "TYPE_FP32", [4, config.segment_samples])]
        outputs = _network_outputs(config, [config.output_frames])
    return "input [\n" + ",\n".join(inputs) + "\n]\noutput [\n" + ",\n".join(outputs) + "\n]\n"


def _header(name: str, config: SELDConfig, precision: str, source: str) -> str:
    return (f"# glfer-edge model '{config.name}' ({precision}) from {source}: {config.segment_seconds:g}-s segments "
            f"of 4-channel FOA at {config.features.sample_rate} Hz, {config.model.num_classes} classes\n"
            f'name: "{name}"\n')


def python_configs(
    config: SELDConfig, precision: str, model_file: str, options: ServeOptions, source: str = "",
) -> dict[str, str]:
    """``config.pbtxt`` text of ``glfer`` and ``glfer_stream`` (Python backend)."""
    common = {
        pm.PARAM_MODEL: model_file, pm.PARAM_CONFIG: config.to_json(), pm.PARAM_PRECISION: precision,
        pm.PARAM_THREADS: str(options.instance_threads()),
    }
    batch = (
        _header(BATCH_MODEL, config, precision, source or model_file) + 'backend: "python"\n'
        f"max_batch_size: {options.max_batch_size}\n" + _io(config, stream=False)
        + f"dynamic_batching {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}\n"
        + _instances(options) + _params({pm.PARAM_MODE: pm.MODE_BATCH, **common})
    )
    idle_us = int(round(options.sequence_idle_s * 1e6))
    controls = (
        '    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },\n'
        '    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },\n'
        '    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }\n'
    )
    stream = (
        _header(STREAM_MODEL, config, precision, source or model_file) + 'backend: "python"\n'
        f"max_batch_size: {options.max_sequences}\n" + _io(config, stream=True)
        + "sequence_batching {\n"
        f"  max_sequence_idle_microseconds: {idle_us}\n"
        f"  control_input [\n{controls}  ]\n"
        f"  direct {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}\n"
        "}\n"
        + _instances(options)
        + _params({
            pm.PARAM_MODE: pm.MODE_STREAM, **common,
            pm.PARAM_HOP: "" if options.stream_hop_seconds is None else f"{options.stream_hop_seconds:g}",
            pm.PARAM_MAX_CHUNK: f"{options.max_chunk_seconds:g}",
        })
    )
    return {BATCH_MODEL: batch, STREAM_MODEL: stream}


TRITON_ORT_LEVELS = {"disable": 2, "basic": -1, "extended": 1, "all": None}  # None: no optimization block


def ort_graph_level(precision: str, graph_optimization: str | None = None) -> int | None:
    """The ``optimization { graph { level } }`` of an ONNX config: what glfer-edge's own sessions set.

    :class:`~glfer_edge.runtime.ort.OrtBackend` runs at ``RuntimeOptions.graph_optimization`` when given,
    else 'disable' for FP16 artifacts (onnxruntime 1.32's highest level crashed on our FP16 graph) and
    'all' for the others. Triton's onnxruntime backend reads ``level: 2`` as ORT_DISABLE_ALL, ``-1`` as
    ORT_ENABLE_BASIC, ``1`` as ORT_ENABLE_EXTENDED, and no ``optimization`` block as ORT_ENABLE_ALL.
    """
    from glfer_edge.runtime.options import RuntimeOptions

    level = RuntimeOptions(graph_optimization=graph_optimization).graph_optimization  # refuses unknown names
    level = level or ("disable" if precision == "fp16" else "all")  # OrtBackend.__init__'s rule
    return TRITON_ORT_LEVELS[level]


def onnx_config(config: SELDConfig, precision: str, fixed_batch: int | None, options: ServeOptions,
                source: str = "") -> str:
    """``config.pbtxt`` of ``glfer_onnx`` (Triton's onnxruntime backend)."""
    t, n = config.output_frames, config.segment_samples
    if fixed_batch is None:
        io = _io(config, stream=False)
        batching = (f"max_batch_size: {options.max_batch_size}\n"
                    f"dynamic_batching {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}\n")
    else:  # a --single-batch graph: the batch axis is part of the tensor shape
        io = ("input [\n" + _tensor("audio", "TYPE_FP32", [fixed_batch, 4, n]) + "\n]\noutput [\n"
              + ",\n".join(_network_outputs(config, [fixed_batch, t])) + "\n]\n")
        batching = "max_batch_size: 0\n"
    level = ort_graph_level(precision, options.graph_optimization)
    optimization = ""
    if level is not None:
        optimization = (f"# level {level}: the onnxruntime graph optimization glfer-edge's own sessions use for "
                        f"{precision} artifacts (2 = ORT_DISABLE_ALL; -1 BASIC; 1 EXTENDED)\n"
                        f"optimization {{ graph {{ level: {level} }} }}\n")
    return (_header(ONNX_MODEL, config, precision, source) + 'platform: "onnxruntime_onnx"\n' + batching + io
            + optimization + _instances(options)
            + _params({pm.PARAM_CONFIG: config.to_json(), pm.PARAM_PRECISION: precision}))


def tensorrt_config(config: SELDConfig, precision: str, sidecar: dict, options: ServeOptions,
                    source: str = "") -> str:
    """``config.pbtxt`` of ``glfer_trt`` from an engine's sidecar (TensorRT version, I/O, batch profile)."""
    trt = sidecar.get("tensorrt", {})
    if trt.get("flavour", "tensorrt") != "tensorrt":
        raise InputError(
            f"{source}: a {trt.get('flavour')} engine; Triton's tensorrt_plan backend loads TensorRT engines only: "
            "build one with TensorRT (glfer-edge build), or serve this one with the python form")
    version = str(trt.get("version", "unknown"))
    profile = sidecar.get("profile", {}).get("audio", {})
    lo, hi = (profile.get("min") or [1])[0], (profile.get("max") or [1])[0]
    dtypes = {io["name"]: io["dtype"] for io in sidecar.get("io", [])}
    types = {"float": "TYPE_FP32", "float32": "TYPE_FP32", "half": "TYPE_FP16", "float16": "TYPE_FP16"}
    t, n = config.output_frames, config.segment_samples

    def dtype(name: str) -> str:
        return types.get(dtypes.get(name, "float"), "TYPE_FP32")

    if lo == hi == 1 and hi == 1 and profile.get("min") == profile.get("max"):
        batching, lead = "max_batch_size: 0\n", [1]
    else:
        batching = (f"max_batch_size: {min(options.max_batch_size, hi)}\n"
                    f"dynamic_batching {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}\n")
        lead = []
    io = ("input [\n" + _tensor("audio", dtype("audio"), [*lead, 4, n]) + "\n]\noutput [\n"
          + ",\n".join(_network_outputs(config, [*lead, t], dtype)) + "\n]\n")
    return (_header(TRT_MODEL, config, precision, source)
            + f"# built with TensorRT {version}: use the Triton release that ships TensorRT {version} "
            "(an engine loads only in the TensorRT version and GPU family it was built for)\n"
            + 'platform: "tensorrt_plan"\n' + batching + io + _instances(options, "gpu")
            + _params({pm.PARAM_CONFIG: config.to_json(), pm.PARAM_PRECISION: precision,
                       "glfer_edge.tensorrt_version": version}))


def parse_config(text: str):
    """The ``ModelConfig`` protobuf of a ``config.pbtxt`` (Triton's schema, shipped with tritonclient)."""
    from tritonclient.grpc import model_config_pb2  # first: without the serve extra, tritonclient is what's missing
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_pb2.ModelConfig())


# -- the repository on disk ----------------------------------------------------------------------------
def _artifact(path: Path) -> tuple[SELDConfig, str, str]:
    from glfer_edge.runtime.artifact import artifact_kind, artifact_metadata, config_from_metadata

    kind = artifact_kind(path)
    config, precision = config_from_metadata(artifact_metadata(path), path)
    return config, precision, kind


def _copy_artifact(src: Path, dest_dir: Path, name: str) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / name
    shutil.copy2(src, dest)
    from glfer_edge.runtime.trt_compat import sidecar_path

    if src.suffix.lower() in (".engine", ".plan") and sidecar_path(src).is_file():
        shutil.copy2(sidecar_path(src), sidecar_path(dest))
    return dest


def write_repository(
    out: str | Path, model: str | Path, *, engine: str | Path | None = None, forms: tuple[str, ...] | None = None,
    options: ServeOptions | None = None, copy: bool = True,
) -> dict[str, Path]:
    """Write a Triton model repository for ``model`` into ``out``; returns model name -> its folder.

    ``forms`` None: every form the inputs allow (python always; onnx for an .onnx model; tensorrt for an
    engine, given as ``model`` or ``engine``). ``copy`` False (``glfer-edge serve``): the Python-backend
    configs name the artifact by its absolute path instead of copying it into the repository.
    """
    options = (options or ServeOptions()).check()
    out, model = Path(out), Path(model)
    config, precision, kind = _artifact(model)
    hop_frames(config, options.stream_hop_seconds, "--stream-hop")  # refused here, not when a sequence starts
    engine_path = Path(engine) if engine is not None else (model if kind == "tensorrt" else None)
    if engine_path is not None and engine_path != model:
        engine_config, _, engine_kind = _artifact(engine_path)
        if engine_kind != "tensorrt":
            raise InputError(f"--engine {engine_path} is not an engine (.engine/.plan); pass the built engine")
        if engine_config.to_json() != config.to_json():
            raise ArtifactError(f"--engine {engine_path} was built from another model than {model}; "
                                "pass the engine built from this model")
    available = ["python"] + (["onnx"] if kind == "onnxruntime" else []) + (["tensorrt"] if engine_path else [])
    forms = tuple(available) if forms is None else tuple(forms)
    for form in forms:
        if form not in available:
            need = {"onnx": "an .onnx --model", "tensorrt": "an engine (--engine or an .engine/.plan --model)"}
            raise InputError(f"form {form!r} needs {need.get(form, 'a known form')}; forms here: {', '.join(available)}")
    written: dict[str, Path] = {}
    suffix = "".join(model.suffixes[-1:]).lower()
    for text in python_configs(config, precision, f"model{suffix}", options).values():
        parse_config(text)  # Triton's schema, before anything is written
    if "python" in forms:
        for name in (BATCH_MODEL, STREAM_MODEL):
            folder = out / name
            if copy:
                _copy_artifact(model, folder / "1", f"model{suffix}")
                model_file = f"model{suffix}"
            else:
                (folder / "1").mkdir(parents=True, exist_ok=True)
                model_file = str(model.resolve())
            (folder / "1" / "model.py").write_text(MODEL_PY)
            text = python_configs(config, precision, model_file, options, source=model.name)[name]
            (folder / "config.pbtxt").write_text(text)
            written[name] = folder
    if "onnx" in forms:
        text = onnx_config(config, precision, _onnx_fixed_batch(model), options, source=model.name)
        written[ONNX_MODEL] = _write_backend_model(out / ONNX_MODEL, model, "model.onnx", text)
    if "tensorrt" in forms and engine_path is not None:
        from glfer_edge.runtime.trt_compat import read_sidecar

        text = tensorrt_config(config, precision, read_sidecar(engine_path), options, source=engine_path.name)
        written[TRT_MODEL] = _write_backend_model(out / TRT_MODEL, engine_path, "model.plan", text)
    return written


def _write_backend_model(folder: Path, artifact: Path, filename: str, config_text: str) -> Path:
    """One model folder of a stock Triton backend: version 1 holds the artifact, beside its checked config."""
    parse_config(config_text)
    _copy_artifact(artifact, folder / "1", filename)
    (folder / "config.pbtxt").write_text(config_text)
    return folder


def _onnx_fixed_batch(path: Path) -> int | None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    dim = session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) and dim > 0 else None
