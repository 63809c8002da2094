#!/usr/bin/env python3
"""The GPU checks of the TensorRT/CUDA path in one command, for a machine with an NVIDIA GPU.

    python benchmarks/device_check.py [--artifacts DIR] [--precisions fp32 fp16 int8] [--no-install]

Meant for an x86 GPU server (for example an H100 with CUDA and torch but no TensorRT) or a Jetson
with JetPack; it takes a few minutes (engine builds dominate on a Jetson: --precisions fp16 for a
quick run). Every check prints one line, ``PASS|FAIL|SKIP <check>: <detail>``; the exit status is 1
when any check failed. Checks:

* ``driver``: what libcuda itself reports (ctypes, no bindings), for comparison.
* ``diagnosis[B]``: binding B's device count and diagnosis agree with libcuda (a driver too old for
  the bindings is named with its fix, never read as "no GPU"); with cuda-bindings 13 on a driver
  older than R580 the fix (``cuda-bindings<13``) is installed and checked too.
* ``buffers[B]``, ``events[B]``, ``streams[B]``, ``threads[B]``, ``graph[B]``: pinned/device round
  trips, event timing, non-blocking streams, work from several threads, and CUDA-graph capture and
  replay through glfer_edge.runtime.cuda (no torch imported), run in a child process per binding.
* ``clean-exit[B]``: that child process exits with status 0 (pycuda used to abort with 134).
* where TensorRT is importable: ``export`` (needs torch; else --artifacts or the bundled FP32 ONNX),
  ``build[P]`` and ``parity[P]`` per precision against the torch (or ONNX Runtime FP32) reference
  with the project tolerances, ``tf32[fp32]`` (FP32 engines built without TF32), ``graph-trt[B]``
  (capture + replay equals plain enqueue) and ``clean-exit-trt[B]`` per binding.

Bindings missing here are installed into a temporary folder when pip can reach an index or a
``--wheels`` folder (pycuda only where it builds), else skipped with the reason.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BINDINGS = ("cuda-python", "pycuda")
PIP_SPECS = {"cuda-python": "cuda-bindings>=12.8,<14", "pycuda": "pycuda"}
RESULTS: list[tuple[str, str, str]] = []


def report(status: str, check: str, detail: str = "") -> None:
    RESULTS.append((status, check, detail))
    print(f"{status} {check}: {detail}".rstrip(": "), flush=True)


def one_line(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "")[:limit]


# -- child processes ---------------------------------------------------------------------------


def run_child(args: list[str], env: dict[str, str], timeout: float) -> tuple[int, list[str], str]:
    """(exit status, result lines it printed, stderr tail) of this script in --worker mode."""
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return 124, [], f"timed out after {timeout:.0f} s"
    lines = [line for line in proc.stdout.splitlines() if line.split(" ", 1)[0] in ("PASS", "FAIL", "SKIP", "DATA")]
    return proc.returncode, lines, proc.stderr[-3000:]


def relay(lines: list[str]) -> list[str]:
    """Print the child's PASS/FAIL/SKIP lines as ours; return its DATA payloads."""
    data = []
    for line in lines:
        status, rest = line.split(" ", 1)
        if status == "DATA":
            data.append(rest)
            continue
        check, _, detail = rest.partition(": ")
        report(status, check, detail)
    return data


def exit_check(name: str, rc: int, stderr: str) -> None:
    if rc == 0:
        report("PASS", name, "exit status 0")
    else:
        why = " (pycuda: context stack not empty at exit)" if "context stack was not empty" in stderr else ""
        report("FAIL", name, f"exit status {rc}{why}: {one_line(stderr)}")


