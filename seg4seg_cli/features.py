"""`seg4seg features`: one row of error, uncertainty, image and metadata features per case.

Cases are computed one per worker process at a time (memory bounded by one case per worker),
each row is written at once to `partial/features/CASE.json`, and `cases.parquet` (one file per
part when sharded) is assembled from those rows at the end. A rerun reuses rows whose input files
and settings are unchanged, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seg4seg_cli import atomic, console
from seg4seg_cli.case_features import (
    DESCRIPTOR_KEY,
    IMAGE_FEATURES,
    UNCERTAINTY_FEATURES,
    FeatureCase,
    features_for_case,
)
from seg4seg_cli.cases import find_cases, read_dataset_json, resolve_part, select_part
from seg4seg_cli.embeddings_store import write_embeddings
from seg4seg_cli.errors import CaseError, OutputError, UsageError
from seg4seg_cli.labels import LabelSet, label_set_from_dataset_json
from seg4seg_cli.metadata import join_metadata, read_metadata
from seg4seg_cli.metrics import EMPTY_MASK_CONVENTIONS, METRIC_NAMES
from seg4seg_cli.run_record import now_iso, part_path, record_path, write_step

SCHEMA_VERSION = 1
# bump when a row gains or changes columns: rows cached in partial/features are then recomputed
ROW_VERSION = 2  # 2: image_noise, image_sharpness
DESCRIPTOR_SOURCE = "image_descriptor"
COUNT_METRICS = {"n_comp_ref", "n_comp_pred", "n_comp_missed", "n_comp_extra"}
SURFACE_DEFINITION = (
    "voxel boundary (MONAI, MetricsReloaded): surface voxels have a face neighbour outside the mask; "
    "Euclidean distances in mm between surface voxel centres"
)


@dataclass
class FeaturesOptions:
    """What `seg4seg features` was asked to do (flags of the same names)."""

    data: Path
    out: Path = Path("seg4seg_out")
    predictions: Path | None = None
    metadata: Path | None = None
    nsd_tol_mm: float = 1.0
    workers: int = 1
    num_parts: int | None = None
    part_id: int | None = None
    overwrite: bool = False


@dataclass
class FeaturesResult:
    out: Path
    new: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    cases_file: Path | None = None
    metadata_missing: list[str] = field(default_factory=list)
    metadata_extra: list[str] = field(default_factory=list)
    embeddings_written: bool = (
        False  # image descriptors written as embeddings (no model embeddings)
    )

    @property
    def done(self) -> list[str]:
        return sorted(self.new + self.reused)


def cases_schema(label_names: list[str], metadata_fields: list[pa.Field]) -> pa.Schema:
    """The fixed column layout of cases.parquet for a dataset's labels and metadata columns."""
    fields = [pa.field("case_id", pa.string(), nullable=False)]
    fields += [pa.field(m, pa.float64()) for m in METRIC_NAMES]
    for metric in METRIC_NAMES:
        kind = pa.int64() if metric in COUNT_METRICS else pa.float64()
        fields += [pa.field(f"{metric}__{name}", kind) for name in label_names]
    for name in label_names:
        fields += [
            pa.field(f"ref_empty__{name}", pa.bool_()),
            pa.field(f"pred_empty__{name}", pa.bool_()),
        ]
    fields += [pa.field(n, pa.float64()) for n in UNCERTAINTY_FEATURES]
    fields += [
        pa.field(n, pa.int64() if n.startswith("shape_") else pa.float64()) for n in IMAGE_FEATURES
    ]
    return pa.schema(fields + metadata_fields)


def _compute(case: FeatureCase, labels: LabelSet, nsd_tol_mm: float) -> tuple[str, object]:
    """Worker entry: ("ok", row) or ("error", reason); never raises for bad input."""
    try:
        return "ok", features_for_case(case, labels, nsd_tol_mm)
    except CaseError as exc:
        return "error", str(exc)
    except Exception as exc:  # a bug on this case: reported, the run goes on
        return "error", f"unexpected error {type(exc).__name__}: {exc}"


def _fingerprint(case: FeatureCase) -> dict[str, list]:
    """Name, size and modification time of each input, by role: the same files reached through
    another path (relative vs absolute, another mount point) still match."""
    roles = ("image", "reference", "prediction", "probabilities")
    stats = {}
    for role, path in zip(roles, case.input_files(), strict=False):
        stat = path.stat()
        stats[role] = [path.name, stat.st_size, stat.st_mtime_ns]
    return stats


