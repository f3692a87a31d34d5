"""Per-case metadata from a CSV file (site, scanner, age...), joined on `case_id`.

Columns become `meta_<name>`. Case ids on one side only are reported, never silently dropped;
a duplicate id is an error, since it is ambiguous which row is meant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from seg4seg_cli.errors import DataError

PREFIX = "meta_"


@dataclass
class Metadata:
    """Metadata rows by case id, and the id mismatches found when joining."""

    table: pa.Table  # case_id first, then meta_* columns
    missing: list[str] = field(default_factory=list)  # cases without a metadata row
    extra: list[str] = field(default_factory=list)  # metadata rows matching no case

    @property
    def columns(self) -> list[str]:
        return self.table.column_names[1:]


def read_metadata(path: Path) -> pa.Table:
    """The CSV as a table: `case_id` (string) then `meta_` columns with inferred types."""
    path = Path(path)
    try:
        table = pacsv.read_csv(
            path, convert_options=pacsv.ConvertOptions(column_types={"case_id": pa.string()})
        )
    except FileNotFoundError as exc:
        raise DataError(f"--metadata {path} does not exist") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(
            f"cannot read --metadata {path} as CSV ({str(exc).splitlines()[0]}); check the file"
        ) from exc
    if "case_id" not in table.column_names:
        raise DataError(
            f"--metadata {path} has no case_id column (columns: {', '.join(table.column_names)})"
        )
    ids = table.column("case_id").to_pylist()
    if None in ids:
        raise DataError(
            f"--metadata {path} has a row with an empty case_id (row {ids.index(None) + 2})"
        )
    seen: dict[str, int] = {}
    for row, case_id in enumerate(ids, start=2):
        if case_id in seen:
            raise DataError(
                f"--metadata {path} lists case {case_id!r} twice (rows {seen[case_id]} and {row}); keep one row per case"
            )
        seen[case_id] = row
    names = ["case_id"] + [f"{PREFIX}{name}" for name in table.column_names if name != "case_id"]
    others = [table.column(n) for n in table.column_names if n != "case_id"]
    return pa.table([table.column("case_id"), *others], names=names)


def join_metadata(table: pa.Table, case_ids: list[str]) -> Metadata:
    """Metadata aligned to `case_ids` (nulls where a case has no row), with the mismatches."""
    index = {case_id: i for i, case_id in enumerate(table.column("case_id").to_pylist())}
    rows = [index.get(c) for c in case_ids]
    aligned = table.take(pa.array(rows, pa.int64()))
    aligned = aligned.set_column(0, "case_id", pa.array(case_ids, pa.string()))
    missing = [c for c, r in zip(case_ids, rows, strict=True) if r is None]
    extra = sorted(set(index) - set(case_ids))
    return Metadata(aligned, missing, extra)
