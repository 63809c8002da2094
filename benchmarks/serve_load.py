"""Load on a glfer-edge Triton server over loopback: real-time streams, saturating streams, offline files.

    python benchmarks/serve_load.py                       # tiny preset (random init, exported here), 1/4/16 streams
    python benchmarks/serve_load.py --restart             # + 16 streams with one server kill/restart: lost/duplicated
    python benchmarks/serve_load.py --model M.onnx --json results.json

What it measures (one run, one machine, named by glfer_edge.machine.cpu_label()):

- ``realtime N``: N streams (glfer_stream, one Triton sequence each) send ``--chunk`` seconds of FOA audio every
  ``--chunk`` seconds of wall time for ``--seconds``; latency per hop (push to response) p50/p99, throughput in
  audio-seconds per second, and the lag of the last hop behind real time (a growing queue shows as lag).
- ``saturate N``: the same N streams without pacing (each sends its next hop when the previous one returns),
  and in-process the same audio through N StreamingSELD on one SELDRuntime with the same hop: throughput and
  the ratio Triton / in-process.
- ``offline``: whole recordings through glfer (dynamic batching, ``--offline-clients`` concurrent clients of
  infer_long) against in-process infer_long on one runtime: audio-s/s and the ratio.
- ``--restart``: 16 real-time streams; the server is killed (SIGKILL) and restarted once mid-run; every stream
  counts hops sent vs answered and frames received vs expected, lost and duplicated frames.

Client and server share the machine's cores (loopback), as the in-process baseline has them all.
Every run is bounded: a fixed amount of audio, a ready timeout, a reconnect timeout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from glfer_edge.machine import cpu_label
from glfer_edge.runtime import SELDRuntime, StreamingSELD
from glfer_edge.runtime.segments import infer_long
from glfer_edge.serve.client import SELDClient
from glfer_edge.serve.repository import ServeOptions, write_repository
from glfer_edge.serve.server import TritonServer


def noise(config, seconds: float, seed: int) -> np.ndarray:
    n = int(round(seconds * config.features.sample_rate))
    return (0.05 * np.random.default_rng(seed).standard_normal((4, n))).astype(np.float32)


def tiny_model(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "glfer_edge", "export", "--preset", "tiny", "--out", str(folder),
                    "--precision", "fp32", "--quiet"], check=True, capture_output=True)
    return folder / "model.fp32.onnx"


def _stream_worker(url: str, audio: np.ndarray, chunk: int, rate: int, paced: bool, t0: float, record: dict) -> None:
    latencies, frames, index = [], 0, []
    with SELDClient(url) as client:
        stream = client.stream(reconnect_timeout_s=120)
        if (wait := t0 - time.monotonic()) > 0:  # every stream starts at t0 (connections made before)
            time.sleep(wait)
        for k, pos in enumerate(range(0, audio.shape[1], chunk)):
            if paced:  # the hop's audio exists at t0 + its end time
                due = t0 + (pos + chunk) / rate
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
            start = time.monotonic()
            out = stream.push(audio[:, pos : pos + chunk])
            latencies.append(time.monotonic() - start)
            frames += out.num_frames
            index.extend(np.round(out.frame_times / client.config.output_hop_seconds).astype(int).tolist())
            record["sent"] = k + 1
        last = stream.close()
        frames += last.num_frames
        index.extend(np.round(last.frame_times / client.config.output_hop_seconds).astype(int).tolist())
        record.update(latencies=latencies, frames=frames, index=index, gaps=len(stream.gaps), answered=stream.hops_sent,
                      lag=time.monotonic() - (t0 + audio.shape[1] / rate) if paced else None,
                      end=time.monotonic())


def run_streams(url: str, audios: list[np.ndarray], chunk: int, rate: int, paced: bool,
                during=None) -> dict:
    records = [dict() for _ in audios]
    t0 = time.monotonic() + 0.5
    threads = [threading.Thread(target=_stream_worker, args=(url, a, chunk, rate, paced, t0, r), daemon=True)
               for a, r in zip(audios, records)]
    for t in threads:
        t.start()
    if during is not None:
        during()
    for t in threads:
        t.join(timeout=600)
    wall = max(r.get("end", time.monotonic()) for r in records) - t0
    lat = np.concatenate([r["latencies"] for r in records if "latencies" in r])
    halves = [np.concatenate([np.array_split(r["latencies"], 2)[h] for r in records if "latencies" in r])
              for h in (0, 1)]
    seconds = sum(a.shape[1] for a in audios) / rate
    return {
        "streams": len(audios), "audio_s": seconds, "wall_s": wall, "audio_s_per_s": seconds / wall,
        "p50_ms": 1e3 * float(np.percentile(lat, 50)), "p99_ms": 1e3 * float(np.percentile(lat, 99)),
        "hops": int(len(lat)), "lag_s": max((r["lag"] or 0.0) for r in records) if paced else None,
        "max_first_half_ms": 1e3 * float(halves[0].max()), "max_second_half_ms": 1e3 * float(halves[1].max()),
        "records": records,
    }


def in_process_streams(rt, audios: list[np.ndarray], chunk: int, hop_s: float) -> float:
    """Audio-s/s of the same streams in-process: N StreamingSELD on one runtime, hops round-robin, one window
    per inference call as on the server (StreamingSELD's default batch pads each call to 8 segments)."""
    streams = [StreamingSELD(rt, hop_s, batch_size=1) for _ in audios]
    t = time.perf_counter()
    for pos in range(0, max(a.shape[1] for a in audios), chunk):
        for s, a in zip(streams, audios):
            if pos < a.shape[1]:
                s.push(a[:, pos : pos + chunk])
    for s in streams:
        s.flush()
    return sum(a.shape[1] for a in audios) / rt.config.features.sample_rate / (time.perf_counter() - t)


def offline(url: str, rt, audios: list[np.ndarray], clients: int) -> dict:
    rate = rt.config.features.sample_rate
    seconds = sum(a.shape[1] for a in audios) / rate
    t = time.perf_counter()
    for a in audios:
        infer_long(rt, a, batch_size=8)
    local = seconds / (time.perf_counter() - t)
    todo = list(audios)
    lock = threading.Lock()

    def worker():
        with SELDClient(url) as client:
            while True:
                with lock:
                    if not todo:
                        return
                    a = todo.pop()
                client.infer_long(a, batch_size=8)

    t = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=600)
    remote = seconds / (time.perf_counter() - t)
    return {"audio_s": seconds, "triton_audio_s_per_s": remote, "in_process_audio_s_per_s": local,
            "ratio": remote / local}


