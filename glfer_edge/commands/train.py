"""``glfer-edge train``: train GLFER-Net on a DCASE-layout dataset with the paper's recipe."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder with foa_dev/<split>/*.wav and metadata_dev/<split>/*.csv")
    parser.add_argument("--preset", default=None,
                        help="model preset (tiny, paper, ...; see glfer-edge info); default tiny, or the --init-weights' "
                             "own, or with --resume the run's own")
    parser.add_argument("--init-weights", default=None, metavar="WEIGHTS",
                        help="start from these .safetensors weights instead of a random initialisation (fine-tuning); "
                             "their preset, decision settings and standardization statistics are kept")
    parser.add_argument("--layout", default="synth", choices=("synth", "dcase2021", "starss23"),
                        help="dataset layout: class list, CSV edition and split names (default synth)")
    parser.add_argument("--out", default="runs/train", help="output folder (default runs/train)")
    parser.add_argument("--epochs", type=int, default=50, help="epochs (default 50, the paper's)")
    parser.add_argument("--batch-size", type=int, default=8, help="segments per batch (default 8)")
    parser.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate, cosine-annealed per step (default 3e-4)")
    parser.add_argument("--seed", type=int, default=2021, help="seed of initialisation, shuffling and augmentation")
    parser.add_argument("--train-split", default="train", help="split(s) to train on (default train)")
    parser.add_argument("--val-split", default="val", help="split to validate on each epoch; 'none' to skip (default val)")
    parser.add_argument("--train-hop", type=float, default=None,
                        help="seconds between training segments of long files (default: the segment length)")
    parser.add_argument("--sed-weight", type=float, default=0.3,
                        help="lambda: weight of the SED BCE against the DOA regression (default 0.3, the paper's)")
    parser.add_argument("--doa-loss", choices=("mse", "mae"), default="mse", help="masked DOA regression loss (default mse)")
    parser.add_argument("--distance", action="store_true",
                        help="add the class-wise source-distance head (DCASE 2024 3D SELD) to a fresh preset or to "
                             "--init-weights without one (their tensors loaded, the head new); needs metadata distances")
    parser.add_argument("--distance-weight", type=float, default=1.0,
                        help="weight of the masked relative distance error |d_hat - d| / d in the loss of a distance "
                             "model (default 1.0)")
    parser.add_argument("--no-augment", action="store_true", help="disable channel swap, frequency shift and cutout")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); use 1 when other jobs share the cores")
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader processes reading the audio (default 0: in the training process); "
                             "the batches do not depend on it. On a GPU the reads bound an epoch: try 4-8 with --in-memory")
    parser.add_argument("--in-memory", action="store_true",
                        help="read the training and validation audio into RAM once (1.4 GB per hour of audio) "
                             "instead of each segment from disk; the batches are the same")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the training forward (faster steps after a compile of a few minutes)")
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 autocast for the training forward (weights, optimizer and validation stay FP32); "
                             "faster steps on CPUs with native bf16 (AVX512-BF16, AMX) and on GPUs, slower on others")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.safetensors")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop before an epoch that would end after this many minutes (resume later)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines (train.log still written)")
    parser.add_argument("--force", action="store_true", help="train into an --out folder that holds another run")


def run(args: argparse.Namespace) -> int:
    from glfer_edge.config import get_preset
    from glfer_edge.errors import InputError, require

    require("torch", "torch", "training")
    from glfer_edge.training import AugmentConfig, TrainConfig, Trainer

    try:
        config = get_preset(args.preset or "tiny")
    except ValueError as exc:
        raise InputError(str(exc)) from None
    # A resumed run continues with its own config, a fine-tune starts with its weights' (decision settings
    # included); a --preset beside either must name the same network.
    last = Path(args.out) / "last.safetensors"
    if last.is_file() and not (args.resume or args.force):
        raise InputError(f"--out {args.out} holds another training run; pass --resume to continue it, --force to "
                         "replace it, or choose another folder")
    source = last if args.resume and last.is_file() else args.init_weights
    if source is not None:
        from glfer_edge.weights import read_config

        preset, config = config, read_config(source)
        # the distance head is no part of the comparison: --distance adds it below, a distance run resumes with it
        own = dataclasses.replace(config.model, distance=preset.model.distance)
        if args.preset is not None and (preset.model, preset.features) != (own, config.features):
            raise InputError(f"{source} holds a '{config.name}' network, not '{preset.name}'; omit --preset")
    if args.distance and not config.model.distance:
        if source is not None and source == last:
            raise InputError(f"{last} is a run without the distance head; resume it without --distance, or start a "
                             "distance run in another --out with --init-weights " + str(last))
        config = config.replace(model=dataclasses.replace(config.model, distance=True))
    recipe = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, sed_weight=args.sed_weight, doa_loss=args.doa_loss,
        augment=None if args.no_augment else AugmentConfig(), layout=args.layout,
        distance_weight=args.distance_weight, train_split=args.train_split,
        val_split=None if args.val_split.lower() == "none" else args.val_split,
        train_hop_seconds=args.train_hop, seed=args.seed, init_weights=args.init_weights, device=args.device,
        num_threads=args.threads, workers=args.workers,
        in_memory=args.in_memory,
        max_minutes=args.max_minutes, compile=args.compile, bf16=args.bf16,
    )
    result = Trainer(config, args.data, args.out, recipe, progress=not args.quiet).fit(resume=args.resume)
    status = "stopped by --max-minutes (continue with --resume)" if result.stopped_early else "done"
    print(f"{status}: best epoch {result.best_epoch} -> {result.best_path}; last -> {result.last_path}")
    return 0
