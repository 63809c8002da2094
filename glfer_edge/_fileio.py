"""Output files: one policy for every verb, atomic writes and strict JSON values.

The policy (README, "Output files"): parent folders are created; an existing output is never replaced
unless the user passes ``--force``; every file is written to a temporary name and renamed into place,
so a failed command leaves no half-written result. ``--json PATH`` writes JSON to PATH, ``--json -``
to standard output.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from glfer_edge.errors import InputError

STDOUT = "-"


def add_force_argument(parser: Any) -> None:
    """The ``--force`` flag of every verb that writes files."""
    parser.add_argument("--force", action="store_true", help="replace existing output files")


def add_json_argument(parser: Any, what: str = "the results") -> None:
    """The ``--json PATH`` option of every verb (``-``: standard output)."""
    parser.add_argument("--json", metavar="PATH", help=f"write {what} as JSON to PATH ('-': standard output)")


def check_output(path: str | Path | None, force: bool, flag: str = "--out", folder: bool = False) -> None:
    """Refuse an output that exists (unless ``force``) or has the wrong kind, before any work is done."""
    if path is None or str(path) == STDOUT:
        return
    path = Path(path)
    if folder:  # the files a verb writes into it are checked one by one
        if path.exists() and not path.is_dir():
            raise InputError(f"{flag} {path} is a file; give a folder name")
        return
    if path.is_dir():
        raise InputError(f"{flag} {path} is a folder; give a file name")
    if path.exists() and not force:
        raise InputError(f"{flag} {path} exists; pass --force to replace it, or choose another name")


def write_json(path: str | Path, value: Any) -> None:
    """Strict JSON (NaN/inf as null) to ``path``, atomically, or to standard output for ``-``."""
    import json
    import sys

    text = json.dumps(json_safe(value), indent=2, default=str) + "\n"
    if str(path) == STDOUT:
        sys.stdout.write(text)
    else:
        write_text_atomic(path, text)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; results are ordinary files
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def json_safe(value: Any) -> Any:
    """Nested dicts/lists with NaN and infinities replaced by None (no active cell, no scorable scene):
    strict JSON that every parser reads."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
