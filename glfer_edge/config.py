"""Configuration: small frozen dataclasses with the paper's defaults and named presets.

Nothing here imports torch: the deploy-time path (runtime, numpy frontend, postprocessing)
reads the same configs from weights and ONNX metadata.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from glfer_edge.channel_swap import TTA_SIZES

# Class lists of the datasets the paper evaluates on (DCASE Task 3 development sets).
STARSS23_CLASSES: tuple[str, ...] = (
    "femaleSpeech", "maleSpeech", "clapping", "telephone", "laughter", "domesticSounds",
    "footsteps", "doorCupboard", "music", "musicInstrument", "waterTap", "bell", "knock",
)
DCASE2021_CLASSES: tuple[str, ...] = (
    "alarm", "cryingBaby", "crash", "barkingDog", "femaleScream", "femaleSpeech",
    "footsteps", "knockingOnDoor", "maleScream", "maleSpeech", "ringingPhone", "piano",
)
# Procedurally synthesized classes of the bundled generator (glfer_edge.data.synth).
SYNTH_CLASSES: tuple[str, ...] = (
    "alarm", "phone", "speech", "footsteps", "knock", "doorSlam", "water",
    "music", "bell", "bark", "engine", "clapping", "bird",
)

LABEL_HOP_SECONDS = 0.1  # DCASE label frames are 100 ms


@dataclass(frozen=True)
class FeatureConfig:
    """SALSA 'linspeciv' features: 4 log-power spectrograms + 3 unit sound-intensity vectors."""

    sample_rate: int = 24000
    n_fft: int = 512
    win_length: int = 512
    hop_length: int = 300
    window: str = "hann"  # periodic Hann, as librosa
    center: bool = True  # frames centred, reflect padding of n_fft // 2
    pad_mode: str = "reflect"
    compress_high_freq: bool = True  # 200 bins = 192 linear + 8 bands of 8; False: 256 linear bins
    n_linear_bins: int = 192
    n_compressed_bands: int = 8
    band_width: int = 8
    channel_order: str = "acn"  # 'acn' (ACN/SN3D W,Y,Z,X as DCASE) or 'fuma' (W,X,Y,Z)
    power_floor: float = 1e-10  # librosa power_to_db amin
    iv_eps: float = 1e-8  # intensity-vector norm epsilon

    @property
    def n_bins(self) -> int:
        if self.compress_high_freq:
            return self.n_linear_bins + self.n_compressed_bands
        return self.n_fft // 2

    @property
    def n_channels(self) -> int:
        return 7

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    def n_frames(self, n_samples: int) -> int:
        """Feature frames for a signal of n_samples (centred STFT)."""
        if self.center:
            return 1 + n_samples // self.hop_length
        return 1 + (n_samples - self.n_fft) // self.hop_length


@dataclass(frozen=True)
class ModelConfig:
    """GLFER-Net architecture (paper section 3; fact sheet sections 3-4)."""

    num_classes: int = 13
    in_channels: int = 7
    stem_channels: int = 32
    block: str = "glf"  # 'glf' (GLF extractor) or 'conv' (ablation: plain conv blocks)
    glf_channels: tuple[int, ...] = (64, 128, 256)
    # ODConv (global branch)
    odconv_kernel_num: int = 1
    odconv_reduction: float = 0.25
    odconv_min_channels: int = 16
    odconv_temperature: float = 1.0
    # MSFE (multi-scale feature extraction) + CSS (cross-scale shuffle)
    msfe_kernels: tuple[int, ...] = (1, 3, 5, 7)
    msfe_groups: tuple[int, ...] = (1, 2, 4, 8)
    msfe_se_reduction: int = 16
    css_groups: int = 8  # paper 8; authors' code 4
    css_shuffle: bool = True
    css_aggregation: bool = True
    # FR (feature recalibration): time / channel / frequency attention branches
    fr_branches: tuple[str, ...] = ("time", "channel", "frequency")
    fr_combine: str = "sum"  # paper sums; authors' code averages ('mean')
    fr_kernel: int = 3
    # AFF (attentional feature fusion)
    aff_reduction: int = 4
    aff_factor: float = 2.0  # official ASKCFuse: 2*x*w + 2*y*(1-w); paper formula: 1.0
    # normalisation / regularisation
    bn_eps: float = 1e-3
    bn_momentum: float = 0.1
    last_pool_dropout: float = 0.2
    # decoder: frequency pooling -> BiGRU -> SED / DOA heads
    freq_pool: str = "avg"
    gru_hidden: int = 128
    gru_layers: int = 2
    gru_dropout: float = 0.0
    head_hidden: int = 128
    head_dropout: float = 0.1
    # Source distance (DCASE 2024, 3D SELD): a third head gives each class track's distance in metres,
    # (B, T', C), beside the paper's SED and DOA outputs; off in the paper and in the presets.
    distance: bool = False
    # Initial SED logit bias. 0 as SALSA; a negative prior (events are sparse) shortens the first
    # epochs of a short CPU training run, where every class otherwise starts out "active".
    sed_bias_init: float = 0.0

    @property
    def time_downsample(self) -> int:
        """Feature frames per output frame: four 2x2 average pools."""
        return 16


@dataclass(frozen=True)
class GateConfig:
    """Physical noise gate of the decisions (``glfer_edge.gate``). An output frame passes when its FOA
    diffuseness is at most ``max_diffuseness`` (DirAC psi in [0, 1]: 0 = one plane wave, 0.90-0.97 =
    uncorrelated or diffuse noise, about 0.6 = a typical reverberant synthetic event) and the level of
    its W channel is at least ``min_level_dbfs``; a frame within ``hold_frames`` output frames (before
    or after) of a passing frame passes too, so that a source's gaps and reverberant tail stay open.
    Frames that do not pass hold no event. Defaults chosen on noise and the bundled model's
    validation split (README, "Decisions"); configs stored without a gate (artifacts exported before
    it) read these defaults."""

    enabled: bool = True
    max_diffuseness: float = 0.85
    min_level_dbfs: float = -70.0
    hold_frames: int = 2  # 0.4 s each side at 0.2-s output frames

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_diffuseness <= 1.0:
            raise ValueError(f"gate max_diffuseness {self.max_diffuseness} must lie in [0, 1]")
        if self.hold_frames < 0:
            raise ValueError(f"gate hold_frames {self.hold_frames} must be >= 0")


@dataclass(frozen=True)
class SELDConfig:
    """Everything that defines one deployable model: features, network, segment and classes."""

    name: str = "paper"
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    segment_seconds: float = 8.0
    class_names: tuple[str, ...] = STARSS23_CLASSES
    sed_threshold: float = 0.3
    # Post-processing chosen on validation data with the threshold (``glfer-edge tune-threshold``);
    # the paper smooths nothing.
    doa_smoothing_frames: int = 1
    # (views, SED threshold, DOA smoothing frames) chosen with ``tune-threshold --tta K`` for outputs
    # averaged over K test-time-augmentation views, which are less confident and steadier than one view's.
    tta_decisions: tuple[tuple[int, float, int], ...] = ()
    # Noise gate on the audio's diffuseness and level, applied to every view count's decisions.
    gate: GateConfig = field(default_factory=GateConfig)

    def __post_init__(self) -> None:
        if len(self.class_names) != self.model.num_classes:
            raise ValueError(
                f"{len(self.class_names)} class names for a model with {self.model.num_classes} classes"
            )
        for frames in (self.doa_smoothing_frames, *(f for _, _, f in self.tta_decisions)):
            if frames < 1 or frames % 2 == 0:
                raise ValueError(f"DOA smoothing of {frames} frames: must be odd and >= 1 (1 = off)")
        views = [v for v, _, _ in self.tta_decisions]
        if len(set(views)) != len(views) or not all(v in TTA_SIZES[1:] for v in views):
            raise ValueError(f"tta_decisions views {views}: each one of {TTA_SIZES[1:]}, at most once")
        if not all(0.0 < t < 1.0 for _, t, _ in self.tta_decisions):
            raise ValueError(f"tta_decisions {self.tta_decisions}: thresholds must lie between 0 and 1")

    def decision(
        self, views: int = 1, threshold: float | None = None, doa_smoothing_frames: int | None = None,
    ) -> tuple[float, int]:
        """(SED threshold, DOA smoothing frames) for outputs averaged over ``views`` TTA views: the pair
        tuned for that many views, else the single-view pair; a value given here wins over the stored one."""
        tuned = {v: (t, f) for v, t, f in self.tta_decisions}
        t, f = tuned.get(views, (self.sed_threshold, self.doa_smoothing_frames))
        return (t if threshold is None else threshold), (f if doa_smoothing_frames is None else doa_smoothing_frames)

    def with_decision(self, views: int, threshold: float, doa_smoothing_frames: int) -> "SELDConfig":
        """A copy that decides outputs of ``views`` views at this pair (views 1: the single-view pair)."""
        if views == 1:
            return self.replace(sed_threshold=threshold, doa_smoothing_frames=doa_smoothing_frames)
        others = tuple(d for d in self.tta_decisions if d[0] != views)
        return self.replace(tta_decisions=tuple(sorted((*others, (views, threshold, doa_smoothing_frames)))))

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.features.sample_rate))

    @property
    def segment_frames(self) -> int:
        """Feature frames per segment, cropped to a multiple of the time downsampling (16).

        A centred STFT of N samples gives 1 + N // hop frames (641 for 8 s); the trailing frame(s)
        beyond the last multiple of 16 are dropped so that output frames line up with the 100-ms
        label frames (SALSA trims 4801 -> 4800 the same way).
        """
        n = self.features.n_frames(self.segment_samples)
        return n - n % self.model.time_downsample

    @property
    def output_frames(self) -> int:
        return self.segment_frames // self.model.time_downsample

    @property
    def output_hop_seconds(self) -> float:
        return self.model.time_downsample / self.features.frames_per_second

    def replace(self, **changes: Any) -> "SELDConfig":
        return dataclasses.replace(self, **changes)

    # -- serialisation (safetensors / ONNX metadata) ---------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SELDConfig":
        d = dict(d)
        features = _from_dict(FeatureConfig, d.pop("features", {}))
        model = _from_dict(ModelConfig, d.pop("model", {}))
        gate = _from_dict(GateConfig, d.pop("gate", {}))  # absent in artifacts exported before the gate
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown SELDConfig fields {sorted(unknown)}: produced by a newer glfer-edge?")
        if "class_names" in d:
            d["class_names"] = tuple(d["class_names"])
        if "tta_decisions" in d:
            d["tta_decisions"] = tuple((int(v), float(t), int(f)) for v, t, f in d["tta_decisions"])
        return cls(features=features, model=model, gate=gate, **d)

    @classmethod
    def from_json(cls, s: str) -> "SELDConfig":
        return cls.from_dict(json.loads(s))


def _from_dict(klass: type, d: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(klass)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"unknown {klass.__name__} fields {sorted(unknown)}: produced by a newer glfer-edge?")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return klass(**kwargs)


# ---------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------
_PAPER_MODEL = ModelConfig()
# Same architecture with reduced widths: CPU demos and fast tests.
# Widths 8/16/32 keep a CPU training epoch short; MSFE groups are capped so every scale branch
# keeps one channel per group at width 8, and CSS shuffles 4 groups of 2 channels. No dropout: a
# 0.1 M-parameter model underfits 3 h of scenes, and dropping 20 % of its 32 last-stage channels
# slowed SED learning in a 100-step probe (train BCE 0.364 vs 0.359, lr 2e-3, lambda 0.5).
_TINY_MODEL = dataclasses.replace(
    _PAPER_MODEL,
    stem_channels=8,
    glf_channels=(8, 16, 32),
    msfe_groups=(1, 1, 2, 2),
    odconv_min_channels=4,
    css_groups=4,
    gru_hidden=32,
    head_hidden=32,
    last_pool_dropout=0.0,
    head_dropout=0.0,
    sed_bias_init=-2.0,
)

# Twice tiny's widths. glfer_edge.training.probe on the trained tiny model: a linear read-out of
# frame-pooled activations finds a single source's direction 17 deg off from the features but 54
# deg off after its 8-channel stem (carrying +-x, +-y, +-z through GELU takes 6 channels besides
# the 4 spectrograms). Trained the same way, this preset's 16-channel stem keeps it (18.4 deg at
# epoch 151, model card) and its own DOA reads 10.9 deg there, vs tiny's 57. MSFE groups
# capped at 4 so every branch keeps one channel per group at width 16; CSS and ODConv as the
# paper. The bundled demo model.
_SMALL_MODEL = dataclasses.replace(
    _TINY_MODEL,
    stem_channels=16,
    glf_channels=(16, 32, 64),
    msfe_groups=(1, 2, 4, 4),
    odconv_min_channels=16,
    css_groups=8,
    gru_hidden=64,
    head_hidden=64,
)


def _ablation(name: str, **model_changes: Any) -> SELDConfig:
    return SELDConfig(name=name, model=dataclasses.replace(_PAPER_MODEL, **model_changes))


PRESETS: dict[str, SELDConfig] = {
    "paper": SELDConfig(name="paper"),
    "paper-dcase2021": SELDConfig(
        name="paper-dcase2021",
        model=dataclasses.replace(_PAPER_MODEL, num_classes=12),
        class_names=DCASE2021_CLASSES,
    ),
    "tiny": SELDConfig(name="tiny", model=_TINY_MODEL, class_names=SYNTH_CLASSES),
    "small": SELDConfig(name="small", model=_SMALL_MODEL, class_names=SYNTH_CLASSES),
    # Ablations of the paper (section 4.4): each removes or replaces one component.
    "ablation-no-fr": _ablation("ablation-no-fr", fr_branches=()),
    "ablation-plain-conv": _ablation("ablation-plain-conv", block="conv"),
    "ablation-fr-time": _ablation("ablation-fr-time", fr_branches=("time",)),
    "ablation-fr-channel": _ablation("ablation-fr-channel", fr_branches=("channel",)),
    "ablation-fr-frequency": _ablation("ablation-fr-frequency", fr_branches=("frequency",)),
    "ablation-fr-time-frequency": _ablation("ablation-fr-time-frequency", fr_branches=("time", "frequency")),
    "ablation-css-no-shuffle": _ablation("ablation-css-no-shuffle", css_shuffle=False),
    "ablation-css-no-aggregation": _ablation("ablation-css-no-aggregation", css_aggregation=False),
}


def get_preset(name: str) -> SELDConfig:
    """Return a named preset; raises ValueError listing the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
