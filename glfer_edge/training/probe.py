"""Direction probe: at which depth of the encoder the source direction gets lost.

For every output frame with exactly one active event, the activations of a tap (the standardized
features, the stem, each GLF stage) are pooled over the frame's time-frequency cells (mean and mean
magnitude per channel) and a ridge regression maps them to the event's Cartesian DOA label. It is
fitted on one split and scored on another (median angular error). On the features the probe reads
the frontend's own intensity-vector direction (the reference level); a tap far above it has discarded the
direction, and no DOA head after it can get it back linearly. Compare with ``model`` (the network's
own class-wise DOA on the same frames).

    python -m glfer_edge.training.probe --weights runs/x/best.safetensors --fit-data data/synth \\
        --fit-split train --data data/synth-test --split test
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from glfer_edge.model.glfernet import GLFERNet
from glfer_edge.parity.tensors import angular_error_deg
from glfer_edge.training.dataset import SELDDataset
from glfer_edge.training.loss import reduce_targets

__all__ = ["ProbeResult", "direction_probe"]


@dataclass(frozen=True)
class ProbeResult:
    """Median angular error (degrees) of a linear DOA read-out on single-event frames."""

    tap: str
    dim: int
    fit_deg: float
    score_deg: float


def _taps(model: GLFERNet) -> dict[str, nn.Module]:
    taps: dict[str, nn.Module] = {"features": model.frontend, "stem": model.encoder.stem}
    taps.update({f"stage{i}": stage for i, stage in enumerate(model.encoder.stages)})
    return taps


def _pool(x: torch.Tensor, n_out: int) -> torch.Tensor:
    """(1, C, T, F) -> (n_out, 2C): mean and mean |x| over each output frame's cells."""
    x = x[0, :, : x.shape[2] - x.shape[2] % n_out]
    c, t, f = x.shape
    x = x.reshape(c, n_out, t // n_out, f)
    return torch.cat([x.mean((2, 3)), x.abs().mean((2, 3))]).T


def _collect(model: GLFERNet, data: SELDDataset, max_segments: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Pooled activations per tap, the model's DOA for the active class, and the label, on single-event frames."""
    taps = _taps(model)
    current: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, k=k: current.__setitem__(k, out)) for k, m in taps.items()]
    pooled: dict[str, list[torch.Tensor]] = {k: [] for k in taps}
    own, labels = [], []
    try:
        with torch.inference_mode():
            for i in range(min(max_segments, len(data))):
                audio, sed, doa = data[i][:3]  # a distance model's dataset adds distance targets
                doa_out = model(audio[None])[1]
                sed_t, doa_t = reduce_targets(sed[None], doa[None], doa_out.shape[1])
                single = sed_t[0].sum(-1) == 1
                cls = sed_t[0].argmax(-1)
                frames = torch.nonzero(single).flatten()
                for k in pooled:
                    pooled[k].append(_pool(current[k], doa_out.shape[1])[frames])
                own.append(doa_out[0, frames, cls[frames]])
                labels.append(doa_t[0, frames, cls[frames]])
    finally:
        for h in hooks:
            h.remove()
    return {k: torch.cat(v).numpy() for k, v in pooled.items()}, torch.cat(own).numpy(), torch.cat(labels).numpy()


def _design(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return np.hstack([(x - mu) / sd, np.ones((len(x), 1))])


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Hand-written closed form (a few lines; scikit-learn is not a dependency).
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = _design(x, mu, sd)
    return mu, sd, np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ y)


def _predict(x: np.ndarray, mu: np.ndarray, sd: np.ndarray, w: np.ndarray) -> np.ndarray:
    return _design(x, mu, sd) @ w


def _median_angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.median(angular_error_deg(a, b)))


def direction_probe(
    model: GLFERNet, fit: SELDDataset, score: SELDDataset, *, fit_segments: int = 200, score_segments: int = 90,
    alpha: float = 1.0,
) -> list[ProbeResult]:
    """Probe every tap of ``model`` (eval mode): fit on ``fit``, score on ``score``; the last row is the model's DOA."""
    model.eval()
    x_fit, own_fit, y_fit = _collect(model, fit, fit_segments)
    x_score, own_score, y_score = _collect(model, score, score_segments)
    if len(y_fit) < 10 or len(y_score) < 10:
        raise ValueError(f"too few single-event frames to probe ({len(y_fit)} fit, {len(y_score)} scored)")
    results = []
    for tap in x_fit:
        params = _ridge(x_fit[tap], y_fit, alpha)
        results.append(ProbeResult(
            tap, x_fit[tap].shape[1], _median_angle(_predict(x_fit[tap], *params), y_fit),
            _median_angle(_predict(x_score[tap], *params), y_score),
        ))
    results.append(ProbeResult("model", 3, _median_angle(own_fit, y_fit), _median_angle(own_score, y_score)))
    return results


def main(argv: list[str] | None = None) -> None:
    from glfer_edge.weights import load_model

    p = argparse.ArgumentParser(prog="python -m glfer_edge.training.probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", help="safetensors weights (default: the bundled model)")
    p.add_argument("--fit-data", required=True, help="dataset folder to fit the read-outs on")
    p.add_argument("--fit-split", default="train")
    p.add_argument("--data", required=True, help="dataset folder to score them on (held out)")
    p.add_argument("--split", default="test")
    p.add_argument("--layout", default="synth")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.weights)
    fit = SELDDataset(args.fit_data, model.config, args.fit_split, layout=args.layout)
    score = SELDDataset(args.data, model.config, args.split, layout=args.layout)
    print(f"{'tap':10s} {'dim':>4s} {'fit deg':>8s} {'held-out deg':>13s}")
    for r in direction_probe(model, fit, score):
        print(f"{r.tap:10s} {r.dim:4d} {r.fit_deg:8.1f} {r.score_deg:13.1f}")


if __name__ == "__main__":
    main()
