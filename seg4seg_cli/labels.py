"""Label definitions from an nnU-Net dataset.json: plain labels, regions and the ignore label.

nnU-Net v2 writes `"labels": {"background": 0, "liver": 1, "tumor": 2}`; region-based datasets
give a list of label values per region (`"whole_tumor": [1, 2, 3]`) and `regions_class_order`;
a label named `ignore` marks voxels that are not evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

from seg4seg_cli.errors import DataError

IGNORE_NAME = "ignore"


@dataclass(frozen=True)
class LabelSet:
    """The foreground labels or regions to evaluate, in dataset.json order."""

    foreground: dict[str, tuple[int, ...]]
    allowed_values: frozenset[int]
    ignore_value: int | None = None
    region_based: bool = False

    def to_json(self) -> dict:
        return {
            "foreground": {k: list(v) for k, v in self.foreground.items()},
            "ignore_value": self.ignore_value,
            "region_based": self.region_based,
        }


def _values(name: str, raw: object) -> tuple[int, ...]:
    items = raw if isinstance(raw, (list, tuple)) else [raw]
    try:
        values = tuple(int(v) for v in items)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"dataset.json label {name!r} has value {raw!r}; labels must be integers"
        ) from exc
    if not values:
        raise DataError(f"dataset.json label {name!r} has no value")
    return values


def label_set_from_dataset_json(dataset_json: dict) -> LabelSet:
    labels = dataset_json.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise DataError("dataset.json has no labels; it is not an nnU-Net v2 dataset.json")
    foreground: dict[str, tuple[int, ...]] = {}
    allowed: set[int] = {0}
    ignore_value = None
    region_based = False
    for name, raw in labels.items():
        values = _values(name, raw)
        allowed.update(values)
        if name == IGNORE_NAME:
            ignore_value = values[0]
            continue
        if values == (0,):
            continue  # background
        if len(values) > 1 or isinstance(raw, (list, tuple)):
            region_based = True
        foreground[name] = tuple(v for v in values if v != 0) or values
    if not foreground:
        raise DataError("dataset.json declares no foreground label")
    return LabelSet(foreground, frozenset(allowed), ignore_value, region_based)