def pip_install(spec: str, target: Path, wheels: Path | None, timeout: float) -> str | None:
    """Install ``spec`` into ``target``; None on success, else the reason."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(target), spec]
    if wheels is not None and wheels.is_dir():
        cmd[4:4] = ["--find-links", str(wheels)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"pip install {spec!r} took over {timeout:.0f} s"
    return None if proc.returncode == 0 else f"pip install {spec!r} failed: {one_line(proc.stderr)}"


def env_with(paths: list[Path]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in paths), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


# -- libcuda, without any binding ----------------------------------------------------------------


def libcuda() -> dict[str, int | None]:
    """Driver version and device count from libcuda itself; driver 0 when it does not load."""
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        version, count = ctypes.c_int(0), ctypes.c_int(0)
        lib.cuDriverGetVersion(ctypes.byref(version))
        init = lib.cuInit(0)
        if init == 0:
            lib.cuDeviceGetCount(ctypes.byref(count))
        return {"driver": version.value, "devices": count.value, "cuInit": init}
    return {"driver": 0, "devices": 0, "cuInit": None}


def diagnose(binding: str, paths: list[Path]) -> dict | None:
    """The binding's DriverStatus as a dict ({'missing': why} when it does not import); None after a
    FAIL line (the child crashed)."""
    rc, lines, err = run_child(["diagnose", binding], env_with(paths), 120)
    data = relay(lines)
    if rc != 0 or not data:
        report("FAIL", f"diagnosis[{binding}]", f"the check crashed (exit {rc}): {one_line(err)}")
        return None
    return json.loads(data[0])


def judge_diagnosis(name: str, status: dict, driver: dict) -> bool:
    """PASS when the binding's status agrees with libcuda; returns whether the binding sees a device."""
    detail = (f"{status['devices']} device(s), driver {status['driver_version']}, "
              f"bindings built for {status['bindings_version']}")
    if driver["devices"] and status["devices"] == driver["devices"]:
        report("PASS", name, detail)
        return True
    if driver["devices"] and status["driver_too_old"]:
        report("PASS", name, f"diagnosed, not read as 'no GPU': {status['problem']}")
        return False
    if not driver["devices"] and not status["devices"] and status["problem"]:
        report("PASS", name, f"no device here, and the binding says why: {status['problem']}")
        return False
    report("FAIL", name, f"libcuda sees {driver['devices']} device(s), the binding says {detail}: {status['problem']}")
    return False


# -- workers (run in child processes) --------------------------------------------------------------


def worker_diagnose(binding: str) -> None:
    from dataclasses import asdict

    from glfer_edge.runtime.cuda import open_cuda

    try:
        api = open_cuda(binding)
    except ImportError as exc:
        print("DATA " + json.dumps({"missing": one_line(exc)}))
        return
    print("DATA " + json.dumps(asdict(api.driver_status())))


