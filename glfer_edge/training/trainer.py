"""The paper's training recipe (section 4.1): AdamW, lr 3e-4, per-step cosine annealing, batch 8, 8-s segments.

One epoch: shuffled training segments -> channel swap on the audio -> frontend (no gradient) ->
frequency shift + cutout on the standardized features -> GLFER-Net logits -> SELDLoss. After each
epoch the validation split is scored with the official DCASE metrics (rows from
glfer_edge.postprocess.outputs_to_rows, as ``glfer-edge run`` writes them: SED threshold of the
config, each 5-fps output frame repeated to two 10-fps label frames) and the weights with the
lowest SELD error are kept.

A model with the distance head (``ModelConfig.distance``, DCASE 2024 3D SELD) also learns the
class-wise source distance: the dataset yields distance targets in metres, the loss adds
``distance_weight`` * the masked relative distance error (glfer_edge.training.loss), and validation
adds the DCASE 2024 metrics (F20 with the relative-distance threshold 1, AE_CD, RDE_CD, macro) of
the same rows carrying the predicted distance. The best epoch is still chosen on the layout's SELD
score, so a distance model and its distance-free twin pick their checkpoints the same way.

Standardization statistics are fitted on the training split only (unstandardized features of the
whole files) and travel in the weights as frontend buffers. A run started from trained weights
(``init_weights``: fine-tuning) keeps their statistics, because its network learned on those features.

Files in the output folder: ``best.safetensors`` (weights + config + training provenance),
``last.safetensors`` (weights + config + provenance after the last finished epoch) with ``last_state.safetensors``
(optimizer tensors, scheduler/epoch/best-so-far as JSON metadata; no pickle), ``history.json``
and ``train.log``. Randomness is re-seeded from (seed, epoch) at every epoch start, so a resumed
run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm import tqdm

from glfer_edge import metadata as md
from glfer_edge._fileio import atomic_path, write_text_atomic
from glfer_edge.config import SELDConfig
from glfer_edge.data.dcase import LabelRow
from glfer_edge.data.layout import get_layout
from glfer_edge.errors import ArtifactError, GlferError, InputError
from glfer_edge.frontend import fit_standardization
from glfer_edge.metrics import SELDMetrics, SELDResult, check_average
from glfer_edge.model.glfernet import GLFERNet
from glfer_edge.postprocess import outputs_to_rows
from glfer_edge.training.augment import AugmentConfig, SELDAugment
from glfer_edge.training.dataset import SELDDataset
from glfer_edge.training.loss import DistanceLossTerms, LossTerms, SELDLoss
from glfer_edge.weights import load_model, parent_record, read_metadata, save_weights

__all__ = ["TrainConfig", "TrainResult", "Trainer", "cosine_scheduler", "predict", "score_predictions"]

_STATE_KEY = "glfer_edge.train_state"
_STATS_CHUNK_S = 60.0  # whole files are read in chunks of this length to fit the statistics
_PROGRESS_EVERY = 25  # steps between progress-bar loss updates (each one waits for the device)


@dataclass(frozen=True)
class TrainConfig:
    """Recipe and run options; defaults are the paper's (AdamW, lr 3e-4, cosine, batch 8, 50 epochs)."""

    epochs: int = 50
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.01  # AdamW default
    min_lr: float = 0.0  # cosine floor
    sed_weight: float = 0.3  # lambda
    doa_loss: str = "mse"  # 'mse' (paper) or 'mae' (SALSA)
    # Weight of the masked relative distance error, used only by a model with the distance head. 1: the
    # term is dimensionless and equals the RDE the 2024 metric reports, which the 2024 SELD score weighs as
    # much as 1 - F and AE/180; it starts near 0.3 (synth: 1-3 m against the head's initial 2 m) while the
    # SED and DOA terms start near 0.4-0.7 and 1, so it does not swamp them early, and its L1 gradient stays
    # at full strength late in training, when the squared DOA term's does not.
    distance_weight: float = 1.0
    augment: AugmentConfig | None = AugmentConfig()  # None: no augmentation
    layout: str = "synth"
    train_split: str = "train"
    val_split: str | None = "val"  # None: no validation, best = last
    average: str | None = None  # metric averaging; None: macro (2022/2023) or micro (2021)
    train_hop_seconds: float | None = None  # None: the segment length (non-overlapping)
    seed: int = 2021
    # Start from these weights instead of a random initialisation (fine-tuning); their architecture must
    # match the config, and their standardization statistics are kept instead of refitted.
    init_weights: str | None = None
    device: str = "cpu"
    num_threads: int | None = None
    # DataLoader processes reading segments; a segment depends only on (seed, epoch, index), so the
    # batches are the same with any count. On a GPU the reads, not the steps, bound an epoch.
    workers: int = 0
    in_memory: bool = False  # hold the split's audio in RAM (1.4 GB per hour) instead of reading segments from disk
    max_minutes: float | None = None  # stop before an epoch that would end past this budget
    compile: bool = False  # torch.compile the training forward: ~1.8x faster steps on CPU after a 2-3 min compile
    # bfloat16 autocast of the training forward (weights, optimizer, loss and validation stay FP32).
    # `small`, batch 8 x 8 s, 2 threads with AVX512-BF16, the compiled train_step on real batches:
    # 1.25-1.41 vs 1.90-2.25 s per step. Trained epochs 87-105 of the bundled model.
    bf16: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0:
            raise InputError(
                f"need epochs >= 1, batch size >= 2 (BatchNorm) and lr > 0; got {self.epochs}, {self.batch_size}, {self.lr}"
            )
        if self.workers < 0:
            raise InputError(f"--workers must be 0 (read in the training process) or more, got {self.workers}")
        if not 0.0 <= self.sed_weight <= 1.0:
            raise InputError(f"--sed-weight must lie in [0, 1] (SED share of the loss), got {self.sed_weight}")
        if not self.distance_weight >= 0.0:
            raise InputError(f"--distance-weight must be >= 0, got {self.distance_weight}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainResult:
    best_path: Path
    last_path: Path
    history: list[dict[str, Any]]
    best_epoch: int
    stopped_early: bool  # the time budget ended the run before ``epochs``


def cosine_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, min_lr: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine annealing from the optimizer's lr to ``min_lr`` over ``total_steps`` optimizer steps, in closed
    form: a resumed run with more epochs continues on the longer curve instead of staying at ``min_lr``."""
    base = optimizer.param_groups[0]["lr"]
    floor = min_lr / base

    def factor(step: int) -> float:
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _seed(seed: int, epoch: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0])


class Trainer:
    """Trains ``GLFERNet(config)`` on ``data_root`` (DCASE layout) and writes the run into ``out_dir``."""

    def __init__(
        self, config: SELDConfig, data_root: str | Path, out_dir: str | Path, train: TrainConfig = TrainConfig(),
        *, progress: bool = True,
    ) -> None:
        self.train_cfg = train
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.device = _device(train.device)
        if train.num_threads:
            torch.set_num_threads(train.num_threads)
        layout = get_layout(train.layout)
        if layout.num_classes != config.model.num_classes:
            raise InputError(
                f"dataset layout '{layout.name}' has {layout.num_classes} classes but preset '{config.name}' "
                f"predicts {config.model.num_classes}; pick a preset with {layout.num_classes} classes"
            )
        self.config = config.replace(class_names=layout.class_names)
        self.average = check_average(layout.edition, train.average)
        self.train_set = SELDDataset(
            data_root, self.config, train.train_split, layout=layout, train=True,
            hop_seconds=train.train_hop_seconds, seed=train.seed, in_memory=train.in_memory,
        )
        self.val_set = None if train.val_split is None else SELDDataset(
            data_root, self.config, train.val_split, layout=layout, in_memory=train.in_memory,
        )
        self.steps_per_epoch = len(self.train_set) // train.batch_size
        if self.steps_per_epoch < 1:
            raise InputError(
                f"the training split has {len(self.train_set)} segments, fewer than one batch of {train.batch_size}; "
                "lower --batch-size or add data"
            )
        torch.manual_seed(train.seed)
        self.model = GLFERNet(self.config).to(self.device)
        self._fresh_distance_head = False  # set by _initialise when the initial weights lack the distance head
        self.init_provenance = None if train.init_weights is None else self._initialise(Path(train.init_weights))
        self.loss_fn = SELDLoss(train.sed_weight, train.doa_loss, train.distance_weight)
        # Only the training forward is compiled (fixed batch shape, training mode); validation runs eager.
        self._train_logits = torch.compile(self.model.logits) if train.compile else self.model.logits
        self.augment = None if train.augment is None else SELDAugment(train.augment, self.config.features.channel_order)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
        self.scheduler = cosine_scheduler(self.optimizer, train.epochs * self.steps_per_epoch, train.min_lr)
        self.epoch = 0  # finished epochs
        self.best_epoch = 0
        self.best_seld = math.inf
        self.history: list[dict[str, Any]] = []
        self.data_root = Path(data_root)

    # -- paths ---------------------------------------------------------------------------------
    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.safetensors"

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.safetensors"

    @property
    def state_path(self) -> Path:
        return self.out_dir / "last_state.safetensors"

    # -- the run -------------------------------------------------------------------------------
    def fit(self, resume: bool = False, stop_after: int | None = None) -> TrainResult:
        """Train until ``epochs`` (or the time budget, or epoch ``stop_after`` of the same schedule);
        ``resume`` continues from ``last.safetensors``."""
        start = time.monotonic()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self.load_last()
            self.log(f"resumed after epoch {self.epoch} (best epoch {self.best_epoch}, SELD {self.best_seld:.4f})")
        elif self.last_path.exists() or self.best_path.exists():
            raise InputError(f"{self.out_dir} already holds a training run; pass --resume to continue it or choose another --out")
        else:
            self._describe()
            if self.init_provenance is None:
                self.fit_statistics()
            else:
                self.log(f"initialised from {self.train_cfg.init_weights} (sha256 {self.init_provenance['sha256'][:12]}); "
                         "standardization statistics kept from it")
                if self._fresh_distance_head:
                    self.log("the initial weights have no distance head: it starts from a fresh initialisation")
        stopped_early = False
        durations: list[float] = []
        last = self.train_cfg.epochs if stop_after is None else min(stop_after, self.train_cfg.epochs)
        for epoch in range(self.epoch + 1, last + 1):
            if self._out_of_time(start, durations):
                stopped_early = True
                self.log(f"stopping before epoch {epoch}: --max-minutes {self.train_cfg.max_minutes} would be exceeded")
                break
            t0 = time.monotonic()
            self.run_epoch(epoch)
            durations.append(time.monotonic() - t0)
        return TrainResult(self.best_path, self.last_path, self.history, self.best_epoch, stopped_early)

    def _describe(self) -> None:
        n_params = sum(p.numel() for p in self.model.parameters())
        self.log(
            f"preset {self.config.name}: {n_params} parameters; {len(self.train_set.recordings)} training files "
            f"({len(self.train_set)} segments, {self.steps_per_epoch} steps/epoch), "
            f"{0 if self.val_set is None else len(self.val_set.recordings)} validation files; device {self.device}"
        )

    def _initialise(self, path: Path) -> dict[str, Any]:
        """Load ``path``'s tensors (statistics included) into the model; returns their provenance.

        Weights without the distance head initialise a distance model too: every tensor they have is
        loaded and the distance head keeps its fresh initialisation."""
        init = load_model(path)
        adds_distance = self.config.model.distance and not init.config.model.distance
        for part in ("model", "features"):
            theirs = getattr(init.config, part)
            if part == "model" and adds_distance:
                theirs = dataclasses.replace(theirs, distance=True)
            if theirs != getattr(self.config, part):
                raise InputError(
                    f"{path} holds a '{init.config.name}' network whose {part} settings differ from preset "
                    f"'{self.config.name}'; omit --preset to train with the weights' own"
                )
        missing, unexpected = self.model.load_state_dict(init.state_dict(), strict=not adds_distance)
        if [k for k in missing if not k.startswith("decoder.distance_head.")] or unexpected:
            raise ArtifactError(f"{path}: tensors missing {missing} or unexpected {unexpected} for a distance model")
        self._fresh_distance_head = adds_distance
        return parent_record(path)

    def fit_statistics(self) -> None:
        """Fit the frontend's standardization statistics on the training split (whole files)."""
        t0 = time.monotonic()
        mean, std = fit_standardization(self._training_features())
        self.model.frontend.set_statistics(mean, std)
        self.log(f"standardization statistics fitted on the training split in {time.monotonic() - t0:.1f} s")

    def _training_features(self) -> Iterator[np.ndarray]:
        """Unstandardized features (7, T, F) of every training file, in chunks of up to a minute."""
        chunk = int(_STATS_CHUNK_S * self.config.features.sample_rate)
        with torch.no_grad():
            for index, rec in enumerate(self.train_set.recordings):
                for s in range(0, rec.n_samples, chunk):
                    audio = self.train_set.read_audio(index, s, min(chunk, rec.n_samples - s))
                    feats = self.model.frontend.linspeciv(torch.from_numpy(audio)[None].to(self.device))
                    yield feats[0].cpu().numpy()

    def _out_of_time(self, start: float, durations: list[float]) -> bool:
        if self.train_cfg.max_minutes is None:
            return False
        expected = np.mean(durations) if durations else 0.0
        return time.monotonic() - start + expected > 60.0 * self.train_cfg.max_minutes

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        """Train one epoch, validate, update best/last checkpoints and the history; returns the history entry."""
        t0 = time.monotonic()
        lr = self.optimizer.param_groups[0]["lr"]
        train_terms = self.train_epoch(epoch)
        entry: dict[str, Any] = {"epoch": epoch, "lr": lr, "train": train_terms}
        seld = None
        if self.val_set is not None:
            entry["val"] = self.validate()
            seld = entry["val"][self.average]["SELD"]
        entry["seconds"] = round(time.monotonic() - t0, 2)
        self.epoch = epoch
        improved = seld is None or seld < self.best_seld  # without validation the latest weights are the best
        if improved:
            self.best_epoch = epoch
            self.best_seld = math.inf if seld is None else seld
            save_weights(self.model, self.best_path, extra_metadata={md.KEY_TRAINING: self._provenance(entry)})
        entry["best"] = improved
        self.history.append(entry)
        self.save_last()
        write_text_atomic(self.out_dir / "history.json", json.dumps(self.history, indent=1) + "\n")
        self.log(_summary(entry, self.train_cfg.epochs, self.average))
        return entry

    @property
    def _loader_options(self) -> dict[str, Any]:
        return {"num_workers": self.train_cfg.workers, "pin_memory": self.device.type == "cuda"}

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the shuffled training segments; returns the mean loss terms."""
        self.model.train()
        torch.manual_seed(_seed(self.train_cfg.seed, epoch, 0))  # dropout
        order = torch.Generator().manual_seed(_seed(self.train_cfg.seed, epoch, 1))
        aug = torch.Generator().manual_seed(_seed(self.train_cfg.seed, epoch, 2))
        self.train_set.set_epoch(epoch)
        loader = DataLoader(self.train_set, batch_size=self.train_cfg.batch_size, shuffle=True, drop_last=True,
                            generator=order, **self._loader_options)
        # Loss terms stay on the device until the epoch ends: reading one each step would make the host wait
        # for the GPU, so it could not prepare the next batch meanwhile.
        names = _term_names(self.config.model.distance)
        sums = torch.zeros(len(names), dtype=torch.float64, device=self.device)
        bar = tqdm(loader, total=self.steps_per_epoch, desc=f"epoch {epoch}/{self.train_cfg.epochs}",
                   disable=not self.progress, leave=False, unit="step")
        for step, (audio, sed, doa, *distance) in enumerate(bar):
            terms = self.train_step(audio, sed, doa, aug, *distance)
            sums += torch.stack(tuple(terms)).double()
            if self.progress and step % _PROGRESS_EVERY == 0:
                bar.set_postfix(loss=f"{float(terms.total):.4f}")
        means = (sums / self.steps_per_epoch).tolist()
        if not all(map(math.isfinite, means)):
            raise GlferError(f"training diverged (mean loss {means[0]}); lower --lr or check the dataset for silent/clipped files")
        return dict(zip(names, means))

    def train_step(
        self, audio: torch.Tensor, sed: torch.Tensor, doa: torch.Tensor, g: torch.Generator,
        distance: torch.Tensor | None = None,
    ) -> LossTerms | DistanceLossTerms:
        """One optimizer step on a batch of audio (B, 4, N) and label-rate targets (``distance`` (B, T, C) metres
        for a distance model); returns the loss terms."""
        audio, sed, doa = (t.to(self.device, non_blocking=True) for t in (audio, sed, doa))
        if self.augment is not None:
            # rotations and reflections of the sound field move the DOA only: distances need no transform
            audio, doa = self.augment.audio(audio, doa, g)
        with torch.no_grad():
            feats = self.model.frontend(audio)
            if self.augment is not None:
                feats = self.augment.features(feats, g)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.train_cfg.bf16):
            sed_logits, doa_pred, *dist_pred = self._train_logits(feats)
        if dist_pred and distance is None:
            raise InputError("a distance model needs distance targets; the dataset yields them for this config")
        dist = (dist_pred[0].float(), distance.to(self.device, non_blocking=True)) if dist_pred else ()
        terms = self.loss_fn(sed_logits.float(), doa_pred.float(), sed, doa, *dist)
        self.optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        self.optimizer.step()
        self.scheduler.step()
        return type(terms)(*(t.detach() for t in terms))

    # -- validation ----------------------------------------------------------------------------
    def validate(self) -> dict[str, Any]:
        """Loss and DCASE metrics (the configured averaging, plus micro) on the validation split."""
        outputs, terms = predict(self.model, self.val_set, self.train_cfg.batch_size, self.device, self.loss_fn,
                                 **self._loader_options)
        averages = [self.average] + (["micro"] if self.average != "micro" else [])
        result: dict[str, Any] = dict(terms)
        for average in averages:
            result[average] = score_predictions(self.val_set, outputs, average).scores()
        if self.config.model.distance:
            result["2024"] = score_predictions(self.val_set, outputs, "macro", edition="2024").scores()
        return result

    # -- checkpoints ---------------------------------------------------------------------------
    def _provenance(self, entry: dict[str, Any]) -> dict[str, Any]:
        return {
            "epoch": entry["epoch"], "metrics": entry.get("val"), "train_loss": entry["train"]["loss"],
            "data": self.data_root.resolve().name, "layout": self.train_set.layout.name,
            "train_files": len(self.train_set.recordings),
            "val_files": 0 if self.val_set is None else len(self.val_set.recordings),
            "recipe": self.train_cfg.to_dict(), "torch": torch.__version__,
            **({} if self.init_provenance is None else {"init_weights": self.init_provenance}),
        }

    def save_last(self) -> None:
        """``last_state`` first, then ``last``: both carry the epoch, so a torn pair is detected on resume."""
        tensors, opt_meta = _flatten_optimizer(self.optimizer.state_dict())
        state = {
            "epoch": self.epoch, "best_epoch": self.best_epoch, "best_seld": self.best_seld,
            "optimizer": opt_meta, "scheduler": self.scheduler.state_dict(), "recipe": self.train_cfg.to_dict(),
            "init_weights": self.init_provenance,
        }
        with atomic_path(self.state_path) as tmp:
            save_file(tensors, str(tmp), metadata={_STATE_KEY: json.dumps(state)})
        # The last epoch's provenance too: a last checkpoint is what weight averaging and later
        # fine-tunes start from, and a file should say where it came from.
        provenance = {md.KEY_TRAINING: self._provenance(self.history[-1])} if self.history else {}
        save_weights(self.model, self.last_path, extra_metadata={_STATE_KEY: {"epoch": self.epoch}, **provenance})

    def load_last(self) -> None:
        """Restore weights, optimizer, scheduler, epoch, best-so-far and history from the output folder."""
        if not self.last_path.is_file() or not self.state_path.is_file():
            raise InputError(f"nothing to resume in {self.out_dir}: no last.safetensors/last_state.safetensors; drop --resume")
        model = load_model(self.last_path, config=self.config)
        self.model.load_state_dict(model.state_dict())
        with safe_open(str(self.state_path), framework="pt") as f:
            state = json.loads(f.metadata()[_STATE_KEY])
        weights_epoch = json.loads(read_metadata(self.last_path).get(_STATE_KEY, "{}")).get("epoch")
        if weights_epoch != state["epoch"]:
            raise ArtifactError(
                f"{self.last_path} (epoch {weights_epoch}) and {self.state_path} (epoch {state['epoch']}) disagree; "
                "the last save was interrupted: start again without --resume"
            )
        self.optimizer.load_state_dict(_unflatten_optimizer(load_file(str(self.state_path)), state["optimizer"]))
        self.scheduler.load_state_dict(state["scheduler"])  # the step count; the curve follows this run's --epochs
        # The restored optimizer holds the last lr of the saved run's curve; with a longer --epochs (a warm
        # restart) the first step must already take the new curve's value, as every later step does.
        for group, base, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas):
            group["lr"] = base * factor(self.scheduler.last_epoch)
        self.epoch, self.best_epoch, self.best_seld = state["epoch"], state["best_epoch"], state["best_seld"]
        self._restore_init_provenance(state)
        history_path = self.out_dir / "history.json"
        history = json.loads(history_path.read_text()) if history_path.is_file() else []
        self.history = [h for h in history if h["epoch"] <= self.epoch]

    def _restore_init_provenance(self, state: dict[str, Any]) -> None:
        """A resumed fine-tune keeps naming its parent weights, with or without --init-weights again."""
        if "init_weights" not in state:  # saved before runs recorded their parent
            return
        recorded = state["init_weights"]
        if self.init_provenance is None:
            if recorded is not None:
                self.init_provenance = recorded
                self.train_cfg = dataclasses.replace(self.train_cfg, init_weights=state["recipe"]["init_weights"])
        elif recorded is None or recorded["sha256"] != self.init_provenance["sha256"]:
            parent = "a random initialisation" if recorded is None else (
                f"{recorded['file']} (sha256 {recorded['sha256'][:12]})")
            raise InputError(f"{self.out_dir} was trained from {parent}, not {self.train_cfg.init_weights}; "
                             "drop --init-weights to resume it")

    def log(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        with open(self.out_dir / "train.log", "a", encoding="utf-8") as f:
            f.write(line + "\n")
        if self.progress:
            tqdm.write(message)


def score_predictions(
    dataset: SELDDataset, outputs: list[tuple[np.ndarray, ...]], average: str, threshold: float | None = None,
    doa_smoothing: int | None = None, *, edition: str | None = None,
) -> SELDResult:
    """Official SELD metrics of ``predict``'s outputs against the dataset's labels, decided at ``threshold``
    with ``doa_smoothing`` (default: the config's).

    ``edition`` defaults to the layout's; ``"2024"`` scores a distance model's outputs (sed, doa, distance)
    with the DCASE 2024 metrics: each predicted row carries the distance output of its own frame and
    class, each reference row its metadata distance in metres (the layout's ``distance_scale``)."""
    config, fs = dataset.config, dataset.config.features.sample_rate
    edition = dataset.layout.edition if edition is None else edition
    metrics = SELDMetrics(config.model.num_classes, edition=edition, average=average)
    with_distance = edition == "2024"
    if with_distance and (dataset.layout.distance_scale is None or any(len(out) < 3 for out in outputs)):
        raise InputError("DCASE 2024 scoring needs a distance model's outputs and a layout with distances")
    for rec, (sed, doa, *distance) in zip(dataset.recordings, outputs):
        if rec.rows or rec.last_frame is not None:  # the official scorer cannot score an empty file
            rows = outputs_to_rows(sed, doa, config, threshold=threshold, doa_smoothing=doa_smoothing,
                                   duration=rec.n_samples / fs, distance=distance[0] if with_distance else None)
            ref = _reference_metres(rec.rows, dataset.layout.distance_scale) if with_distance else rec.rows
            metrics.update(ref, rows, ref_last_frame=rec.last_frame)
    return metrics.compute()


def _reference_metres(rows: tuple[LabelRow, ...], scale: float) -> list[LabelRow]:
    """Reference rows with their metadata distances in metres."""
    return [r if r.distance is None or scale == 1.0 else dataclasses.replace(r, distance=r.distance * scale) for r in rows]


def predict(
    model: GLFERNet, dataset: SELDDataset, batch_size: int, device: torch.device, loss_fn: SELDLoss | None = None,
    **loader_options: Any,
) -> tuple[list[tuple[np.ndarray, ...]], dict[str, float]]:
    """Per-recording SED probabilities (T', C) and DOA (T', C, 3) at the output rate (a distance model adds
    its distance (T', C) in metres), joined from contiguous evaluation segments, plus the mean loss terms
    when ``loss_fn`` is given."""
    model.eval()
    per_segment: list[tuple[np.ndarray, ...]] = []
    names = _term_names(model.config.model.distance)
    sums, n_batches = np.zeros(len(names)), 0
    with torch.no_grad():
        for audio, sed, doa, *distance in DataLoader(dataset, batch_size=batch_size, shuffle=False, **loader_options):
            sed_logits, *rest = model.logits(model.frontend(audio.to(device)))
            if loss_fn is not None:
                if len(distance) != len(rest) - 1:
                    raise InputError("the model's distance head and the dataset's distance targets disagree")
                dist = (rest[1], distance[0].to(device)) if distance else ()
                sums += [float(t) for t in loss_fn(sed_logits, rest[0], sed.to(device), doa.to(device), *dist)]
                n_batches += 1
            per_segment += list(zip(torch.sigmoid(sed_logits).cpu().numpy(), *(r.cpu().numpy() for r in rest)))
    parts: list[list[tuple[np.ndarray, ...]]] = [[] for _ in dataset.recordings]
    for (rec_index, _), out in zip(dataset.segments, per_segment):  # contiguous segments, in order
        parts[rec_index].append(out)
    outputs = [tuple(np.concatenate(arrays) for arrays in zip(*ps)) for ps in parts]
    terms = dict(zip(names, (sums / max(n_batches, 1)).tolist())) if loss_fn is not None else {}
    return outputs, terms


def _term_names(distance: bool) -> tuple[str, ...]:
    return ("loss", "sed", "doa", "distance") if distance else ("loss", "sed", "doa")


def _summary(entry: dict[str, Any], epochs: int, average: str) -> str:
    t = entry["train"]
    dist = f", distance {t['distance']:.4f}" if "distance" in t else ""
    text = f"epoch {entry['epoch']}/{epochs}: train loss {t['loss']:.4f} (sed {t['sed']:.4f}, doa {t['doa']:.4f}{dist})"
    if "val" in entry:
        v, m = entry["val"], entry["val"][average]
        text += (
            f"; val loss {v['loss']:.4f}, {average} ER20 {m['ER20']:.3f} F20 {m['F20']:.3f} "
            f"LE_CD {m['LE_CD']:.1f} LR_CD {m['LR_CD']:.3f} SELD {m['SELD']:.4f}"
        )
        if "2024" in v:
            d = v["2024"]
            text += (f"; distance {v['distance']:.4f}, 2024 F20 {d['F20']:.3f} AE_CD {d['AE_CD']:.1f} "
                     f"RDE_CD {d['RDE_CD']:.3f}")
    return text + f"; {entry['seconds']:.0f} s" + (" *best*" if entry["best"] else "")


def _device(name: str) -> torch.device:
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise InputError(f"unknown device {name!r}; use cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("CUDA is not available to torch on this machine; use --device cpu")
    return torch.device(name)


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state -> flat tensors ``state.<param>.<name>`` + JSON-able rest (param groups, scalars)."""
    tensors, scalars = {}, {}
    for index, param_state in state_dict["state"].items():
        for name, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in meta["scalars"].items()}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}
