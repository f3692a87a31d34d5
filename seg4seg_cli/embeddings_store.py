"""Per-case embeddings: a resumable per-case cache and the `embeddings.parquet` file.

`embeddings.parquet` has one row per case: `case_id` (string), `embedding`
(`fixed_size_list<float32>[d]`) and `source` (what produced it), sorted by case id. A model's
embeddings say in the file's metadata (`blocks`) which dimensions come from which encoder stage
and pooling. While a run
is going, each finished case's vector sits in `OUT/partial/embeddings/CASE.npy`, so that a killed
run loses nothing; the Parquet file is assembled from those at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seg4seg_cli import atomic

SCHEMA_VERSION = 1


class EmbeddingCache:
    """The folder of per-case embedding vectors of an out folder."""

    def __init__(self, out: Path) -> None:
        self.folder = self.folder_of(out)

    @staticmethod
    def folder_of(out: Path) -> Path:
        return Path(out) / "partial" / "embeddings"

    def path(self, case_id: str) -> Path:
        return self.folder / f"{case_id}.npy"

    def write(self, case_id: str, embedding: np.ndarray) -> None:
        with atomic.atomic_path(self.path(case_id)) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, np.asarray(embedding, dtype=np.float32))

    def read(self, case_id: str) -> np.ndarray:
        return np.load(self.path(case_id))


def embeddings_schema(width: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("case_id", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), width), nullable=False),
            pa.field("source", pa.string(), nullable=False),
        ]
    )


def write_embeddings(
    path: Path,
    case_ids: list[str],
    vectors: list[np.ndarray],
    source: str,
    extra_metadata: dict[str, object] | None = None,
) -> None:
    """Write one row per case, sorted by case id, atomically. All vectors must have one width."""
    order = np.argsort(np.asarray(case_ids, dtype=object), kind="stable")
    matrix = np.stack([np.asarray(vectors[i], dtype=np.float32) for i in order])
    width = matrix.shape[1]
    metadata = {"schema_version": str(SCHEMA_VERSION), "source": source, **(extra_metadata or {})}
    schema = embeddings_schema(width).with_metadata(
        {b"seg4seg": json.dumps(metadata, sort_keys=True).encode()}
    )
    table = pa.table(
        {
            "case_id": pa.array([case_ids[i] for i in order], pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(matrix.ravel(), pa.float32()), width
            ),
            "source": pa.array([source] * len(order), pa.string()),
        },
        schema=schema,
    )
    with atomic.atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_embeddings(path: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """(case_ids, embedding matrix `(n_cases, d)` float32, sources) from an embeddings file."""
    table = pq.read_table(path)
    column = table.column("embedding").combine_chunks()
    width = column.type.list_size
    matrix = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, width).astype(np.float32)
    return table.column("case_id").to_pylist(), matrix, table.column("source").to_pylist()


def read_embedding_blocks(path: Path) -> list[dict] | None:
    """The layout of an embeddings file (`blocks` of its metadata), or None when it has none
    (image descriptors, files written before the layout was recorded)."""
    metadata = pq.read_schema(path).metadata or {}
    try:
        blocks = json.loads(metadata[b"seg4seg"]).get("blocks")
    except (KeyError, ValueError, AttributeError):
        return None
    return blocks if isinstance(blocks, list) and blocks else None


def bottleneck_mean(matrix: np.ndarray, blocks: list[dict] | None) -> np.ndarray:
    """The mean-pooled block of the last (deepest) module, the embedding seg4seg recorded before
    2026-12-03; the whole matrix when the layout is unknown."""
    if not blocks:
        return matrix
    last = blocks[-1]["module"]
    block = next(b for b in blocks if b["module"] == last and b["pooling"] == "mean")
    return matrix[:, block["start"] : block["start"] + block["width"]]
