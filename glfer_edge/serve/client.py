"""A client of a glfer-edge Triton server (``tritonclient``, HTTP or gRPC).

::

    from glfer_edge.serve.client import SELDClient

    with SELDClient("grpc://127.0.0.1:8001") as client:       # or http://host:8000 (the default scheme)
        out = client.infer(segments)                           # (4, N) or (B, 4, N) -> SELDOutput, like SELDRuntime
        track = client.infer_long(recording)                   # a whole (4, N) recording, as infer_long
        with client.stream() as stream:                        # one Triton sequence (glfer_stream)
            for hop in sensor:                                 # any chunk size (4, n)
                out = stream.push(hop)                         # the frames this hop completed
            last = stream.close()                              # END: the frames before the stream's end

The client reads the model's contract (segment, classes, thresholds) from the served model's config, so a
client is a drop-in :class:`~glfer_edge.runtime.SELDRuntime` for :func:`~glfer_edge.runtime.segments.infer_long`
(``glfer-edge run FILE --server URL`` is exactly that) and its streams give the frames of an in-process
:class:`~glfer_edge.runtime.StreamingSELD`.

A stream survives a server restart: when the server is unreachable or has lost the sequence, the session
reports the gap once (``on_gap`` and ``gaps``), waits for the server to be ready again (up to
``reconnect_timeout_s``), starts a new sequence and replays the audio of the window the server had not
finished (at most one segment), then drops the frames it had already returned. No frame is lost or
repeated, and every frame has the values of an uninterrupted stream.

A model with the distance head (``ModelConfig.distance``) served with its ``distance`` output (every
repository glfer-edge writes for it) fills :attr:`SELDOutput.distance` (metres) in ``infer``, ``infer_long``
and streams, as in-process. The client asks for ``distance`` only when the served model's config declares
it; a distance model served without it is read as a model without the head (``client.config.model.distance``
False, a warning logged), so its outputs and events are those of sed and doa alone.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from glfer_edge.config import SELDConfig
from glfer_edge.errors import GlferError, InputError
from glfer_edge.gate import frame_samples
from glfer_edge.metadata import DISTANCE_NAME
from glfer_edge.runtime.base import FOA_CHANNELS, SELDOutput, as_float32, output_frame_times, validate_audio
from glfer_edge.runtime.streaming import hop_frames
from glfer_edge.serve.python_model import PARAM_CONFIG, PARAM_HOP, PARAM_PRECISION, declared_outputs, model_parameters

__all__ = ["SELDClient", "StreamSession", "ServerError", "Gap", "parse_url"]

LOG = logging.getLogger("glfer_edge.serve")


class ServerError(GlferError):
    """Triton answered with an error status, or is unreachable: one line from the server or the transport."""


@dataclass
class Gap:
    """One outage a stream session lived through."""

    reason: str  # the first error of the outage, one line
    started: float  # time.monotonic() when it was noticed
    seconds: float = 0.0  # until the stream was resumed
    replayed_samples: int = 0


def parse_url(url: str) -> tuple[str, str]:
    """('http' | 'grpc', 'host:port') of ``http://host:port``, ``grpc://host:port`` or ``host:port`` (HTTP)."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "http", url
    scheme = scheme.lower()
    if scheme == "https":
        raise InputError(f"--server {url}: this client speaks plain HTTP or gRPC; use http://host:port or grpc://host:port")
    if scheme not in ("http", "grpc"):
        raise InputError(f"--server {url}: unknown scheme {scheme!r}; use http://host:8000 or grpc://host:8001")
    rest = rest.rstrip("/")
    if not rest or "/" in rest:
        raise InputError(f"--server {url}: expected {scheme}://host:port")
    if ":" not in rest:
        rest += ":8001" if scheme == "grpc" else ":8000"
    return scheme, rest


def _one_line(exc: BaseException) -> str:
    message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
    return " ".join(str(message or type(exc).__name__).split())[:400]


