"""Atomic file writes: every output is written under a temporary name and renamed into place.

A killed run therefore never leaves a half-written file under a final name. Temporary names start
with a dot and keep the final name at their end, so that writers choosing a format by file ending
(SimpleITK, numpy) still see the right one, and case listings that skip dot files never read them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seg4seg_cli.errors import OutputError

TEMP_PREFIX = ".tmp-"


def temp_path_for(final_path: Path) -> Path:
    """A unique temporary path in the same folder as `final_path`, ending with its name."""
    return final_path.with_name(
        f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{final_path.name}"
    )


@contextlib.contextmanager
def atomic_path(final_path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to `final_path`, else removed."""
    final_path = Path(final_path)
    tmp = temp_path_for(final_path)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final_path)
    except OSError as exc:
        # disk full, file too large, read-only or vanished folder: the old file (if any) is intact
        raise OutputError(
            f"cannot write {final_path} ({exc.strerror or exc}); free some space or check the "
            "folder's permissions, then rerun: finished work is kept"
        ) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes(final_path: Path | str, data: bytes) -> None:
    with atomic_path(final_path) as tmp:
        tmp.write_bytes(data)


def write_json(final_path: Path | str, payload: Any) -> None:
    """Write `payload` as indented, key-sorted JSON (stable bytes for the same content)."""
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_bytes(final_path, text.encode("utf-8"))


def remove_stale_temporaries(folder: Path, older_than_s: float = 3600.0) -> int:
    """Delete temporaries a killed run left in `folder`; returns how many were removed.

    Only those untouched for `older_than_s` go: another shard may be writing into the same folder
    right now, and its temporaries are fresh.
    """
    removed = 0
    if not folder.is_dir():
        return removed
    now = time.time()
    for path in folder.glob(f"{TEMP_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):
            if now - path.stat().st_mtime > older_than_s:
                path.unlink()
                removed += 1
    return removed
