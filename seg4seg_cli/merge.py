"""`seg4seg merge`: combine the shard files of a sharded run into one out folder.

Sharded `predict` and `features` write `shards/embeddings-part-KKKKK-of-NNNNN.parquet` and
`shards/part-KKKKK-of-NNNNN.parquet` (and one run record per part). Merging checks that every part
0..N-1 is there and that every case occurs exactly once, then writes `embeddings.parquet`,
`cases.parquet` and the `merge` step of `run.json`, so that `discover` and `report` run on one node
exactly as after an unsharded run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from seg4seg_cli import atomic
from seg4seg_cli.errors import DataError
from seg4seg_cli.run_record import read_record, write_step

_PART = re.compile(r"^(?P<kind>embeddings-)?part-(?P<part>\d{5})-of-(?P<parts>\d{5})\.parquet$")
_COMMANDS = {"": "features", "embeddings-": "predict"}


@dataclass
class MergeResult:
    out: Path
    num_parts: int
    n_cases: int = 0
    n_embeddings: int = 0
    written: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _shards(out: Path, kind: str) -> tuple[int, dict[int, Path]]:
    """(number of parts, {part: file}) of one kind of shard; (0, {}) when there is none."""
    found: dict[int, Path] = {}
    counts = set()
    for path in sorted((out / "shards").glob("*.parquet")):
        match = _PART.match(path.name)
        if match and (match["kind"] or "") == kind:
            found[int(match["part"])] = path
            counts.add(int(match["parts"]))
    if len(counts) > 1:
        raise DataError(
            f"{out}/shards mixes runs split into {sorted(counts)} parts; delete the shards of the old split"
        )
    return (counts.pop() if counts else 0), found


def _merge_kind(out: Path, kind: str, destination: Path) -> tuple[int, int]:
    """Concatenate one kind of shard; returns (number of parts, number of rows)."""
    num_parts, found = _shards(out, kind)
    if not found:
        return 0, 0
    command = _COMMANDS[kind]
    missing = [k for k in range(num_parts) if k not in found]
    if missing:
        names = ", ".join(f"shards/{kind}part-{k:05d}-of-{num_parts:05d}.parquet" for k in missing)
        raise DataError(
            f"{out} lacks {names}; run seg4seg {command} --num-parts {num_parts} --part-id {missing[0]} "
            "(and the other missing parts) into it first"
        )
    tables, owner = [], {}
    for part in range(num_parts):
        table = pq.read_table(found[part])
        for case_id in table.column("case_id").to_pylist():
            if case_id in owner:
                raise DataError(
                    f"case {case_id!r} occurs in both {found[owner[case_id]].name} and {found[part].name}; "
                    "the shards come from different splits: delete them and rerun every part"
                )
            owner[case_id] = part
        if tables and not table.schema.equals(tables[0].schema, check_metadata=False):
            raise DataError(
                f"{found[part].name} has other columns than {found[0].name}; the parts were made with "
                "different settings or data: rerun every part"
            )
        tables.append(table)
    merged = pa.concat_tables(tables).sort_by("case_id").combine_chunks()
    merged = merged.replace_schema_metadata(tables[0].schema.metadata)
    with atomic.atomic_path(destination) as tmp:
        pq.write_table(merged, tmp)
    return num_parts, merged.num_rows


def run_merge(out: Path) -> MergeResult:
    out = Path(out)
    if not (out / "shards").is_dir():
        raise DataError(
            f"{out}/shards does not exist; nothing to merge (run predict/features with --num-parts)"
        )
    parts_embeddings, n_embeddings = _merge_kind(out, "embeddings-", out / "embeddings.parquet")
    parts_cases, n_cases = _merge_kind(out, "", out / "cases.parquet")
    if not parts_cases and not parts_embeddings:
        raise DataError(
            f"{out}/shards holds no part-KKKKK-of-NNNNN.parquet files; nothing to merge"
        )
    result = MergeResult(out, max(parts_cases, parts_embeddings), n_cases, n_embeddings)
    result.written = [
        p
        for p, n in (
            (out / "embeddings.parquet", parts_embeddings),
            (out / "cases.parquet", parts_cases),
        )
        if n
    ]

    steps: dict[str, dict] = {}
    for record_file in sorted((out / "shards").glob("run-part-*.json")):
        for step, section in read_record(record_file).get("steps", {}).items():
            merged = steps.setdefault(step, {"parts": [], "cases_done": {}, "cases_skipped": {}})
            merged["parts"].append(record_file.name)
            done = section.get("cases_done", {})
            merged["cases_done"].update(done if isinstance(done, dict) else dict.fromkeys(done, {}))
            merged["cases_skipped"].update(section.get("cases_skipped", {}))
            merged.setdefault("settings", section.get("settings"))
    for step, section in steps.items():
        result.skipped.update(section["cases_skipped"])
        write_step(out / "run.json", step, section)
    write_step(
        out / "run.json",
        "merge",
        {
            "num_parts": result.num_parts,
            "cases": n_cases,
            "embeddings": n_embeddings,
            "written": [str(p) for p in result.written],
        },
    )
    return result
