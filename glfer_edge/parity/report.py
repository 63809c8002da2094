"""The one-page markdown parity report: verdict, checks against the tolerance row, output statistics,
SELD metrics of both sides and, when searched, the per-layer table."""

from __future__ import annotations

from glfer_edge.parity.layers import LayerReport
from glfer_edge.parity.task import SELD_KEYS, ParityReport
from glfer_edge.parity.tensors import CHECKS

__all__ = ["render_markdown"]


def _check_rows(report: ParityReport) -> list[str]:
    tol, rows = report.tolerances, []
    nonfinite = report.stats.nonfinite  # statistics over NaN/Inf outputs pass nothing
    for check in CHECKS:
        bound = getattr(tol, check.bound)
        if bound is None or not check.applies(report.stats):
            continue
        value = check.value(report.stats, report.seld_delta)
        if value is None:
            rows.append(f"| {check.label} | – | {check.sign} {bound:g} | not measured |")
            continue
        status = "**FAIL**" if nonfinite or check.fails(value, tol) else "PASS"
        rows.append(f"| {check.label} | {value:.4g} | {check.sign} {bound:g} | {status} |")
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
        f"| doa | {s.doa_max_abs:.3g} | {s.doa_mean_abs:.3g} | {s.doa_cosine:.6f} |",
        *([f"| distance (m) | {s.distance_max_abs:.3g} | {s.distance_mean_abs:.3g} | |"] if s.has_distance else []), "",
        f"SED decisions agree on {100 * s.sed_agreement:.2f} % of frame-class cells; DOA angular error on the "
        f"{s.active_cells} cells active in A: mean {s.doa_angle_mean_deg:.3g} deg, p99 {s.doa_angle_p99_deg:.3g} deg.",
    ]
    if s.has_distance:
        lines.append(f"Relative distance error |B − A| / A on the same cells: mean {s.distance_rel_mean:.3g}, "
                     f"max {s.distance_rel_max:.3g}.")
    if report.seld_a and report.seld_b:
        lines += ["", "## SELD metrics against the labels", "", "| metric | A | B | B − A |", "|---|---|---|---|"]
        a, b = report.seld_a, report.seld_b
        lines += [f"| {k} | {a[k]:.4f} | {b[k]:.4f} | {b[k] - a[k]:+.4f} |" for k in SELD_KEYS]
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