class RowCache:
    """`partial/features/CASE.json`: a finished row with the settings and inputs it came from."""

    def __init__(self, out: Path, settings: dict) -> None:
        self.folder = Path(out) / "partial" / "features"
        self.settings = settings

    def path(self, case_id: str) -> Path:
        return self.folder / f"{case_id}.json"

    def load(self, case: FeatureCase) -> dict | None:
        """The cached row, or None when missing or made from other settings or input files."""
        try:
            entry = json.loads(self.path(case.case_id).read_text(encoding="utf-8"))
            if entry["settings"] != self.settings or entry["inputs"] != _fingerprint(case):
                return None
            return entry["row"]
        except (OSError, ValueError, KeyError):
            return None

    def save(self, case: FeatureCase, row: dict) -> None:
        entry = {"settings": self.settings, "inputs": _fingerprint(case), "row": row}
        atomic.write_bytes(self.path(case.case_id), json.dumps(entry, allow_nan=True).encode())


def _compact(row: dict) -> dict:
    """The row as kept in memory until the Parquet file is written: the image descriptor as a
    float32 array (1 KiB) instead of a list of Python floats (7 KiB), for 100,000-case runs."""
    return {**row, DESCRIPTOR_KEY: np.asarray(row[DESCRIPTOR_KEY], dtype=np.float32)}


def _run_parallel(
    cases: list[FeatureCase], labels: LabelSet, tol: float, workers: int
) -> Iterator[tuple[FeatureCase, tuple]]:
    """(case, result) as cases finish; at most two cases per worker in flight (bounded memory)."""
    if workers <= 1:
        for case in cases:
            yield case, _compute(case, labels, tol)
        return
    context = multiprocessing.get_context("spawn")  # safe beside torch threads of the parent
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: dict[Future, FeatureCase] = {}
        queue = iter(cases)
        while True:
            while len(pending) < 2 * workers and (case := next(queue, None)) is not None:
                pending[pool.submit(_compute, case, labels, tol)] = case
            if not pending:
                return
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield pending.pop(future), future.result()


def _list_cases(
    options: FeaturesOptions, ending: str, listing
) -> tuple[list[FeatureCase], dict[str, str]]:
    predictions = (
        Path(options.predictions) if options.predictions else Path(options.out) / "predictions"
    )
    if not predictions.is_dir():
        raise UsageError(
            f"no prediction folder {predictions}; run `seg4seg predict` into --out first, or pass --predictions DIR"
        )
    skipped = dict(listing.skipped)
    cases = []
    for case in listing.cases:
        prediction = predictions / f"{case.case_id}{ending}"
        if case.label_file is None:
            skipped[case.case_id] = (
                f"no reference label {case.case_id}{ending} in the labels folder; add it"
            )
        elif not prediction.is_file():
            skipped[case.case_id] = (
                f"no prediction {prediction}; run seg4seg predict or pass --predictions"
            )
        else:
            probabilities = predictions / f"{case.case_id}.npz"
            cases.append(
                FeatureCase(
                    case.case_id,
                    case.image_files[0],
                    case.label_file,
                    prediction,
                    probabilities if probabilities.is_file() else None,
                )
            )
    return cases, skipped


def _write_descriptors(
    out: Path, num_parts: int, part_id: int, case_ids: list[str], rows: dict
) -> bool:
    """Write image descriptors as the embeddings, unless a model's embeddings are already there."""
    path = part_path(out, "embeddings.parquet", num_parts, part_id)
    if path.is_file():
        source = pq.read_schema(path).metadata.get(b"seg4seg", b"{}")
        if json.loads(source).get("source") != DESCRIPTOR_SOURCE:
            return False
    write_embeddings(
        path,
        case_ids,
        [np.asarray(rows[c][DESCRIPTOR_KEY], dtype=np.float32) for c in case_ids],
        source=DESCRIPTOR_SOURCE,
        extra_metadata={
            "descriptor": "16x16 (2-D) or 8x8x8 (3-D) thumbnail + 32-bin histogram, intensities scaled by p01/p99"
        },
    )
    return True


