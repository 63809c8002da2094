"""``glfer-edge synth``: write synthetic FOA scenes with DCASE labels (glfer_edge.data.synth)."""

from __future__ import annotations

import argparse
from pathlib import Path

from glfer_edge._fileio import add_force_argument, check_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="dataset folder (foa_dev/ and metadata_dev/ go here)")
    parser.add_argument("--n-scenes", type=int, required=True, help="number of scenes to write")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per scene (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="scene i of seed K is the same whatever --n-scenes")
    parser.add_argument("--max-polyphony", type=int, default=3, help="most overlapping events (default 3)")
    parser.add_argument("--split", default="train", help="split folder name (default train)")
    parser.add_argument("--dry", action="store_true", help="no room reverberation (direct sound and noise only)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes that write scenes (default 1); the files do not depend on it")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_force_argument(parser)


def run(args: argparse.Namespace) -> int:
    from glfer_edge.data.synth import SceneConfig, write_dataset
    from glfer_edge.errors import InputError

    check_output(args.out, args.force, folder=True)
    split = args.out / "foa_dev" / args.split
    if split.is_dir() and any(split.iterdir()) and not args.force:
        raise InputError(f"--out {args.out} already holds split {args.split!r}; pass --force to replace its scenes, "
                         "or choose another --split or folder")

    config = SceneConfig(duration_s=args.duration, max_polyphony=args.max_polyphony, reverb=not args.dry)
    pairs = write_dataset(args.out, args.n_scenes, config, args.seed, split=args.split, progress=not args.quiet,
                          workers=args.workers)
    print(f"wrote {len(pairs)} scenes of {args.duration:g} s to {args.out / 'foa_dev' / args.split}")
    return 0
