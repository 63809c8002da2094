"""Parity of the OpenVINO backend: every artifact form, run by OpenVINO on the CPU, against the torch FP32
reference, on the same scenes and with the same tolerance rows as onnxruntime (tests/parity/test_parity.py);
bf16 (asked for explicitly) against its own row, ``openvino-bf16``, on CPUs that compute bf16.

Skips with the reason when the ``openvino`` extra is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

from glfer_edge.parity import compare_outputs, score_recordings, violations
from glfer_edge.tolerances import TOLERANCES

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'glfer-edge[openvino]')")

FORMS = ["fp32", "fp16", "int8", "int8-cpu"]


def _outputs(path, recordings, **open_kwargs):
    """(runtime summary, per-recording SED, per-recording DOA) of one artifact on one backend."""
    from types import SimpleNamespace

    from glfer_edge.runtime import SELDRuntime
    from glfer_edge.runtime.segments import infer_long

    with SELDRuntime.open(path, **open_kwargs) as rt:
        outs = [infer_long(rt, rec.audio, batch_size=4) for rec in recordings]
        summary = SimpleNamespace(backend=rt.backend, precision=rt.precision, description=rt.description,
                                  config=rt.config)
        return summary, [o.sed[0] for o in outs], [o.doa[0] for o in outs]


@pytest.fixture(scope="module")
def torch_outputs(reference, recordings):
    _, sed, doa = _outputs(reference[0], recordings)
    return sed, doa


def _check(torch_outputs, recordings, sed_b, doa_b, config, tol):
    sed_a, doa_a = torch_outputs
    stats = compare_outputs(np.concatenate(sed_a), np.concatenate(doa_a), np.concatenate(sed_b),
                            np.concatenate(doa_b), threshold=config.sed_threshold)
    seld_a = score_recordings(config, recordings, sed_a, doa_a).scores()["SELD"]
    seld_b = score_recordings(config, recordings, sed_b, doa_b).scores()["SELD"]
    return stats, seld_b - seld_a, violations(stats, tol, seld_b - seld_a)


@pytest.mark.parametrize("form", FORMS)
def test_openvino_matches_torch_reference(form, artifacts, recordings, torch_outputs, reference, tmp_path):
    from glfer_edge.machine import cpu_label
    from glfer_edge.precision import PRECISIONS
    from glfer_edge.runtime import RuntimeOptions
    from glfer_edge.runtime.artifact import artifact_metadata, saturation_warning

    saturates = saturation_warning(artifact_metadata(artifacts[form]), artifacts[form].name, "openvino")
    options = RuntimeOptions(cache_dir=str(tmp_path / "ov_cache"))
    if saturates:  # the backend says so when it opens the file, and the outputs are out of the INT8 row
        with pytest.warns(UserWarning, match="saturate"):
            _outputs(artifacts[form], recordings[:1], backend="openvino", options=options)
        pytest.skip(f"8-bit INT8 weights saturate OpenVINO's kernels on {cpu_label()} (no VNNI); the backend warns")
    rt, sed, doa = _outputs(artifacts[form], recordings, backend="openvino", options=options)
    assert rt.backend == "openvino" and rt.precision == PRECISIONS[form].metadata
    assert "inference precision f32" in rt.description  # never bf16 unless asked for
    tol = TOLERANCES[PRECISIONS[form].tolerance]
    stats, delta, failed = _check(torch_outputs, recordings, sed, doa, rt.config, tol)
    print(f"openvino {form} vs torch: SED max {stats.sed_max_abs:.3g}, DOA max {stats.doa_max_abs:.3g}, agreement "
          f"{stats.sed_agreement:.4f}, DOA mean {stats.doa_angle_mean_deg:.3f} deg, SELD delta {delta:+.4f}")
    assert stats.nonfinite == 0
    assert not failed, f"{reference[1]}, openvino {form}: " + "; ".join(failed)


def test_openvino_bf16_within_its_own_row(artifacts, recordings, torch_outputs, reference, tmp_path):
    from glfer_edge.machine import cpu_label
    from glfer_edge.runtime import RuntimeOptions
    from glfer_edge.runtime.openvino import bf16_supported

    if not bf16_supported():
        pytest.skip(f"{cpu_label()} has no bf16 arithmetic (AVX-512 BF16 or AMX); bf16 is refused here")
    rt, sed, doa = _outputs(artifacts["fp32"], recordings, backend="openvino",
                            options=RuntimeOptions(precision="bf16", cache_dir=str(tmp_path / "ov_cache")))
    assert rt.precision == "bf16"
    stats, delta, failed = _check(torch_outputs, recordings, sed, doa, rt.config, TOLERANCES["openvino-bf16"])
    print(f"openvino bf16 vs torch on {cpu_label()}: SED max {stats.sed_max_abs:.4g}, agreement "
          f"{stats.sed_agreement:.4f}, DOA mean {stats.doa_angle_mean_deg:.3f} deg, SELD delta {delta:+.4f}")
    assert not failed, f"{reference[1]}, openvino bf16: " + "; ".join(failed)
    # bf16 really ran: the outputs are not the f32 ones
    _, sed32, _ = _outputs(artifacts["fp32"], recordings[:2], backend="openvino",
                           options=RuntimeOptions(cache_dir=str(tmp_path / "ov_cache")))
    assert max(float(np.abs(a - b).max()) for a, b in zip(sed32, sed[:2])) > 1e-5


def test_cli_parity_runs_b_on_openvino(reference, artifacts, tmp_path, capsys):
    """`glfer-edge parity A B --backend openvino`: the same report as onnxruntime's, with B opened by OpenVINO."""
    import json

    from glfer_edge.cli import main

    out = tmp_path / "parity.json"
    assert main(["parity", str(reference[0]), str(artifacts["fp32"]), "--synth", "2", "--backend", "openvino",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["b"]["backend"] == "openvino" and report["passed"]
    assert report["tolerances"]["name"] == "fp32" and report["stats"]["sed_max_abs"] < 1e-4
    capsys.readouterr()
    assert main(["parity", str(reference[0]), str(artifacts["fp32"]), "--synth", "2", "--bf16"]) == 2
    assert "add --backend openvino" in capsys.readouterr().err