def restart_run(server: TritonServer, url: str, audios, chunk: int, rate: int, frame_samples: int, at_s: float) -> dict:
    def kill_and_restart():
        time.sleep(at_s)
        server.kill()
        server.start()  # same ports; streams see refused connections until it is ready
        server.wait_ready(120)

    result = run_streams(url, audios, chunk, rate, paced=True, during=kill_and_restart)
    lost = dup = 0
    for a, r in zip(audios, result["records"]):
        expected = -(-a.shape[1] // frame_samples)
        index = r["index"]
        dup += len(index) - len(set(index))
        lost += len(set(range(expected)) - set(index))
    sent = sum(r.get("sent", 0) + 1 for r in result["records"])  # + the END request
    answered = sum(r.get("answered", 0) for r in result["records"])
    return {"streams": len(audios), "hops_sent": sent, "hops_answered": answered, "frames_lost": lost,
            "frames_duplicated": dup, "gaps_reported": sum(r.get("gaps", 0) for r in result["records"]),
            "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"], "lag_s": result["lag_s"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="artifact (default: the tiny preset, random init, exported here)")
    p.add_argument("--streams", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--seconds", type=float, default=24.0, help="audio per real-time stream (default 24)")
    p.add_argument("--chunk", type=float, default=1.0, help="seconds of audio per hop request (default 1)")
    p.add_argument("--stream-hop", type=float, default=None,
                   help="server window hop in seconds (default: one segment, StreamingSELD's default)")
    p.add_argument("--instances", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads per instance (default 1)")
    p.add_argument("--saturate-seconds", type=float, default=16.0, help="audio per stream, unpaced (default 16)")
    p.add_argument("--offline-files", type=int, default=8, help="recordings of 32 s for the offline mode")
    p.add_argument("--offline-clients", type=int, default=4)
    p.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    p.add_argument("--restart", action="store_true", help="also: 16 real-time streams with one server restart")
    p.add_argument("--skip-realtime", action="store_true")
    p.add_argument("--json", type=Path, help="write the results as JSON")
    args = p.parse_args()

    results: dict = {"cpu": cpu_label(), "protocol": args.protocol, "instances": args.instances,
                     "threads_per_instance": args.threads, "chunk_s": args.chunk, "stream_hop_s": args.stream_hop}
    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        model = args.model or tiny_model(Path(tmp) / "tiny")
        results["model"] = str(model) if args.model else "tiny preset (random init), fp32 ONNX"
        opts = ServeOptions(max_batch_size=8, max_queue_delay_us=2000, instances=args.instances, threads=args.threads,
                            stream_hop_seconds=args.stream_hop, sequence_idle_s=30.0, max_sequences=16)
        repo = Path(tmp) / "repo"
        write_repository(repo, model, forms=("python",), options=opts, copy=False)
        server = TritonServer(repo, log=Path(tmp) / "triton.log", exit_timeout_s=3)
        rt = SELDRuntime.open(model)  # in-process baseline: one runtime, every core
        cfg = rt.config
        rate = cfg.features.sample_rate
        chunk = int(round(args.chunk * rate))
        frame_samples = cfg.model.time_downsample * cfg.features.hop_length
        hop_s = args.stream_hop or cfg.output_frames * cfg.output_hop_seconds
        results["stream_hop_s"] = hop_s
        print(f"# {results['model']} on {results['cpu']}; Triton: {args.instances} instance(s) x {args.threads} "
              f"thread(s), {args.protocol}; hop requests of {args.chunk:g} s, window hop {hop_s:g} s",
              file=sys.stderr)
        try:
            t = time.monotonic()
            server.start().wait_ready(120)
            results["server_ready_s"] = time.monotonic() - t
            url = server.grpc_url if args.protocol == "grpc" else server.http_url
            rows = []
            for n in args.streams:
                row: dict = {"streams": n}
                if not args.skip_realtime:
                    audios = [noise(cfg, args.seconds, 100 + i) for i in range(n)]
                    rtm = run_streams(url, audios, chunk, rate, paced=True)
                    row.update(realtime_p50_ms=rtm["p50_ms"], realtime_p99_ms=rtm["p99_ms"], hops=rtm["hops"],
                               realtime_max_first_half_ms=rtm["max_first_half_ms"],
                               realtime_max_second_half_ms=rtm["max_second_half_ms"],
                               realtime_audio_s_per_s=rtm["audio_s_per_s"], realtime_lag_s=rtm["lag_s"])
                audios = [noise(cfg, args.saturate_seconds, 200 + i) for i in range(n)]
                sat = run_streams(url, audios, chunk, rate, paced=False)
                local = in_process_streams(rt, audios, chunk, hop_s)
                row.update(saturate_audio_s_per_s=sat["audio_s_per_s"], saturate_p50_ms=sat["p50_ms"],
                           saturate_p99_ms=sat["p99_ms"], in_process_audio_s_per_s=local,
                           ratio=sat["audio_s_per_s"] / local)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
            results["streams"] = rows
            files = [noise(cfg, 32.0, 300 + i) for i in range(args.offline_files)]
            results["offline"] = offline(url, rt, files, args.offline_clients)
            print(json.dumps(results["offline"]), file=sys.stderr)
            if args.restart:
                audios = [noise(cfg, args.seconds, 400 + i) for i in range(16)]
                results["restart"] = restart_run(server, url, audios, chunk, rate, frame_samples, args.seconds / 3)
                print(json.dumps(results["restart"]), file=sys.stderr)
        finally:
            server.cleanup()
            rt.close()
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def table(r: dict) -> str:
    lines = [f"Machine: {r['cpu']}; model: {r['model']}; Triton {r['instances']} instance(s) x "
             f"{r['threads_per_instance']} thread(s), {r['protocol']} over loopback; {r['chunk_s']:g}-s hop requests, "
             f"{r['stream_hop_s']:g}-s window hop", "",
             "| streams | real-time p50 / p99 per hop | worst hop, 1st / 2nd half | real-time audio-s/s (lag at end) "
             "| saturating Triton audio-s/s | in-process audio-s/s | Triton / in-process |",
             "|---|---|---|---|---|---|---|"]
    for row in r.get("streams", []):
        rt = (f"{row['realtime_p50_ms']:.0f} / {row['realtime_p99_ms']:.0f} ms" if "realtime_p50_ms" in row else "-")
        rate = (f"{row['realtime_audio_s_per_s']:.2f} ({row['realtime_lag_s']:.2f} s)"
                if "realtime_p50_ms" in row else "-")
        worst = (f"{row['realtime_max_first_half_ms']:.0f} / {row['realtime_max_second_half_ms']:.0f} ms"
                 if "realtime_p50_ms" in row else "-")
        lines.append(f"| {row['streams']} | {rt} | {worst} | {rate} | {row['saturate_audio_s_per_s']:.1f} | "
                     f"{row['in_process_audio_s_per_s']:.1f} | {row['ratio']:.2f} |")
    if "offline" in r:
        o = r["offline"]
        lines.append(f"| offline files (glfer) | - | - | - | {o['triton_audio_s_per_s']:.1f} | "
                     f"{o['in_process_audio_s_per_s']:.1f} | {o['ratio']:.2f} |")
    if "restart" in r:
        x = r["restart"]
        lines += ["", f"Restart under {x['streams']} real-time streams: hops sent {x['hops_sent']}, answered "
                      f"{x['hops_answered']}, frames lost {x['frames_lost']}, duplicated {x['frames_duplicated']}, "
                      f"gaps reported {x['gaps_reported']} (one per stream), p99 per hop {x['p99_ms']:.0f} ms"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
