"""run.json: the provenance of an out folder, one section per pipeline step.

Each step (predict, features, ...) owns its section; writing one step keeps the others. The file is
rewritten atomically, so a killed run leaves the previous complete version.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from seg4seg_cli import atomic
from seg4seg_cli.errors import OutputError
from seg4seg_cli.provenance import command_line, tool_versions

SCHEMA_VERSION = 1


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# the file each step writes, and the prefix of its per-part twin in shards/ (merge reads these)
_PART_PREFIX = {"run.json": "run-", "embeddings.parquet": "embeddings-", "cases.parquet": ""}


def part_path(out: Path, name: str, num_parts: int, part_id: int) -> Path:
    """OUT/name for a whole run; OUT/shards/PREFIXpart-KKKKK-of-NNNNN.EXT for one part of a
    sharded run, so parts never write the same file."""
    if num_parts == 1:
        return Path(out) / name
    suffix = name.rsplit(".", 1)[1]
    return (
        Path(out) / "shards" / f"{_PART_PREFIX[name]}part-{part_id:05d}-of-{num_parts:05d}.{suffix}"
    )


def record_path(out: Path, num_parts: int, part_id: int) -> Path:
    """run.json for a whole run; one file per part when sharded."""
    return part_path(out, "run.json", num_parts, part_id)


def read_record(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(
            f"{path} is unreadable ({exc}); delete it to start this out folder afresh"
        ) from exc
    return record if isinstance(record, dict) else {}


def write_step(path: Path, step: str, section: dict[str, Any]) -> None:
    """Replace the section of `step` in the record at `path`, keeping every other step."""
    record = read_record(path)
    record["schema_version"] = SCHEMA_VERSION
    record["tool"] = "seg4seg"
    record["versions"] = tool_versions()
    record["command_line"] = command_line()
    record.setdefault("steps", {})[step] = {
        **section,
        "command_line": command_line(),
        "versions": tool_versions(),
    }
    atomic.write_json(path, record)
