"""`seg4seg predict`: nnU-Net v2 inference with encoder embeddings, resumable and shardable.

For each case of the selected part: read the channels, predict, then write the embedding, the
probabilities (if asked) and last the segmentation, each atomically. A case is finished when its
segmentation exists, so a killed run resumes where it stopped. At the end the per-case
embeddings are gathered into `embeddings.parquet` (one file per part when sharded).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seg4seg_cli import atomic, console
from seg4seg_cli.cases import Case, find_cases, resolve_part, select_part
from seg4seg_cli.embeddings_store import EmbeddingCache, write_embeddings
from seg4seg_cli.errors import CaseError, DataError, OutputError
from seg4seg_cli.model_folder import resolve_model
from seg4seg_cli.run_record import now_iso, part_path, read_record, record_path, write_step

SAVE_RECORD_EVERY_S = 10.0


@dataclass
class PredictOptions:
    """What `seg4seg predict` was asked to do (flags of the same names)."""

    model: Path
    out: Path = Path("seg4seg_out")
    data: Path | None = None
    images: Path | None = None
    folds: list[str] | None = None
    checkpoint: str = "checkpoint_final.pth"
    device: str = "auto"
    step_size: float = 0.5
    disable_tta: bool = False
    save_probabilities: bool = False
    num_parts: int | None = None
    part_id: int | None = None
    trust_checkpoint: bool = False
    overwrite: bool = False
    # when the out folder holds predictions of other settings: "error" (predict) or "redo" (audit)
    on_settings_change: str = "error"


@dataclass
class PredictResult:
    out: Path
    new: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    device: str = "cpu"
    embeddings_file: Path | None = None
    record_file: Path | None = None

    @property
    def done(self) -> list[str]:
        return sorted(self.new + self.reused)


def _prepare_out(out: Path) -> None:
    try:
        for folder in (out, out / "predictions", out / "shards", EmbeddingCache.folder_of(out)):
            folder.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(out / ".write-test", b"")
        (out / ".write-test").unlink()
    except OSError as exc:
        raise OutputError(
            f"cannot write to --out {out} ({exc.strerror or exc}); choose another folder or fix "
            "its permissions"
        ) from exc
    atomic.remove_stale_temporaries(out / "predictions")


def run_predict(options: PredictOptions) -> PredictResult:
    """Predict every case of the selected part into `options.out`; see the module docstring."""
    # imported here: torch and nnU-Net take seconds to import, `seg4seg --help` should not wait
    from seg4seg_cli.nnunet_adapter import (
        EMBEDDING_LAYER,
        EMBEDDING_SOURCE,
        NnunetModel,
        resolve_device,
    )

    started, start_iso = time.perf_counter(), now_iso()
    files = resolve_model(options.model, options.folds, options.checkpoint)
    device = resolve_device(options.device)
    num_parts, part_id = resolve_part(options.num_parts, options.part_id)
    out = Path(options.out)
    _prepare_out(out)

    console.info(f"loading model {files.results_dir} (folds {', '.join(files.folds)}) on {device}")
    model = NnunetModel(
        files,
        device,
        step_size=options.step_size,
        use_mirroring=not options.disable_tta,
        trust_checkpoint=options.trust_checkpoint,
        verbose=console.settings.verbose,
    )
    listing = find_cases(
        data_dir=options.data,
        images_dir=options.images,
        file_ending=model.file_ending,
        n_channels=model.n_image_channels,
    )
    supported = getattr(model.reader_writer, "supported_file_endings", [listing.file_ending])
    if listing.file_ending not in supported:
        raise DataError(
            f"the dataset's {listing.file_ending} files cannot be read by the model's "
            f"{type(model.reader_writer).__name__} (reads {', '.join(supported)}); convert them"
        )
    listing = select_part(listing, num_parts, part_id)
    if not listing.cases and not listing.skipped:
        raise DataError(f"no cases in {listing.images_dir} for part {part_id} of {num_parts}")

    settings = {
        "model_checksum_sha256": files.checksum(),
        "folds": files.folds,
        "checkpoint": options.checkpoint,
        "configuration": model.configuration,
        "step_size": options.step_size,
        "use_mirroring": not options.disable_tta,
        "save_probabilities": options.save_probabilities,
        "embedding": EMBEDDING_LAYER,
    }
    record_file = record_path(out, num_parts, part_id)
    previous = read_record(record_file).get("steps", {}).get("predict", {})
    settings_changed = bool(previous) and previous.get("settings") != settings
    reuse = not options.overwrite and not (
        settings_changed and options.on_settings_change == "redo"
    )
    if settings_changed and reuse:
        changed = sorted(k for k in settings if previous.get("settings", {}).get(k) != settings[k])
        raise OutputError(
            f"{out} holds predictions made with other settings ({', '.join(changed)} changed); "
            "pass --overwrite to redo them, or choose another --out"
        )

    cache = EmbeddingCache(out)
    predictions_dir = out / "predictions"

    def outputs_of(case: Case) -> list[Path]:
        paths = [predictions_dir / f"{case.case_id}{listing.file_ending}"]
        if options.save_probabilities:
            paths.append(predictions_dir / f"{case.case_id}.npz")
        return [cache.path(case.case_id), *paths]

    if not reuse:
        # a redo first removes this part's outputs of the old run: if it is killed, the record
        # already names the new settings, and a resumed run must not take an old case for done
        for case in listing.cases:
            # the old run's probabilities too, even when this run saves none (each path once)
            for path in dict.fromkeys([*outputs_of(case), predictions_dir / f"{case.case_id}.npz"]):
                path.unlink(missing_ok=True)

    result = PredictResult(out=out, device=str(device), record_file=record_file)
    result.skipped = dict(listing.skipped)
    case_seconds: dict[str, dict] = {}
    previous_cases = previous.get("cases_done", {}) if reuse else {}
    todo: list[Case] = []
    for case in listing.cases:
        if reuse and all(p.is_file() for p in outputs_of(case)):
            result.reused.append(case.case_id)
            case_seconds[case.case_id] = previous_cases.get(case.case_id, {})
        else:
            todo.append(case)

    section = {
        "settings": settings,
        "model": {
            "path": str(files.results_dir),
            "checkpoints": {f: str(p) for f, p in files.checkpoints.items()},
            "trainer_name": model.trainer_name,
        },
        "data": {"images_dir": str(listing.images_dir), "file_ending": listing.file_ending},
        "device": str(device),
        "part": {"num_parts": num_parts, "part_id": part_id},
        "embedding": {"source": EMBEDDING_SOURCE, "layer": EMBEDDING_LAYER},
        "started_at": start_iso,
    }

    def save_record(finished: bool) -> None:
        section["cases_done"] = {c: case_seconds[c] for c in sorted(case_seconds)}
        section["cases_skipped"] = {c: result.skipped[c] for c in sorted(result.skipped)}
        section["finished_at"] = now_iso() if finished else None
        section["seconds"] = round(time.perf_counter() - started, 3)
        write_step(record_file, "predict", section)

    save_record(finished=False)
    if result.reused:
        console.info(f"{len(result.reused)} case(s) already predicted in {out}; skipping them")
    unexpected: list[BaseException] = []
    last_save = time.monotonic()
    try:
        with console.CaseProgress("predict", len(todo)) as progress:
            for case in todo:
                case_start = time.perf_counter()
                try:
                    prediction = model.predict_files(case.image_files, options.save_probabilities)
                    emb_path, *pred_paths = outputs_of(case)
                    cache.write(case.case_id, prediction.embedding)
                    if options.save_probabilities:
                        with atomic.atomic_path(pred_paths[1]) as tmp:
                            np.savez_compressed(tmp, probabilities=prediction.probabilities)
                    model.write_segmentation(prediction, pred_paths[0])
                except CaseError as exc:
                    result.skipped[case.case_id] = str(exc)
                    console.warn(f"{case.case_id}: {exc}")
                except OutputError:
                    raise  # the out folder cannot take more: stop, what is finished stays
                except OSError as exc:
                    raise OutputError(
                        f"cannot write the outputs of {case.case_id} in {out}: {exc}"
                    ) from exc
                except Exception as exc:  # a bug or an nnU-Net failure on this case: keep going
                    unexpected.append(exc)
                    reason = f"unexpected error {type(exc).__name__}: {exc}"
                    result.skipped[case.case_id] = reason
                    console.warn(f"{case.case_id}: {reason}")
                else:
                    result.new.append(case.case_id)
                    case_seconds[case.case_id] = {
                        "seconds": round(time.perf_counter() - case_start, 4),
                        "device": str(device),
                    }
                progress.advance(case.case_id)
                if time.monotonic() - last_save > SAVE_RECORD_EVERY_S:
                    save_record(finished=False)
                    last_save = time.monotonic()
    finally:
        # whatever happens, the record says what was finished
        result.seconds = time.perf_counter() - started
        save_record(finished=False)

    if unexpected and not result.done:
        raise unexpected[0]
    if result.done:
        result.embeddings_file = part_path(out, "embeddings.parquet", num_parts, part_id)
        vectors = [cache.read(c) for c in result.done]
        width = sum(b["width"] for b in model.embedding_blocks)
        stale = [c for c, v in zip(result.done, vectors, strict=True) if v.shape != (width,)]
        if stale:
            raise OutputError(
                f"{out} holds embeddings of another width than this model's ({width}) for "
                f"{len(stale)} case(s) ({', '.join(stale[:3])}), left by an older seg4seg or an "
                "interrupted redo; pass --overwrite to redo them"
            )
        write_embeddings(
            result.embeddings_file,
            result.done,
            vectors,
            source=EMBEDDING_SOURCE,
            extra_metadata={
                "layer": EMBEDDING_LAYER,
                "blocks": model.embedding_blocks,
                "model_checksum_sha256": settings["model_checksum_sha256"],
            },
        )
    result.seconds = time.perf_counter() - started
    save_record(finished=True)
    return result
