"""Finding the cases of a dataset folder, nnU-Net's raw layout, and splitting them into parts.

Pure file listing: nothing here reads an image. A case that cannot be used (a missing channel, a
label without an image, a malformed name) is not an error for the whole run: it is returned in
`CaseListing.skipped` with the reason, so that the run goes on and reports it.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from seg4seg_cli.errors import DataError, UsageError

_CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$", re.DOTALL)
_FORBIDDEN_IN_CASE_ID = re.compile(r"[/\\\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Case:
    """One case: its id, its image files in channel order, and its reference label if any."""

    case_id: str
    image_files: tuple[Path, ...]
    label_file: Path | None = None


@dataclass
class CaseListing:
    """The usable cases (sorted by id) and the skipped ones with the reason for each."""

    cases: list[Case]
    skipped: dict[str, str] = field(default_factory=dict)
    file_ending: str = ".nii.gz"
    images_dir: Path | None = None
    labels_dir: Path | None = None
    # skipped ids that come from no image file (labels without images, misnamed files)
    not_images: set[str] = field(default_factory=set)


def read_dataset_json(folder: Path) -> dict:
    path = folder / "dataset.json"
    if not path.is_file():
        raise DataError(
            f"{folder} has no dataset.json: pass an nnU-Net raw dataset folder to --data, "
            "or the image folder to --images"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}; fix or regenerate the file") from exc


def channel_count(dataset_json: dict) -> int:
    """Number of input channels declared in a dataset.json (nnU-Net v2 or v1 key)."""
    channels = dataset_json.get("channel_names", dataset_json.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise DataError("dataset.json has no channel_names; it is not an nnU-Net v2 dataset.json")
    return len(channels)


def check_case_id(case_id: str) -> str | None:
    """Why `case_id` cannot be used (it names files we write), or None when it is fine."""
    if case_id in ("", ".", "..") or _FORBIDDEN_IN_CASE_ID.search(case_id):
        return (
            f"case id {case_id!r} contains a path separator or control character; rename the files"
        )
    return None


def _files_with_ending(folder: Path, file_ending: str) -> list[Path]:
    return sorted(
        Path(entry.path)
        for entry in os.scandir(folder)
        if entry.name.endswith(file_ending) and not entry.name.startswith(".") and entry.is_file()
    )


def _pick_split(data_dir: Path, file_ending: str) -> tuple[Path, Path | None]:
    for images_name, labels_name in (("imagesTs", "labelsTs"), ("imagesTr", "labelsTr")):
        images_dir = data_dir / images_name
        if images_dir.is_dir() and _files_with_ending(images_dir, file_ending):
            labels_dir = data_dir / labels_name
            return images_dir, labels_dir if labels_dir.is_dir() else None
    raise DataError(
        f"no {file_ending} images in {data_dir}/imagesTs or {data_dir}/imagesTr; "
        "check --data, or pass --images DIR"
    )


def find_cases(
    *,
    data_dir: Path | None = None,
    images_dir: Path | None = None,
    labels_dir: Path | None = None,
    file_ending: str | None = None,
    n_channels: int | None = None,
) -> CaseListing:
    """List the cases of an nnU-Net raw dataset (`data_dir`) or of an explicit image folder.

    With `data_dir`, its dataset.json gives the file ending and channels, and `imagesTs/` is
    preferred over `imagesTr/`. `file_ending` and `n_channels`, when given, must agree with it.
    """
    if data_dir is not None:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise DataError(f"--data {data_dir} is not a folder")
        dataset_json = read_dataset_json(data_dir)
        data_ending = dataset_json.get("file_ending")
        if not data_ending:
            raise DataError(f"{data_dir}/dataset.json has no file_ending")
        data_channels = channel_count(dataset_json)
        if n_channels is not None and n_channels != data_channels:
            raise DataError(
                f"{data_dir}/dataset.json declares {data_channels} channel(s) but the model takes "
                f"{n_channels}; this dataset does not fit the model"
            )
        file_ending, n_channels = data_ending, data_channels
        if images_dir is None:
            images_dir, found_labels = _pick_split(data_dir, file_ending)
            labels_dir = labels_dir or found_labels
    if images_dir is None:
        raise UsageError("give --data DATASET_DIR or --images DIR")
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(f"image folder {images_dir} does not exist")
    if file_ending is None or n_channels is None:
        raise UsageError(
            "the file ending and channel count are unknown; pass --data with a dataset.json"
        )

    skipped: dict[str, str] = {}
    not_images: set[str] = set()
    channels: dict[str, dict[int, Path]] = defaultdict(dict)
    for path in _files_with_ending(images_dir, file_ending):
        stem = path.name[: -len(file_ending)]
        match = _CHANNEL_SUFFIX.match(stem)
        if match is None:
            skipped[stem] = (
                f"image {path} is not named CASE_XXXX{file_ending} (XXXX = channel index); rename it"
            )
            not_images.add(stem)
            continue
        channels[match["case"]][int(match["channel"])] = path

    labels: dict[str, Path] = {}
    if labels_dir is not None and Path(labels_dir).is_dir():
        for path in _files_with_ending(Path(labels_dir), file_ending):
            labels[path.name[: -len(file_ending)]] = path

    cases: list[Case] = []
    for case_id in sorted(channels):
        found = channels[case_id]
        bad_id = check_case_id(case_id)
        missing = [c for c in range(n_channels) if c not in found]
        extra = sorted(c for c in found if c >= n_channels)
        if bad_id:
            skipped[case_id] = bad_id
        elif missing:
            expected = ", ".join(f"{case_id}_{c:04d}{file_ending}" for c in missing)
            skipped[case_id] = f"missing channel file(s) {expected} in {images_dir}; add them"
        elif extra:
            skipped[case_id] = (
                f"has channel(s) {', '.join(f'{c:04d}' for c in extra)} but the model takes "
                f"{n_channels}; remove the extra files"
            )
        else:
            image_files = tuple(found[c] for c in range(n_channels))
            cases.append(Case(case_id, image_files, labels.get(case_id)))
    for case_id in sorted(set(labels) - set(channels)):
        skipped[case_id] = (
            f"label {labels[case_id]} has no image ({case_id}_0000{file_ending} in {images_dir}); "
            "add the image or remove the label"
        )
        not_images.add(case_id)
    labels_path = Path(labels_dir) if labels_dir else None
    return CaseListing(cases, skipped, file_ending, images_dir, labels_path, not_images)


def resolve_part(num_parts: int | None, part_id: int | None) -> tuple[int, int]:
    """The (num_parts, part_id) to run, with SLURM array variables as defaults."""
    env = os.environ
    if num_parts is None:
        num_parts = int(env.get("SLURM_ARRAY_TASK_COUNT", "1"))
    if part_id is None:
        task_id = env.get("SLURM_ARRAY_TASK_ID")
        if task_id is None:
            part_id = 0
        else:
            # an array declared as --array=1-N starts at 1; parts count from 0
            part_id = int(task_id) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
    if num_parts < 1:
        raise UsageError(f"--num-parts must be at least 1, got {num_parts}")
    if not 0 <= part_id < num_parts:
        raise UsageError(f"--part-id must be in 0..{num_parts - 1}, got {part_id}")
    return num_parts, part_id


def select_part(listing: CaseListing, num_parts: int, part_id: int) -> CaseListing:
    """Part `part_id` of `num_parts`, exactly as nnU-Net splits: `sorted(image_ids)[part_id::num_parts]`.

    Cases skipped for a missing or extra channel take part in the split like the others, so each
    is reported by exactly one part. Entries that nnU-Net would not count as images (a label
    without an image, a badly named file) are reported by part 0 alone.
    """
    image_ids = sorted(
        {c.case_id for c in listing.cases} | set(listing.skipped) - listing.not_images
    )
    keep = set(image_ids[part_id::num_parts])
    if part_id == 0:
        keep |= listing.not_images
    return CaseListing(
        [c for c in listing.cases if c.case_id in keep],
        {k: v for k, v in listing.skipped.items() if k in keep},
        listing.file_ending,
        listing.images_dir,
        listing.labels_dir,
        listing.not_images & keep,
    )