def _is_transport_error(exc: BaseException) -> bool:
    """The server is unreachable or went away (as opposed to an answer with an error status)."""
    if isinstance(exc, (OSError, ConnectionError, TimeoutError)):
        return True
    status = str(getattr(exc, "status", lambda: "")() or "")
    text = _one_line(exc).lower()
    if status in ("StatusCode.UNAVAILABLE", "StatusCode.CANCELLED", "StatusCode.DEADLINE_EXCEEDED"):
        return True
    return any(s in text for s in ("connection refused", "failed to connect", "connection reset", "broken pipe",
                                   "socket closed", "connect failed", "unavailable", "eof occurred",
                                   "connection aborted", "remote end closed"))


def _is_lost_sequence(exc: BaseException) -> bool:
    """The server has no state for the sequence (restarted between two hops, or the sequence idled out)."""
    text = _one_line(exc).lower()
    return "no stream state" in text or ("sequence" in text and "start" in text and "flag" in text)


class SELDClient:
    """A glfer-edge model on a Triton server; quacks like :class:`~glfer_edge.runtime.SELDRuntime`."""

    def __init__(
        self, url: str = "http://127.0.0.1:8000", *, model: str = "glfer", stream_model: str = "glfer_stream",
        timeout_s: float = 60.0,
    ) -> None:
        self.url = url
        self.protocol, self.address = parse_url(url)
        self.model = model
        self.stream_model = stream_model
        self.timeout_s = float(timeout_s)
        self._client = self._connect()
        model_config = self._model_config(model)  # one round trip for the parameters and the batch size
        meta = model_parameters(model_config)
        if PARAM_CONFIG not in meta:
            raise ServerError(f"model {model!r} on {url} carries no {PARAM_CONFIG} parameter; serve it with "
                              "glfer-edge serve or a repository from glfer-edge export-triton")
        config = SELDConfig.from_json(meta[PARAM_CONFIG])
        self.distance = bool(config.model.distance) and DISTANCE_NAME in declared_outputs(model_config)
        if config.model.distance and not self.distance:
            LOG.warning(f"model {model!r} on {url} has the distance head but its config declares no "
                        f"{DISTANCE_NAME!r} output; serving sed and doa only (rewrite the repository with "
                        "glfer-edge export-triton to get distance)")
            config = config.replace(model=dataclasses.replace(config.model, distance=False))
        self.config = config
        self.precision = meta.get(PARAM_PRECISION, "fp32")
        self.max_batch_size = int(model_config.get("max_batch_size", 0) or 0)
        self._frame_times = output_frame_times(self.config)
        self._outputs = ("sed", "doa", DISTANCE_NAME) if self.distance else ("sed", "doa")

    # -- tritonclient plumbing -------------------------------------------------------------------------
    @property
    def _mod(self) -> Any:
        if self.protocol == "grpc":
            import tritonclient.grpc as mod
        else:
            import tritonclient.http as mod
        return mod

    def _connect(self) -> Any:
        mod = self._mod  # a missing tritonclient is the CLI's one-line pip hint, not a connection error
        try:
            if self.protocol == "grpc":
                return mod.InferenceServerClient(self.address)
            return mod.InferenceServerClient(self.address, connection_timeout=self.timeout_s,
                                             network_timeout=self.timeout_s)
        except Exception as exc:
            raise ServerError(f"cannot reach Triton at {self.url}: {_one_line(exc)}") from None

    def _model_config(self, model: str) -> dict[str, Any]:
        try:
            if self.protocol == "grpc":
                return self._client.get_model_config(model, as_json=True)["config"]
            return self._client.get_model_config(model)
        except Exception as exc:
            if _is_transport_error(exc):
                raise ServerError(f"cannot reach Triton at {self.url} ({_one_line(exc)}); is glfer-edge serve "
                                  "running there?") from None
            raise ServerError(f"model {model!r} on {self.url}: {_one_line(exc)}") from None

    def _call(self, client: Any, model: str, audio: np.ndarray, outputs: tuple[str, ...], **kwargs: Any) -> dict:
        mod = self._mod
        tensor = mod.InferInput("audio", list(audio.shape), "FP32")
        tensor.set_data_from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        if self.protocol == "grpc":
            requested = [mod.InferRequestedOutput(n) for n in outputs]
            result = client.infer(model, [tensor], outputs=requested, client_timeout=self.timeout_s, **kwargs)
        else:
            requested = [mod.InferRequestedOutput(n, binary_data=True) for n in outputs]
            result = client.infer(model, [tensor], outputs=requested, **kwargs)
        return {n: result.as_numpy(n) for n in outputs}

    # -- the SELDRuntime contract ----------------------------------------------------------------------
    @property
    def batch_range(self) -> tuple[int, int | None]:
        return (1, self.max_batch_size or None)

    @property
    def backend(self) -> str:
        return "triton"

    @property
    def description(self) -> str:
        return f"{self.model} on Triton at {self.url} ({self.config.name}, {self.precision})"

    def infer(self, audio: np.ndarray) -> SELDOutput:
        """One segment batch, float32 (4, N) or (B, 4, N); checked here first, like SELDRuntime.infer."""
        batch = validate_audio(audio, self.config, self.batch_range)
        try:
            out = self._call(self._client, self.model, batch, self._outputs)
        except Exception as exc:
            raise ServerError(f"{self.model} on {self.url}: {_one_line(exc)}") from None
        return SELDOutput(out["sed"], out["doa"], self._frame_times.copy(), self.config.class_names, self.config,
                          distance=out.get(DISTANCE_NAME))

    def infer_long(self, audio: np.ndarray, *, batch_size: int | None = None, tta: int = 1) -> SELDOutput:
        """A whole (4, N) recording, exactly as :func:`glfer_edge.runtime.segments.infer_long` in-process."""
        from glfer_edge.runtime.segments import infer_long

        return infer_long(self, audio, batch_size=batch_size, tta=tta)

    def stream(self, *, start_time: float = 0.0, on_gap: Callable[[str], None] | None = None,
               reconnect_timeout_s: float = 60.0) -> "StreamSession":
        """A new stream (one Triton sequence of ``glfer_stream``); use it as a context manager."""
        return StreamSession(self, start_time=start_time, on_gap=on_gap, reconnect_timeout_s=reconnect_timeout_s)

    def is_ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready() and self._client.is_model_ready(self.model))
        except Exception:
            return False

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:
            pass

    def __enter__(self) -> "SELDClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_IDS = random.SystemRandom()


