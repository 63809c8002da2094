"""The Triton Python-backend model: a glfer-edge artifact through :class:`~glfer_edge.runtime.SELDRuntime`.

A repository's ``model.py`` is one import of :class:`TritonPythonModel` (so any Triton whose Python has
glfer-edge installed serves it: the ``nvidia-pytriton`` wheel's, an NGC container's, Triton's Jetson
release). Its ``config.pbtxt`` parameters choose the mode:

- ``glfer_edge.mode: batch`` (model ``glfer``): input ``audio`` (B, 4, segment) float32, outputs ``sed``
  (B, T', C), ``doa`` (B, T', C, 3) and, for models with ``ModelConfig.distance``, ``distance`` (B, T', C)
  in metres; the requests of one dynamic batch run as one ``SELDRuntime.infer``.
- ``glfer_edge.mode: stream`` (model ``glfer_stream``): one :class:`~glfer_edge.runtime.StreamingSELD`
  per Triton sequence (correlation ID). Each request carries a hop of audio (1, 4, n), n >= 1 (0 only with
  the END flag); the response holds the frames that hop completed: ``sed``, ``doa`` (``distance`` too for
  models with the distance head), ``frame_times``
  (seconds from the sequence's start), the noise gate's ``diffuseness`` and ``level_dbfs``, and
  ``frame_index`` (the first frame's index in the sequence). END flushes the stream. A stream idle for
  longer than the sequence batcher's ``max_sequence_idle_microseconds`` is dropped here too, when Triton
  frees its slot.

An output is sent only when the model config declares it (``glfer_edge.serve.repository`` declares
``distance`` exactly when the artifact has the distance head).

Bad requests get a Triton error with one line naming the problem and the fix; the other requests of the
same batch are answered normally.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TritonPythonModel", "MODE_BATCH", "MODE_STREAM", "PARAM_MODE", "PARAM_MODEL", "PARAM_HOP",
           "PARAM_THREADS", "PARAM_CONFIG", "PARAM_PRECISION", "PARAM_MAX_CHUNK", "declared_outputs"]

MODE_BATCH, MODE_STREAM = "batch", "stream"
PARAM_MODE = "glfer_edge.mode"
PARAM_MODEL = "glfer_edge.model_file"  # relative to the version folder, or absolute
PARAM_HOP = "glfer_edge.hop_seconds"  # stream window hop ('' = the segment)
PARAM_THREADS = "glfer_edge.threads"  # onnxruntime intra-op threads per instance ('' = its default)
PARAM_CONFIG = "glfer_edge.config"  # the artifact's SELDConfig JSON (clients read it from the model config)
PARAM_PRECISION = "glfer_edge.precision"
PARAM_MAX_CHUNK = "glfer_edge.max_chunk_seconds"  # largest stream hop accepted


def model_parameters(model_config: dict[str, Any]) -> dict[str, str]:
    """The ``parameters`` of a Triton model config (as JSON) as name -> string value."""
    return {k: v.get("string_value", "") for k, v in model_config.get("parameters", {}).items()}


def _control(request: Any, pb_utils: Any, name: str) -> int:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return 0 if tensor is None else int(tensor.as_numpy().reshape(-1)[0])


def declared_outputs(model_config: dict[str, Any]) -> tuple[str, ...]:
    """The output names a Triton model config (as JSON) declares, in order."""
    return tuple(o.get("name", "") for o in model_config.get("output", []))


class WindowBatcher:
    """The runtime the streams of one model instance share: the windows that the hops of one Triton batch
    complete (one per sequence, from concurrent ``StreamingSELD.push`` calls) run as one ``infer`` batch.

    :meth:`run_all` runs the pushes in threads; each ``infer`` call waits until every push still running
    has either asked for inference or finished, then one call serves them all. Outputs are those of
    separate calls (the backend is batch-independent to float rounding: the stream tests hold it to 1e-4).
    """

    def __init__(self, runtime: Any, max_batch: int | None) -> None:
        import threading
        from concurrent.futures import ThreadPoolExecutor

        self._rt = runtime
        self.config = runtime.config
        # _maybe_run pads to the model's minimum itself: a stream's one window must not be padded before
        # it reaches the shared batch
        self.batch_range = (1, runtime.batch_range[1])
        self._max = max_batch
        self._cv = threading.Condition()
        self._active = 0
        self._pending: list[dict] = []
        self._pool = ThreadPoolExecutor(max_workers=max(1, max_batch or 1), thread_name_prefix="glfer-stream")
        self.calls = 0  # batched inference calls (logged at finalize)
        self.windows = 0  # windows they held

    def infer(self, audio: np.ndarray) -> Any:  # runtime.base.Outputs of this window
        slot: dict = {"audio": audio, "out": None}
        with self._cv:
            self._pending.append(slot)
            self._maybe_run()
            while slot["out"] is None:
                self._cv.wait()
        if isinstance(slot["out"], BaseException):
            raise slot["out"]
        return slot["out"]

    def _maybe_run(self) -> None:  # with the lock held
        if not self._pending or len(self._pending) < self._active:
            return
        slots, self._pending = self._pending, []
        try:
            from glfer_edge.runtime.segments import infer_batches

            batch = np.concatenate([s["audio"] for s in slots]) if len(slots) > 1 else slots[0]["audio"]
            lo, hi = self._rt.batch_range
            step = hi or len(batch)
            out = infer_batches(self._rt, batch, step, lo)  # what infer_views reads: sed, doa, distance
            self.calls += -(-len(batch) // step)
            self.windows += len(batch)
            pos = 0
            for s in slots:
                n = len(s["audio"])
                s["out"] = out.rows(pos, pos + n)
                pos += n
        except BaseException as exc:  # every waiting push gets the failure
            for s in slots:
                s["out"] = exc
        self._cv.notify_all()

    def run_all(self, calls: list[Any]) -> list[Any]:
        """Run ``calls`` (no-argument functions) concurrently; their results or exceptions, in order."""
        if len(calls) == 1:
            with self._cv:
                self._active = 1
            try:
                return [self._guard(calls[0])]
            finally:
                with self._cv:
                    self._active = 0
        with self._cv:
            self._active = len(calls)
        return list(self._pool.map(self._guard, calls))

    def _guard(self, call: Any) -> Any:
        try:
            return call()
        except BaseException as exc:
            return exc
        finally:
            with self._cv:
                self._active -= 1
                self._maybe_run()

    def close(self) -> None:
        self._pool.shutdown(wait=False)


class TritonPythonModel:
    """Triton's Python-backend interface: ``initialize``, ``execute``, ``finalize``."""

    def initialize(self, args: dict[str, str]) -> None:
        from glfer_edge.runtime import SELDRuntime

        self.model_config = json.loads(args["model_config"])
        params = model_parameters(self.model_config)
        self.name = args.get("model_name", "glfer")
        self.mode = params.get(PARAM_MODE, MODE_BATCH)
        path = Path(params.get(PARAM_MODEL, "model.onnx"))
        if not path.is_absolute():
            path = Path(args["model_repository"]) / args["model_version"] / path
        threads = int(params[PARAM_THREADS]) if params.get(PARAM_THREADS) else None
        kind = args.get("model_instance_kind", "CPU")
        device = f"cuda:{args.get('model_instance_device_id', '0')}" if kind == "GPU" else "cpu"
        self.runtime = SELDRuntime.open(path, device=device, threads=threads)
        self.config = self.runtime.config
        self.max_batch = int(self.model_config.get("max_batch_size", 0)) or None
        # distance goes out when the model has the head and the config declares it (repository.py does both)
        self.distance = bool(self.config.model.distance) and "distance" in declared_outputs(self.model_config)
        self.streams: dict[int, Any] = {}
        self.last_seen: dict[int, float] = {}
        seq = self.model_config.get("sequence_batching", {})
        idle_us = int(seq.get("max_sequence_idle_microseconds", 0) or 1_000_000)
        self.idle_s = idle_us / 1e6
        self.hop_seconds = float(params[PARAM_HOP]) if params.get(PARAM_HOP) else None
        max_chunk = float(params.get(PARAM_MAX_CHUNK) or 60.0)
        self.max_chunk = int(round(max_chunk * self.config.features.sample_rate))
        self.batcher = WindowBatcher(self.runtime, self.max_batch) if self.mode == MODE_STREAM else None
        self._log(f"{self.name}: {self.mode} mode, {self.runtime.description}, pid {os.getpid()}")

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _pb() -> Any:
        import triton_python_backend_utils as pb_utils

        return pb_utils

    def _log(self, message: str) -> None:
        try:
            self._pb().Logger.log_info(message)
        except Exception:  # outside Triton (tests), or an old backend without Logger
            print(message, flush=True)

    def _error(self, message: str) -> Any:
        pb_utils = self._pb()
        one_line = " ".join(str(message).split())
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(one_line))

    def _response(self, **outputs: np.ndarray) -> Any:
        pb_utils = self._pb()
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v) for k, v in outputs.items()])

    # -- execute ---------------------------------------------------------------------------------
    def execute(self, requests: list[Any]) -> list[Any]:
        if self.mode == MODE_STREAM:
            return self._execute_stream(requests)
        return self._execute_batch(requests)

    def _execute_batch(self, requests: list[Any]) -> list[Any]:
        from glfer_edge.errors import GlferError
        from glfer_edge.runtime.base import validate_audio

        pb_utils = self._pb()
        responses: list[Any] = [None] * len(requests)
        valid: list[tuple[int, np.ndarray]] = []
        for i, request in enumerate(requests):
            tensor = pb_utils.get_input_tensor_by_name(request, "audio")
            try:
                if tensor is None:
                    raise ValueError("request has no 'audio' input; send (B, 4, N) float32 FOA audio as 'audio'")
                audio = validate_audio(tensor.as_numpy(), self.config, (1, None))
            except (GlferError, ValueError) as exc:
                responses[i] = self._error(str(exc))
                continue
            valid.append((i, audio))
        if valid:
            batch = np.concatenate([a for _, a in valid]) if len(valid) > 1 else valid[0][1]
            try:
                sed, doa, dist = self._run(batch)
            except Exception as exc:  # a backend failure answers every request of the batch with it
                for i, _ in valid:
                    responses[i] = self._error(f"inference failed: {exc}")
                return responses
            pos = 0
            for i, audio in valid:
                n = audio.shape[0]
                extra = {"distance": dist[pos : pos + n]} if self.distance and dist is not None else {}
                responses[i] = self._response(sed=sed[pos : pos + n], doa=doa[pos : pos + n], **extra)
                pos += n
        return responses

    def _run(self, batch: np.ndarray) -> Any:
        """sed, doa, distance (None without the distance head) of a batch, in the runtime's batch range."""
        from glfer_edge.runtime.segments import infer_batches

        lo, hi = self.runtime.batch_range
        return infer_batches(self.runtime, batch, hi or len(batch), lo)

    def _execute_stream(self, requests: list[Any]) -> list[Any]:
        from glfer_edge.errors import GlferError

        pb_utils = self._pb()
        now = time.monotonic()
        controls = []
        for request in requests:
            corrid = _control(request, pb_utils, "CORRID")
            controls.append((corrid, bool(_control(request, pb_utils, "START")), bool(_control(request, pb_utils, "END"))))
        # One request per sequence in a batch (Triton's sequence batcher): the pushes run concurrently and
        # their windows share inference calls; requests of one sequence (never in one batch) would run in order.
        corrids = [c for c, _, _ in controls]
        calls = [lambda r=r, c=c: self._stream_hop(r, *c) for r, c in zip(requests, controls)]
        if len(set(corrids)) == len(corrids):
            results = self.batcher.run_all(calls)
        else:
            results = [self.batcher.run_all([call])[0] for call in calls]
        responses = []
        for (corrid, _, end), result in zip(controls, results):
            if isinstance(result, (GlferError, ValueError)):
                result = self._error(f"sequence {corrid}: {result}")
                if end:
                    self._drop(corrid)
            elif isinstance(result, BaseException):
                result = self._error(f"sequence {corrid}: inference failed: {result}")
            responses.append(result)
            if corrid in self.streams:
                self.last_seen[corrid] = now
        self._evict(now)
        return responses

    def _stream_hop(self, request: Any, corrid: int, start: bool, end: bool) -> Any:
        from glfer_edge.runtime.streaming import StreamingSELD

        pb_utils = self._pb()
        tensor = pb_utils.get_input_tensor_by_name(request, "audio")
        if tensor is None:
            raise ValueError("request has no 'audio' input; send a (1, 4, n) float32 hop as 'audio'")
        audio = tensor.as_numpy()
        if audio.ndim != 3 or audio.shape[0] != 1:
            raise ValueError(f"hop has shape {audio.shape}; send one (1, 4, n) float32 hop per request")
        chunk = audio[0]
        if chunk.shape[-1] == 0 and not end:
            raise ValueError("empty hop (0 samples); send at least one sample, or 0 samples only with the END flag")
        if chunk.shape[-1] > self.max_chunk:
            raise ValueError(
                f"hop of {chunk.shape[-1]} samples exceeds the {self.max_chunk}-sample limit; send shorter hops")
        if start:
            if corrid in self.streams:
                self._log(f"{self.name}: sequence {corrid} restarted; its previous state is dropped")
            # batch_size 1: each window is one row of the batch the WindowBatcher shares across streams
            self.streams[corrid] = StreamingSELD(self.batcher, self.hop_seconds, batch_size=1)
        stream = self.streams.get(corrid)
        if stream is None:
            raise ValueError("no stream state on this server (it restarted or the sequence idled out); "
                             "start the sequence again with the START flag")
        first = stream.frames_emitted
        parts = [stream.push(chunk)] if chunk.shape[-1] else []
        if end:
            parts.append(stream.flush())
            self._drop(corrid)
        return self._response(**self._stream_outputs(parts, first))

    def _stream_outputs(self, parts: list[Any], first: int) -> dict[str, np.ndarray]:
        c = self.config.model.num_classes
        if not parts:
            sed, doa, times = np.zeros((0, c), np.float32), np.zeros((0, c, 3), np.float32), np.zeros(0)
            psi = level = np.zeros(0, np.float32)
            dist = np.zeros((0, c), np.float32)
        else:
            sed = np.concatenate([p.sed[0] for p in parts])
            doa = np.concatenate([p.doa[0] for p in parts])
            times = np.concatenate([p.frame_times for p in parts])
            psi = np.concatenate([self._gate(p, "diffuseness") for p in parts])
            level = np.concatenate([self._gate(p, "level_dbfs") for p in parts])
            dist = np.concatenate([self._distance(p) for p in parts]) if self.distance else None
        outputs = {
            "sed": sed[None].astype(np.float32), "doa": doa[None].astype(np.float32),
            "frame_times": times[None].astype(np.float64), "diffuseness": psi[None].astype(np.float32),
            "level_dbfs": level[None].astype(np.float32), "frame_index": np.array([[first]], np.int64),
        }
        if self.distance:
            outputs["distance"] = dist[None].astype(np.float32)
        return outputs

    @staticmethod
    def _distance(part: Any) -> np.ndarray:
        if part.distance is None:  # cannot happen for a distance model's StreamingSELD; never send a short tensor
            raise RuntimeError("the stream returned no distance for a model with the distance head")
        return np.asarray(part.distance[0], np.float32)

    @staticmethod
    def _gate(part: Any, name: str) -> np.ndarray:
        value = getattr(part, name, None)
        return np.full(part.sed.shape[1], np.nan, np.float32) if value is None else np.asarray(value[0], np.float32)

    def _drop(self, corrid: int) -> None:
        self.streams.pop(corrid, None)
        self.last_seen.pop(corrid, None)

    def _evict(self, now: float) -> None:
        """Drop the state of sequences idle longer than the batcher's idle limit (Triton freed their slot)."""
        for corrid, seen in list(self.last_seen.items()):
            if now - seen > self.idle_s:
                self._log(f"{self.name}: sequence {corrid} idle for {now - seen:.1f} s, its stream state is freed")
                self._drop(corrid)

    def finalize(self) -> None:
        self.streams.clear()
        if self.batcher is not None:
            self._log(f"{self.name}: {self.batcher.windows} windows in {self.batcher.calls} inference calls")
            self.batcher.close()
        self.runtime.close()
