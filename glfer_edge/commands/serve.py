"""``glfer-edge serve``: a Triton Inference Server for a glfer-edge artifact (fleets of FOA sensors).

Writes a Python-backend model repository for ``--model`` into a temporary folder (``glfer``: stateless,
dynamic batching; ``glfer_stream``: one StreamingSELD per Triton sequence) and runs the ``tritonserver``
binary of the ``nvidia-pytriton`` wheel on it, with this interpreter's libpython on the stub's library
path. Triton's own endpoints are unchanged: KServe v2 HTTP and gRPC, ``/v2/health/ready``, Prometheus
``/metrics``. ``--repository DIR`` serves a repository written by ``glfer-edge export-triton`` instead.
SIGINT or SIGTERM stops it cleanly (Triton finishes in-flight requests, then unloads the models).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path,
                        help=".onnx, .engine/.plan or .safetensors (default: the bundled demo model)")
    parser.add_argument("--repository", type=Path, metavar="DIR",
                        help="serve this Triton model repository (glfer-edge export-triton) instead of --model")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP port (default 8000)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001)")
    parser.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (default 8002)")
    add_model_arguments(parser)
    parser.add_argument("--log", type=Path, help="write Triton's log to this file (default: standard error)")
    parser.add_argument("--ready-timeout", type=float, default=120.0, help="seconds to wait for the models (120)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The served models' settings (glfer_edge.serve.repository.ServeOptions), shared with export-triton."""
    parser.add_argument("--max-batch-size", type=int, default=16,
                        help="segments per dynamic batch (glfer) and sequences per batch (glfer_stream); default 16")
    parser.add_argument("--max-queue-delay-us", type=int, default=2000,
                        help="how long Triton holds a request to fill a batch, in microseconds (default 2000)")
    parser.add_argument("--instances", type=int, default=1,
                        help="model instances, each a process with its own runtime (default 1)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="instance kind (gpu: onnxruntime CUDA or a TensorRT engine); default cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="onnxruntime intra-op threads per instance (default: cores / instances)")
    parser.add_argument("--stream-hop", type=float, default=None, metavar="SECONDS",
                        help="window hop of glfer_stream (a multiple of the 0.2-s output hop; default: one segment)")
    parser.add_argument("--sequence-idle-s", type=float, default=30.0,
                        help="a stream idle this long loses its Triton sequence slot and its state (default 30)")
    parser.add_argument("--max-sequences", type=int, default=64,
                        help="concurrent streams; more wait until one ends or idles out (default 64)")


def serve_options(args: argparse.Namespace):
    """ServeOptions from the arguments of :func:`add_model_arguments`, checked."""
    from glfer_edge.serve.repository import ServeOptions

    return ServeOptions(
        max_batch_size=args.max_batch_size, max_queue_delay_us=args.max_queue_delay_us, instances=args.instances,
        kind=args.device, threads=args.threads, stream_hop_seconds=args.stream_hop,
        sequence_idle_s=args.sequence_idle_s, max_sequences=args.max_sequences,
        graph_optimization=getattr(args, "graph_optimization", None),
    ).check()


def run(args: argparse.Namespace) -> int:
    from glfer_edge.errors import InputError
    from glfer_edge.serve.distribution import check_libpython, find_distribution
    from glfer_edge.serve.repository import write_repository
    from glfer_edge.serve.server import TritonServer

    if args.model is not None and args.repository is not None:
        raise InputError("pass --model (a repository is written for it) or --repository DIR, not both")
    for flag, port in (("--http-port", args.http_port), ("--grpc-port", args.grpc_port),
                       ("--metrics-port", args.metrics_port)):
        if not 1 <= port <= 65535:
            raise InputError(f"{flag} {port} is not a TCP port (1..65535)")
    if len({args.http_port, args.grpc_port, args.metrics_port}) < 3:
        raise InputError("--http-port, --grpc-port and --metrics-port must differ")
    options = serve_options(args)
    dist = find_distribution()  # the serve extra is installed, with a stub for this Python
    check_libpython()
    with tempfile.TemporaryDirectory(prefix="glfer_serve_") as tmp:
        if args.repository is not None:
            if not (args.repository / ".").is_dir():
                raise InputError(f"--repository {args.repository} not found; write one with glfer-edge export-triton")
            repo = args.repository
        else:
            from glfer_edge.runtime.seld import default_model

            model = args.model if args.model is not None else default_model()[0]
            repo = Path(tmp) / "repository"
            write_repository(repo, model, forms=("python",), options=options, copy=False)
            _note(f"model {model} -> repository {repo} (glfer, glfer_stream)")
        log = args.log if args.log is not None else sys.stderr.buffer
        server = TritonServer(repo, host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                              metrics_port=args.metrics_port, log=log)
        stop = threading.Event()
        received: list[int] = []

        def on_signal(signum: int, _frame: object) -> None:
            received.append(signum)
            stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.start()
            _note(f"tritonserver of nvidia-pytriton {dist.version}, pid {server.pid}, loading the models")
            server.wait_ready(args.ready_timeout)
            _note(f"listening: HTTP {args.host}:{args.http_port}, gRPC {args.host}:{args.grpc_port}, "
                  f"metrics http://{args.host}:{args.metrics_port}/metrics; health {server.http_url}/v2/health/ready")
            _note("models: glfer (B, 4, segment) -> sed, doa (and distance for models with the distance head); "
                  "glfer_stream (sequences of hops); Ctrl-C stops")
            while not stop.wait(0.5):
                if not server.is_alive():
                    from glfer_edge.serve.server import ServerStartError

                    raise ServerStartError(f"tritonserver exited unexpectedly: {server.failure()}")
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            if server.is_alive():
                name = signal.Signals(received[0]).name if received else "shutdown"
                _note(f"{name}: stopping tritonserver (in-flight requests finish first)")
            code = server.stop()
            server.cleanup()
        _note(f"tritonserver stopped (exit status {code})")
    return 0


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr, flush=True)