class StreamSession:
    """One sensor's stream on ``glfer_stream``: ``push`` hops, ``close`` at the end (or leave the ``with``)."""

    def __init__(self, client: SELDClient, *, start_time: float = 0.0,
                 on_gap: Callable[[str], None] | None = None, reconnect_timeout_s: float = 60.0) -> None:
        self.client = client
        cfg = client.config
        self.config = cfg
        self.start_time = float(start_time)
        model_config = client._model_config(client.stream_model)
        params = model_parameters(model_config)
        # distance when the client reads the model as a distance model and the stream model declares it
        self.distance = client.distance and DISTANCE_NAME in declared_outputs(model_config)
        if client.distance and not self.distance:  # read as a model without the head, as SELDClient does
            LOG.warning(f"{client.stream_model} on {client.url} declares no {DISTANCE_NAME!r} output; this stream "
                        "gives sed and doa only (serve both models from one glfer-edge export-triton repository)")
            cfg = self.config = cfg.replace(model=dataclasses.replace(cfg.model, distance=False))
        self._outputs = self._OUTPUTS + ((DISTANCE_NAME,) if self.distance else ())
        self.hop_frames = hop_frames(cfg, float(params[PARAM_HOP]) if params.get(PARAM_HOP) else None)
        self.frame_samples = frame_samples(cfg)
        self.hop_samples = self.hop_frames * self.frame_samples
        self.on_gap = on_gap
        self.reconnect_timeout_s = float(reconnect_timeout_s)
        self.gaps: list[Gap] = []
        self.sequence_id = _IDS.randrange(1, 2**62)
        self.hops_sent = 0  # pushes answered (each push is one hop, whatever its length)
        self._conn: Any = None  # one connection per stream, opened by the thread that uses it
        self._conn_thread = 0
        self._started = False
        self._closed = False
        self._frames = 0  # frames returned so far (absolute count)
        self._base_frame = 0  # absolute index of the current server sequence's frame 0
        self._buffer = np.zeros((FOA_CHANNELS, 0), np.float32)  # audio from sample _buffer_start on
        self._buffer_start = 0
        self._lock = threading.Lock()

    @property
    def frames_received(self) -> int:
        return self._frames

    def push(self, chunk: np.ndarray) -> SELDOutput:
        """Send a float32 (4, n) hop; returns the frames it completed (possibly none)."""
        chunk = as_float32(chunk, "stream chunk")
        if chunk.ndim != 2 or chunk.shape[0] != FOA_CHANNELS:
            raise InputError(f"stream chunk has shape {chunk.shape}; expected (4, n) FOA samples (W, Y, Z, X)")
        if chunk.shape[1] == 0:
            return self._output([])
        return self._send(chunk, end=False)

    def close(self) -> SELDOutput:
        """End the stream (Triton END flag): the server flushes the last, zero-padded window."""
        if self._closed:
            return self._output([])
        try:
            if not self._started:  # nothing was ever sent: no sequence to end
                return self._output([])
            return self._send(np.zeros((FOA_CHANNELS, 0), np.float32), end=True)
        finally:
            self._closed = True
            self._disconnect()

    def __enter__(self) -> "StreamSession":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:  # do not flush after a failure; the server frees the slot after its idle timeout
            self._closed = True
            self._disconnect()

    # -- internals ---------------------------------------------------------------------------------------
    _OUTPUTS = ("sed", "doa", "frame_times", "diffuseness", "level_dbfs", "frame_index")

    def _connection(self) -> Any:
        """This stream's connection; a new one in a new thread (tritonclient's HTTP client is gevent-based)."""
        if self._conn is None or self._conn_thread != threading.get_ident():
            self._conn = self.client._connect()
            self._conn_thread = threading.get_ident()
        return self._conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._conn_thread == threading.get_ident():
            try:
                conn.close()
            except Exception:
                pass

    def _request(self, audio: np.ndarray, start: bool, end: bool) -> dict:
        return self.client._call(self._connection(), self.client.stream_model, audio[None], self._outputs,
                                 sequence_id=self.sequence_id, sequence_start=start, sequence_end=end)

    def _send(self, chunk: np.ndarray, end: bool) -> SELDOutput:
        if self._closed:
            raise RuntimeError("this stream was closed; open a new one with client.stream()")
        with self._lock:
            try:
                out = self._request(chunk, start=not self._started, end=end)
            except Exception as exc:
                if not (_is_transport_error(exc) or _is_lost_sequence(exc)):
                    raise ServerError(f"{self.client.stream_model} on {self.client.url}: {_one_line(exc)}") from None
                out = self._resume(chunk, end, exc)
            self._started = True
            self.hops_sent += 1
            result = self._keep_new(out)
            if not end:
                self._remember(chunk)
            return result

    def _resume(self, chunk: np.ndarray, end: bool, first: BaseException) -> dict:
        """Report the gap once, wait for the server, start a new sequence and replay the unfinished window."""
        gap = Gap(_one_line(first), time.monotonic())
        self.gaps.append(gap)
        message = (f"stream {self.sequence_id}: server at {self.client.url} lost this stream ({gap.reason}); "
                   "reconnecting and replaying the unfinished window")
        LOG.warning(message)
        if self.on_gap is not None:
            self.on_gap(message)
        deadline = gap.started + self.reconnect_timeout_s
        replay = np.concatenate([self._buffer, chunk], axis=1)
        last: BaseException = first
        while time.monotonic() < deadline:
            self._disconnect()
            try:
                conn = self._connection()
                if not (conn.is_server_ready() and conn.is_model_ready(self.client.stream_model)):
                    raise ConnectionError("server not ready yet")
                self.sequence_id = _IDS.randrange(1, 2**62)
                out = self._request(replay, start=True, end=end)
            except Exception as exc:
                if not (_is_transport_error(exc) or _is_lost_sequence(exc) or isinstance(exc, ServerError)):
                    raise ServerError(f"{self.client.stream_model} on {self.client.url}: {_one_line(exc)}") from None
                last = exc
                time.sleep(0.2)
                continue
            self._base_frame = self._buffer_start // self.frame_samples
            gap.seconds = time.monotonic() - gap.started
            gap.replayed_samples = int(replay.shape[1])
            LOG.warning(f"stream {self.sequence_id}: resumed after {gap.seconds:.1f} s "
                        f"({replay.shape[1]} samples replayed)")
            return out
        raise ServerError(f"stream lost: {self.client.url} not back within {self.reconnect_timeout_s:g} s "
                          f"({_one_line(last)}); start a new stream when the server is up")

    def _keep_new(self, out: dict) -> SELDOutput:
        n = out["sed"].shape[1]
        first = self._base_frame + int(np.asarray(out["frame_index"]).reshape(-1)[0])
        index = first + np.arange(n)
        keep = index >= self._frames  # frames a replay repeats were returned before the gap
        names = ("sed", "doa", "diffuseness", "level_dbfs") + ((DISTANCE_NAME,) if self.distance else ())
        parts = {k: out[k][0][keep] for k in names}
        kept = index[keep]
        if len(kept) and kept[0] != self._frames:
            raise ServerError(f"stream {self.sequence_id}: frames {self._frames}..{kept[0] - 1} missing after a "
                              "resume; open a new stream")
        self._frames += len(kept)
        return self._output([parts], kept)

    def _remember(self, chunk: np.ndarray) -> None:
        """Keep the audio of the window the server has not inferred yet (what a replay must resend)."""
        frames = self.config.output_frames
        windows = 0 if self._frames == 0 else (self._frames - frames) // self.hop_frames + 1
        start = windows * self.hop_samples
        buffer = np.concatenate([self._buffer, chunk], axis=1) if self._buffer.size else chunk.copy()
        drop = start - self._buffer_start
        if drop > 0:
            buffer = buffer[:, drop:]
            self._buffer_start = start
        self._buffer = np.ascontiguousarray(buffer)

    def _output(self, parts: list[dict], index: np.ndarray | None = None) -> SELDOutput:
        cfg = self.config
        c = cfg.model.num_classes
        if not parts:
            parts = [{"sed": np.zeros((0, c), np.float32), "doa": np.zeros((0, c, 3), np.float32),
                      "diffuseness": np.zeros(0, np.float32), "level_dbfs": np.zeros(0, np.float32)}]
            if self.distance:
                parts[0][DISTANCE_NAME] = np.zeros((0, c), np.float32)
            index = np.zeros(0, np.int64)
        p = parts[0]
        times = self.start_time + np.asarray(index, np.float64) * cfg.output_hop_seconds
        gate = {}
        if not np.isnan(p["diffuseness"]).any():
            gate = {"diffuseness": p["diffuseness"][None], "level_dbfs": p["level_dbfs"][None]}
        distance = p[DISTANCE_NAME][None] if self.distance else None
        return SELDOutput(p["sed"][None], p["doa"][None], times, cfg.class_names, cfg, 1, **gate, distance=distance)