def worker_buffers(binding: str) -> None:
    import threading

    import numpy as np

    from glfer_edge.runtime.cuda import open_cuda

    api = open_cuda(binding)

    def check(name: str, fn) -> None:
        try:
            detail = fn()
        except Exception as exc:  # one line per check, the next still runs
            print(f"FAIL {name}[{binding}]: {type(exc).__name__}: {one_line(exc)}", flush=True)
            return
        status = "SKIP" if isinstance(detail, str) and detail.startswith("skip: ") else "PASS"
        print(f"{status} {name}[{binding}]: {str(detail).removeprefix('skip: ')}", flush=True)

    def round_trip() -> str:
        with api.active(0):
            shape = (3, 4, 4000)
            host_in, host_out = api.alloc_pinned(shape, np.float32), api.alloc_pinned(shape, np.float32)
            device, stream = api.alloc_device(host_in.nbytes), api.create_stream()
            host_in[:] = np.random.default_rng(0).standard_normal(shape)
            host_out[:] = 0
            api.copy_htod_async(device, host_in, host_in[:2].nbytes, stream)
            api.copy_dtoh_async(host_out, device, host_in[:2].nbytes, stream)
            api.synchronize(stream)
            ok = np.array_equal(host_out[:2], host_in[:2]) and not host_out[2].any()
            api.free_device(device), api.free_pinned(host_in), api.free_pinned(host_out), api.destroy_stream(stream)
            assert ok, "partial H2D/D2H round trip returned other data"
            return "pinned -> device -> pinned, partial batch copies exact"

    def events() -> str:
        with api.active(0):
            host = api.alloc_pinned((1 << 22,), np.float32)
            device, stream = api.alloc_device(host.nbytes), api.create_stream()
            start, end = api.create_event(), api.create_event()
            api.record_event(start, stream)
            api.copy_htod_async(device, host, host.nbytes, stream)
            api.record_event(end, stream)
            api.synchronize(stream)
            ms = api.elapsed_ms(start, end)
            api.destroy_event(start), api.destroy_event(end)
            api.free_device(device), api.free_pinned(host), api.destroy_stream(stream)
            assert ms > 0, f"elapsed {ms} ms"
            return f"16 MiB H2D in {ms:.3f} ms"

    def streams() -> str:
        if binding != "cuda-python":
            return "skip: flags read through cuda-python; pycuda passes CU_STREAM_NON_BLOCKING to cuStreamCreate"
        from glfer_edge.runtime.cuda import _import_cudart

        rt = _import_cudart()
        with api.active(0):
            stream = api.create_stream()
            err, flags = rt.cudaStreamGetFlags(stream)
            api.destroy_stream(stream)
        assert err == rt.cudaError_t.cudaSuccess and int(flags) & 1, f"stream flags {flags} ({err})"
        return "streams are cudaStreamNonBlocking"

    def threads() -> str:
        errors: list[BaseException] = []

        def work() -> None:
            try:
                round_trip()
            except BaseException as exc:
                errors.append(exc)

        pool = [threading.Thread(target=work) for _ in range(4)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        with api.active(0), api.active(0):  # nested blocks
            round_trip()
        assert not errors, one_line(errors[0])
        return "4 short-lived threads and nested active() blocks"

    def graph() -> str:
        if not api.supports_graphs:
            return f"skip: {binding} offers no CUDA graphs in glfer-edge"
        with api.active(0):
            stream = api.create_stream()
            src, dst = api.alloc_pinned((1024,), np.float32), api.alloc_pinned((1024,), np.float32)
            device = api.alloc_device(src.nbytes)
            api.begin_capture(stream)
            api.copy_htod_async(device, src, src.nbytes, stream)
            api.copy_dtoh_async(dst, device, dst.nbytes, stream)
            graph = api.end_capture(stream)
            for value in (1.0, 2.5, -3.0):
                src[:] = value
                api.launch_graph(graph, stream)
                api.synchronize(stream)
                assert np.all(dst == value), f"replay gave {dst[:3]} for {value}"
            api.destroy_graph(graph)
            api.free_device(device), api.free_pinned(src), api.free_pinned(dst), api.destroy_stream(stream)
        assert "torch" not in sys.modules, "torch was imported on the deploy path"
        return "capture + 3 replays on a non-blocking stream, torch not imported"

    check("buffers", round_trip)
    check("events", events)
    check("streams", streams)
    check("threads", threads)
    check("graph", graph)


def worker_export(out: str) -> None:
    """FP32/FP16/INT8 artifacts of the bundled model at 2-s segments, as the parity suite makes them."""
    from glfer_edge.model.glfernet import GLFERNet
    from glfer_edge.weights import DEFAULT_WEIGHTS, load_model, save_weights

    bundled = load_model(DEFAULT_WEIGHTS)
    model = GLFERNet(bundled.config.replace(segment_seconds=2.0))
    model.load_state_dict(bundled.state_dict())
    reference = Path(out) / "reference.safetensors"
    save_weights(model.eval(), reference)
    subprocess.run([sys.executable, "-m", "glfer_edge", "export", "--weights", str(reference), "--out", out,
                    "--precision", "fp32", "fp16", "int8", "--report-scenes", "0", "--quiet"], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    artifacts = {p: str(Path(out) / f"model.{p}.onnx") for p in ("fp32", "fp16", "int8")}
    print("DATA " + json.dumps({"reference": str(reference), **artifacts}))


def worker_build(onnx: str, engine: str) -> None:
    from glfer_edge.export.trt_build import build_engine

    t0 = time.perf_counter()
    result = build_engine(onnx, engine, batch=(1, 4, 4), progress=False)
    side = result.sidecar
    print(f"PASS build[{side['precision']}]: {side['tensorrt']['flavour']} {side['tensorrt']['version']} for "
          f"{side['gpu']['name']} in {time.perf_counter() - t0:.1f} s")
    if side["precision"] == "fp32":
        status = "PASS" if side["builder"]["tf32"] is False else "FAIL"
        print(f"{status} tf32[fp32]: builder flag TF32 = {side['builder']['tf32']}")


def worker_parity(reference: str, engine: str, precision: str) -> None:
    from glfer_edge import parity
    from glfer_edge.weights import read_config

    if reference.endswith(".safetensors"):
        config = read_config(reference)
    else:
        from glfer_edge.runtime import SELDRuntime

        with SELDRuntime.open(reference) as rt:
            config = rt.config
    recordings = parity.synth_recordings(config, 24, seed=1)  # the parity suite's set
    result = parity.compare_artifacts(reference, engine, recordings, data="device_check")
    st = result.stats
    measured = (f"sed max|d| {st.sed_max_abs:.2g}, doa max|d| {st.doa_max_abs:.2g}, sed agreement "
                f"{st.sed_agreement:.4f}, doa mean {st.doa_angle_mean_deg:.2f} deg")
    detail = measured + ("; " + "; ".join(result.violations) if result.violations else "")
    print(f"{'PASS' if result.passed else 'FAIL'} parity[{precision}]: vs {Path(reference).name} on 24 scenes: {detail}")


def worker_trt_run(binding: str, engine: str) -> None:
    import threading

    import numpy as np

    from glfer_edge.runtime.trt import TensorRTBackend

    plain = TensorRTBackend(engine, cuda=binding)
    graphed = TensorRTBackend(engine, cuda=binding, cuda_graph=True)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1, 4, plain.config.segment_samples)).astype(np.float32) * 0.1 for _ in range(3)]
    worst = 0.0
    for audio in inputs:  # the first call captures, the others replay
        a, b = plain.run(audio), graphed.run(audio)
        worst = max(worst, float(np.abs(a[0] - b[0]).max()), float(np.abs(a[1] - b[1]).max()))
    status = graphed.graph_status
    if binding == "cuda-python":
        ok = status.startswith("on") and worst <= 1e-6
        print(f"{'PASS' if ok else 'FAIL'} graph-trt[{binding}]: graph_status '{status}', "
              f"replay vs plain max |diff| {worst:.2g}")
    else:
        print(f"{'PASS' if status.startswith('off') else 'FAIL'} graph-trt[{binding}]: graph_status '{status}'")
    out: list = []
    thread = threading.Thread(target=lambda: out.append(plain.run(inputs[0])))  # a server's request thread
    thread.start()
    thread.join()
    same = out and np.array_equal(out[0][0], plain.run(inputs[0])[0])
    print(f"{'PASS' if same else 'FAIL'} threads-trt[{binding}]: inference from another thread")
    plain.close()
    graphed.close()