def run_features(options: FeaturesOptions) -> FeaturesResult:
    """Compute the features of every case of the selected part; see the module docstring."""
    started, start_iso = time.perf_counter(), now_iso()
    if options.nsd_tol_mm < 0:
        raise UsageError(f"--nsd-tol-mm must be at least 0, got {options.nsd_tol_mm}")
    if options.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {options.workers}")
    dataset_json = read_dataset_json(Path(options.data))
    labels = label_set_from_dataset_json(dataset_json)
    metadata_table = read_metadata(options.metadata) if options.metadata else None
    num_parts, part_id = resolve_part(options.num_parts, options.part_id)
    listing = select_part(find_cases(data_dir=options.data), num_parts, part_id)
    if listing.labels_dir is None:
        raise UsageError(
            f"{options.data} has no labelsTs/ or labelsTr/ beside {listing.images_dir}; features need references"
        )
    out = Path(options.out)
    try:
        (out / "partial" / "features").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot write to --out {out} ({exc.strerror or exc}); choose another folder"
        ) from exc
    cases, skipped = _list_cases(options, listing.file_ending, listing)

    settings = {
        "schema_version": SCHEMA_VERSION,
        "row_version": ROW_VERSION,
        "nsd_tol_mm": options.nsd_tol_mm,
        "labels": labels.to_json(),
    }
    cache = RowCache(out, settings)
    result = FeaturesResult(out=out, skipped=skipped)
    rows: dict[str, dict] = {}
    todo = []
    for case in cases:
        row = None if options.overwrite else cache.load(case)
        if row is None:
            todo.append(case)
        else:
            rows[case.case_id] = _compact(row)
            result.reused.append(case.case_id)
    if result.reused:
        console.info(
            f"features: {len(result.reused)} case(s) already computed in {out}; reusing them"
        )

    with console.CaseProgress("features", len(todo)) as progress:
        for case, (status, payload) in _run_parallel(
            todo, labels, options.nsd_tol_mm, options.workers
        ):
            if status == "ok":
                try:
                    cache.save(case, payload)
                except OSError as exc:
                    raise OutputError(
                        f"cannot write features of {case.case_id} in {out}: {exc}"
                    ) from exc
                rows[case.case_id] = _compact(payload)
                result.new.append(case.case_id)
            else:
                result.skipped[case.case_id] = payload
                console.warn(f"{case.case_id}: {payload}")
            progress.advance(case.case_id)

    case_ids = sorted(rows)
    schema_metadata = {
        "schema_version": SCHEMA_VERSION,
        "nsd_tol_mm": options.nsd_tol_mm,
        "labels": labels.to_json(),
        "aggregate": "each metric without __label is the mean over the foreground labels",
        "surface_definition": SURFACE_DEFINITION,
        "empty_mask_conventions": EMPTY_MASK_CONVENTIONS,
        "units": "mm for distances, ml for volumes; spacing in mm (x, y, z); shape in voxels (x, y, z)",
    }
    if case_ids:
        meta_columns: list[pa.Field] = []
        meta_values: dict[str, list] = {}
        if metadata_table is not None:
            joined = join_metadata(metadata_table, case_ids)
            meta_columns = [joined.table.schema.field(n) for n in joined.columns]
            meta_values = {n: joined.table.column(n).to_pylist() for n in joined.columns}
            result.metadata_missing, result.metadata_extra = joined.missing, joined.extra
        schema = cases_schema(list(labels.foreground), meta_columns)
        columns = {}
        for column in schema.names:
            columns[column] = (
                meta_values[column]
                if column in meta_values
                else [rows[c][column] for c in case_ids]
            )
        table = pa.table(columns, schema=schema).replace_schema_metadata(
            {b"seg4seg": json.dumps(schema_metadata, sort_keys=True).encode()}
        )
        result.cases_file = part_path(out, "cases.parquet", num_parts, part_id)
        result.cases_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(result.cases_file) as tmp:
            pq.write_table(table, tmp)
        result.embeddings_written = _write_descriptors(out, num_parts, part_id, case_ids, rows)

    result.seconds = time.perf_counter() - started
    write_step(
        record_path(out, num_parts, part_id),
        "features",
        {
            "settings": settings,
            "data": str(options.data),
            "predictions": str(options.predictions or out / "predictions"),
            "metadata": str(options.metadata) if options.metadata else None,
            "metadata_cases_without_row": result.metadata_missing,
            "metadata_rows_without_case": result.metadata_extra,
            "part": {"num_parts": num_parts, "part_id": part_id},
            "workers": options.workers,
            "started_at": start_iso,
            "finished_at": now_iso(),
            "seconds": round(result.seconds, 3),
            "cases_done": case_ids,
            "cases_skipped": {c: result.skipped[c] for c in sorted(result.skipped)},
        },
    )
    return result