WORKERS = {"diagnose": worker_diagnose, "buffers": worker_buffers, "export": worker_export, "build": worker_build,
           "parity": worker_parity, "trt-run": worker_trt_run}


# -- the checks --------------------------------------------------------------------------------


def check_bindings(args: argparse.Namespace, scratch: Path) -> dict[str, list[Path]]:
    """Per binding that sees a GPU: the extra sys.path entries it needs."""
    driver = libcuda()
    if driver["driver"]:
        v = driver["driver"]
        report("PASS" if driver["devices"] else "FAIL", "driver",
               f"libcuda: CUDA {v // 1000}.{v % 1000 // 10}, {driver['devices']} device(s), cuInit {driver['cuInit']}")
    else:
        report("FAIL", "driver", "libcuda does not load: no NVIDIA driver on this machine")
    usable: dict[str, list[Path]] = {}
    for binding in BINDINGS:
        paths: list[Path] = []
        status = diagnose(binding, paths)
        if status is not None and "missing" in status and not args.no_install:
            target = scratch / binding
            why = pip_install(PIP_SPECS[binding], target, args.wheels, 240 if binding == "pycuda" else 120)
            if why is None:
                paths = [target]
                status = diagnose(binding, paths)
            else:
                status = {"missing": f"{status['missing']}; {why}"}
        if status is None:
            continue
        if "missing" in status:
            report("SKIP", f"diagnosis[{binding}]", f"{binding} not usable here: {status['missing']}")
            continue
        sees = judge_diagnosis(f"diagnosis[{binding}]", status, driver)
        if status["driver_too_old"] and binding == "cuda-python" and not args.no_install:
            target = scratch / "cuda-bindings-12"  # the fix the diagnosis names
            why = pip_install("cuda-bindings>=12.8,<13", target, args.wheels, 120)
            if why is not None:
                report("SKIP", f"diagnosis[{binding} after the fix]", why)
            elif (fixed := diagnose(binding, [target])) is not None and "missing" not in fixed:
                paths = [target]
                sees = judge_diagnosis(f"diagnosis[{binding} after the fix]", fixed, driver)
        if sees:
            usable[binding] = paths
    for binding, paths in usable.items():
        rc, lines, err = run_child(["buffers", binding], env_with(paths), 180)
        relay(lines)
        exit_check(f"clean-exit[{binding}]", rc, err)
    return usable


def check_tensorrt(args: argparse.Namespace, scratch: Path, usable: dict[str, list[Path]]) -> None:
    import importlib.util

    flavours = [f for f in ("tensorrt", "tensorrt_rtx") if importlib.util.find_spec(f) is not None]
    if not flavours:
        report("SKIP", "tensorrt", "neither tensorrt nor tensorrt_rtx is importable: engine build and parity not run")
        return
    if not usable:
        report("SKIP", "tensorrt", "no CUDA binding sees a device (see the diagnosis lines)")
        return
    env = env_with([path for paths in usable.values() for path in paths])  # what the builds' open_cuda() finds
    report("PASS", "tensorrt", ", ".join(flavours) + " importable")
    artifacts: dict[str, str] = {}
    reference = ""
    if args.artifacts:
        artifacts = {p: str(args.artifacts / f"model.{p}.onnx") for p in args.precisions
                     if (args.artifacts / f"model.{p}.onnx").is_file()}
        reference = str(args.artifacts / "model.fp32.onnx")
    elif importlib.util.find_spec("torch") is not None:
        rc, lines, err = run_child(["export", str(scratch)], env, 300)
        if rc == 0:
            data = json.loads(relay(lines)[0])
            reference = data.pop("reference")
            artifacts = data
            report("PASS", "export", f"2-s FP32/FP16/INT8 artifacts of the bundled model in {scratch}")
        else:
            report("FAIL", "export", one_line(err))
    else:
        bundled = ROOT / "glfer_edge" / "assets" / "glfer_small_synth.fp32.onnx"
        artifacts, reference = {"fp32": str(bundled)}, str(bundled)
        report("SKIP", "export", "no torch: only the bundled FP32 ONNX is built (pass --artifacts DIR for FP16/INT8)")
    engines: dict[str, str] = {}
    for precision in args.precisions:
        if precision not in artifacts:
            report("SKIP", f"build[{precision}]", "no artifact for this precision")
            continue
        engine = str(scratch / f"model.{precision}.engine")
        rc, lines, err = run_child(["build", artifacts[precision], engine], env, 600)
        relay(lines)
        if rc != 0:
            report("FAIL", f"build[{precision}]", one_line(err))
            continue
        engines[precision] = engine
        rc, lines, err = run_child(["parity", reference, engine, precision], env, 300)
        relay(lines)
        if rc != 0:
            report("FAIL", f"parity[{precision}]", one_line(err))
    if not engines:
        return
    engine = engines.get("fp16") or next(iter(engines.values()))
    for binding, paths in usable.items():
        rc, lines, err = run_child(["trt-run", binding, engine], env_with(paths), 180)
        relay(lines)
        exit_check(f"clean-exit-trt[{binding}]", rc, err)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        sys.path.insert(0, str(ROOT))
        WORKERS[sys.argv[2]](*sys.argv[3:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, help="folder with model.{fp32,fp16,int8}.onnx (default: export now)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "fp16", "int8"], choices=["fp32", "fp16", "int8"])
    parser.add_argument("--no-install", action="store_true", help="never pip-install a missing binding")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".whl", help="local wheels for pip (--find-links)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    tegra = Path("/etc/nv_tegra_release")
    jetson = tegra.read_text().split(",")[0].strip() if tegra.is_file() else "not a Jetson"
    print(f"device_check: python {sys.version.split()[0]}, {os.uname().machine}, {jetson}", flush=True)
    with tempfile.TemporaryDirectory(prefix="glfer-device-check-") as tmp:
        scratch = Path(tmp)
        usable = check_bindings(args, scratch)
        check_tensorrt(args, scratch, usable)
    counts = {s: sum(1 for r in RESULTS if r[0] == s) for s in ("PASS", "FAIL", "SKIP")}
    print(f"device_check: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
