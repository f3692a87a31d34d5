"""The HTML report: one self-contained, offline page that renders an out folder's results.

It reads `subgroups.json` and `cases.parquet` (plus `embeddings.parquet` for the map and the
images named by `run.json` for the montages) and recomputes no metric: every number on the page
is one those files hold. The page has no script and no external URL; its CSS is inline and every
picture is a PNG inlined as a `data:` URI, drawn with matplotlib's Agg canvas on `Figure` objects
(no pyplot, so the rest of the program's matplotlib state is untouched).

Error maps compare label maps voxel by voxel: a voxel whose predicted label differs from the
reference is a false negative when the reference has a foreground label there (missed, or given
another label), else a false positive. In 3-D the montage shows the axial slice (z) with the most
such voxels. Every piece of text from the data (case ids, metadata, descriptions, feature names,
paths) is HTML-escaped.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import SimpleITK as sitk
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from seg4seg_cli import __version__, atomic
from seg4seg_cli.cases import find_cases
from seg4seg_cli.discover import higher_is_better, quality_of
from seg4seg_cli.embeddings_store import read_embeddings
from seg4seg_cli.errors import DataError, Seg4SegError
from seg4seg_cli.gate import NOT_GATED, NOT_GATED_REASON, PASS, verdict_status
from seg4seg_cli.report_overview import MAX_SUBGROUP_CARDS, overview_table_html
from seg4seg_cli.report_text import (
    RANK_COLORS,
    _e,
    _short,
    fmt_number,
    fmt_p,
    fmt_percent,
    metric_label,
    rank_color,
)

REPORT_NAME = "report.html"
DPI = 100
# caps that keep the page a few MB at most, whatever the size of the run
MAX_MAP_POINTS = 5000
MAX_STRIP_POINTS = 1500
MAX_LABEL_CONTOURS = 8
TILE_PANEL_PX = 176
TILE_GAP_PX = 4
MAX_META_COLUMNS = 3
N_WORST_OVERALL = 10

REF_COLOR = "#22c55e"
PRED_COLOR = "#ec4899"
FN_COLOR = "#3b82f6"
FP_COLOR = "#f97316"
REST_COLOR = "#b8bec8"
INK = "#1f2937"


# ---------------------------------------------------------------------------------------------
# reading the out folder


@dataclass
class ReportData:
    """What the page shows: the subgroups payload, the cases table and where the images are."""

    out: Path
    payload: dict
    cases: pd.DataFrame
    embeddings: np.ndarray | None = None
    case_files: dict[str, tuple[Path, Path | None, Path]] = field(default_factory=dict)
    files_problem: str | None = None

    @property
    def metric(self) -> str:
        return str(self.payload.get("metric", "dice"))

    @property
    def better_high(self) -> bool:
        return bool(self.payload.get("higher_is_better", higher_is_better(self.metric)))

    @property
    def subgroups(self) -> list[dict]:
        return list(self.payload.get("subgroups") or [])

    def values(self) -> np.ndarray:
        """The metric of every case, in the order of `cases` (NaN where missing)."""
        if self.metric not in self.cases.columns:
            return np.full(len(self.cases), np.nan)
        return self.cases[self.metric].to_numpy(dtype=np.float64, na_value=np.nan)

    def member_mask(self, subgroup: dict) -> np.ndarray:
        members = set(subgroup.get("case_ids") or [])
        return self.cases["case_id"].isin(members).to_numpy()


def load_report_data(out: Path) -> ReportData:
    """Read an out folder; raises DataError when subgroups.json or cases.parquet is missing."""
    out = Path(out)
    subgroups_file, cases_file = out / "subgroups.json", out / "cases.parquet"
    for path, step in ((subgroups_file, "discover"), (cases_file, "features")):
        if not path.is_file():
            raise DataError(f"{path} does not exist; run `seg4seg {step}` into {out} first")
    try:
        payload = json.loads(subgroups_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {subgroups_file}: {exc}; rerun seg4seg discover") from exc
    cases = pq.read_table(cases_file).to_pandas()
    cases["case_id"] = cases["case_id"].astype(str)
    cases = cases.sort_values("case_id", kind="stable").reset_index(drop=True)
    data = ReportData(out, payload, cases, embeddings=_aligned_embeddings(out, cases))
    data.case_files, data.files_problem = _locate_case_files(out)
    return data


def _aligned_embeddings(out: Path, cases: pd.DataFrame) -> np.ndarray | None:
    """The embedding of each case in `cases` order (NaN rows where a case has none)."""
    path = out / "embeddings.parquet"
    if not path.is_file():
        return None
    ids, matrix, _ = read_embeddings(path)
    index = {case_id: i for i, case_id in enumerate(ids)}
    aligned = np.full((len(cases), matrix.shape[1]), np.nan, dtype=np.float64)
    for row, case_id in enumerate(cases["case_id"]):
        if case_id in index:
            aligned[row] = matrix[index[case_id]]
    return aligned


def _resolve(recorded: str | None, out: Path) -> Path | None:
    """A folder run.json names, which may be relative to where that command ran."""
    if not recorded:
        return None
    path = Path(recorded)
    candidates = (
        [path] if path.is_absolute() else [Path.cwd() / path, out.parent / path, out / path]
    )
    return next((c for c in candidates if c.is_dir()), None)


def _locate_case_files(out: Path) -> tuple[dict[str, tuple[Path, Path | None, Path]], str | None]:
    """case id → (first image channel, reference, prediction), or why none could be found."""
    try:
        record = json.loads((out / "run.json").read_text(encoding="utf-8"))
        features = record["steps"]["features"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}, f"{out / 'run.json'} names no dataset (no features step)"
    data_dir = _resolve(features.get("data"), out)
    if data_dir is None:
        return {}, f"dataset folder {features.get('data')} not found"
    recorded = features.get("predictions") or ""
    own = out / "predictions"
    # an out folder's own predictions move with it (a copied folder still records the old path)
    predictions = own if Path(recorded).name == own.name and own.is_dir() else None
    predictions = predictions or _resolve(recorded, out) or own
    try:
        listing = find_cases(data_dir=data_dir)
    except Seg4SegError as exc:
        return {}, str(exc)
    return {
        case.case_id: (
            case.image_files[0],
            case.label_file,
            predictions / f"{case.case_id}{listing.file_ending}",
        )
        for case in listing.cases
    }, None


# ---------------------------------------------------------------------------------------------
# formatting


# ---------------------------------------------------------------------------------------------
# figures


def _figure(width_in: float, height_in: float) -> Figure:
    figure = Figure(figsize=(width_in, height_in), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)
    return figure


def _style(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#9ca3af")
    ax.tick_params(colors="#4b5563", labelsize=8)
    ax.xaxis.label.set_color(INK)
    ax.yaxis.label.set_color(INK)
    ax.xaxis.label.set_size(9)
    ax.yaxis.label.set_size(9)
    ax.grid(color="#e5e7eb", linewidth=0.6)
    ax.set_axisbelow(True)


def figure_to_data_uri(figure: Figure) -> str:
    """The figure as an RGB PNG data URI (no alpha channel: smaller, and the page is white)."""
    canvas = figure.canvas
    canvas.draw()
    image = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return png_data_uri(buffer.getvalue())


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{_e(alt)}">'


def histogram_figure(values: np.ndarray, metric: str, overall: dict) -> str:
    values = values[np.isfinite(values)]
    figure = _figure(5.0, 2.6)
    ax = figure.add_subplot()
    _style(ax)
    if values.size:
        bins = min(40, max(10, int(np.sqrt(values.size)) * 2))
        ax.hist(values, bins=bins, color="#6366f1", alpha=0.85, edgecolor="white", linewidth=0.5)
    for key, style in (("mean", "-"), ("median", "--")):
        if overall.get(key) is not None:
            value = float(overall[key])
            ax.axvline(value, color=INK, linestyle=style, linewidth=1.1, label=f"{key} {value:.3g}")
    if overall:
        ax.legend(frameon=False, fontsize=8)
    ax.set_xlabel(metric)
    ax.set_ylabel("cases")
    figure.tight_layout()
    return figure_to_data_uri(figure)


def pca_2d(matrix: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal components of the standardised rows `(n, d)`, and the share of
    variance each explains. Columns without variance are left out."""
    from sklearn.decomposition import PCA

    std = matrix.std(axis=0)
    keep = std > 0
    standardised = (matrix[:, keep] - matrix[:, keep].mean(axis=0)) / std[keep]
    n_components = min(2, standardised.shape[1], standardised.shape[0])
    pca = PCA(n_components=n_components, random_state=seed).fit(standardised)
    coords = pca.transform(standardised)
    if coords.shape[1] < 2:
        coords = np.column_stack([coords, np.zeros(len(coords))])
    ratios = np.zeros(2)
    ratios[:n_components] = pca.explained_variance_ratio_
    return coords, ratios


def subgroup_rank_of_cases(data: ReportData) -> np.ndarray:
    """For each case, the best (lowest) rank of a subgroup it belongs to; 0 when in none."""
    ranks = np.zeros(len(data.cases), dtype=int)
    for subgroup in sorted(data.subgroups, key=lambda g: -int(g.get("rank", 0))):
        ranks[data.member_mask(subgroup)] = int(subgroup.get("rank", 0))
    return ranks


def embedding_map_figure(data: ReportData) -> str | None:
    """PCA of the embeddings, coloured by subgroup (left) and by the metric (right)."""
    if data.embeddings is None:
        return None
    values = data.values()
    usable = np.flatnonzero(np.isfinite(data.embeddings).all(axis=1))
    if usable.size < 3 or data.embeddings.shape[1] < 2:
        return None
    rng = np.random.default_rng(int(data.payload.get("seed", 0) or 0))
    if usable.size > MAX_MAP_POINTS:
        usable = np.sort(rng.choice(usable, MAX_MAP_POINTS, replace=False))
    coords, ratios = pca_2d(data.embeddings[usable], int(data.payload.get("seed", 0) or 0))
    ranks = subgroup_rank_of_cases(data)[usable]
    figure = _figure(10.4, 4.3)
    by_group, by_metric = figure.subplots(1, 2)
    size = 14 if usable.size <= 500 else 5
    _map_by_subgroup(by_group, coords, ranks, size)
    _map_by_metric(figure, by_metric, coords, values[usable], data, size)
    for ax in (by_group, by_metric):
        _style(ax)
        ax.set_xlabel(f"PC1 ({100 * ratios[0]:.0f}% of variance)")
        ax.set_ylabel(f"PC2 ({100 * ratios[1]:.0f}% of variance)")
    figure.tight_layout()
    return figure_to_data_uri(figure)


def _map_by_subgroup(ax, coords: np.ndarray, ranks: np.ndarray, size: float) -> None:
    """Ranks 1..9 in their colours, later ranks in dark grey, cases in no subgroup in light grey;
    rank 1 is drawn last, on top."""
    coloured = sorted({int(r) for r in ranks if 0 < r <= len(RANK_COLORS)})
    layers = [(ranks == 0, REST_COLOR, "no subgroup", 1.0)]
    if (ranks > len(RANK_COLORS)).any():
        layers.append((ranks > len(RANK_COLORS), "#6b7280", f"#{len(RANK_COLORS) + 1}+", 1.2))
    layers += [(ranks == r, rank_color(r), f"#{r}", 1.4) for r in reversed(coloured)]
    handles = {}
    for chosen, color, label, scale in layers:
        handles[label] = ax.scatter(
            *coords[chosen].T, s=size * scale, color=color, alpha=0.9, lw=0.3, edgecolors="white"
        )
    order = [f"#{r}" for r in coloured] + [k for k in handles if not k[1:].isdigit()][::-1]
    ax.legend(
        [handles[k] for k in order],
        order,
        frameon=False,
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncols=min(len(order), 6),
        handletextpad=0.2,
        columnspacing=1.0,
    )
    ax.set_title("by subgroup (best rank)", fontsize=9, color=INK)


def _map_by_metric(figure: Figure, ax, coords, values, data: ReportData, size: float) -> None:
    finite = np.isfinite(values)
    ax.scatter(*coords[~finite].T, s=size, color=REST_COLOR, lw=0)
    cmap = "viridis" if data.better_high else "viridis_r"
    points = ax.scatter(*coords[finite].T, c=values[finite], s=size, cmap=cmap, lw=0)
    colorbar = figure.colorbar(points, ax=ax, fraction=0.05, pad=0.02)
    colorbar.ax.tick_params(labelsize=7)
    colorbar.set_label(data.metric, fontsize=8)
    ax.set_title(f"by {data.metric}", fontsize=9, color=INK)


def strip_figure(
    values: np.ndarray, members: np.ndarray, metric: str, color: str, seed: int
) -> str:
    """Box plot with jittered points of the metric inside the subgroup and in the rest."""
    finite = np.isfinite(values)
    groups = [values[members & finite], values[~members & finite]]
    figure = _figure(3.4, 2.7)
    ax = figure.add_subplot()
    _style(ax)
    ax.grid(axis="x", visible=False)
    rng = np.random.default_rng(seed)
    for position, (group, group_color) in enumerate(
        zip(groups, (color, REST_COLOR), strict=True), start=1
    ):
        if group.size == 0:
            continue
        ax.boxplot(
            [group],
            positions=[position],
            widths=0.55,
            showfliers=False,
            medianprops={"color": INK, "linewidth": 1.4},
            boxprops={"color": "#6b7280"},
            whiskerprops={"color": "#6b7280"},
            capprops={"color": "#6b7280"},
        )
        shown = group if group.size <= MAX_STRIP_POINTS else rng.choice(group, MAX_STRIP_POINTS)
        jitter = rng.uniform(-0.17, 0.17, shown.size)
        ax.scatter(position + jitter, shown, s=9, color=group_color, alpha=0.75, lw=0, zorder=3)
    ax.set_xticks([1, 2])
    ax.set_xticklabels([f"subgroup\n(n={groups[0].size})", f"rest\n(n={groups[1].size})"])
    ax.set_xlim(0.4, 2.6)
    ax.set_ylabel(metric)
    figure.tight_layout()
    return figure_to_data_uri(figure)


# ---------------------------------------------------------------------------------------------
# case montages


@dataclass
class CaseSlice:
    """One 2-D view of a case: image, reference and prediction, with pixel spacing (y, x)."""

    image: np.ndarray
    reference: np.ndarray
    prediction: np.ndarray
    spacing_yx: tuple[float, float]
    where: str


def _read_array(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    image = sitk.ReadImage(str(path))
    if image.GetNumberOfComponentsPerPixel() > 1:
        image = sitk.VectorIndexSelectionCast(image, 0)
    array = sitk.GetArrayFromImage(image)
    # a 2-D case stored as a volume of one slice
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    return array, tuple(image.GetSpacing())


def error_masks(reference: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positives, false negatives): labels differ, and the reference is background (FP)
    or foreground (FN: missed or mislabelled)."""
    differs = reference != prediction
    return differs & (reference == 0), differs & (reference != 0)


def worst_slice_index(reference: np.ndarray, prediction: np.ndarray) -> int:
    """The axial slice (axis 0) with the most differing voxels; with none, the one with the most
    reference foreground, else the middle one."""
    errors = (reference != prediction).reshape(reference.shape[0], -1).sum(axis=1)
    if errors.any():
        return int(errors.argmax())
    foreground = (reference != 0).reshape(reference.shape[0], -1).sum(axis=1)
    return int(foreground.argmax()) if foreground.any() else reference.shape[0] // 2


def read_case_slice(
    image_file: Path, reference_file: Path | None, prediction_file: Path
) -> CaseSlice:
    """Read a case and pick its view; raises ValueError or RuntimeError when it cannot be shown."""
    if reference_file is None:
        raise ValueError("no reference label")
    image, spacing = _read_array(image_file)
    reference, _ = _read_array(reference_file)
    prediction, _ = _read_array(prediction_file)
    if not image.shape == reference.shape == prediction.shape:
        raise ValueError(
            f"shapes differ: image {image.shape}, reference {reference.shape}, prediction {prediction.shape}"
        )
    if image.ndim == 2:
        return CaseSlice(image, reference, prediction, (spacing[1], spacing[0]), "2-D")
    if image.ndim != 3:
        raise ValueError(f"{image.ndim}-D images are not shown")
    z = worst_slice_index(reference, prediction)
    return CaseSlice(
        image[z], reference[z], prediction[z], (spacing[1], spacing[0]), f"slice z={z}"
    )


def window(image: np.ndarray) -> np.ndarray:
    """Intensities scaled to 0..1 between the 1st and 99th percentile."""
    image = image.astype(np.float64)
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.zeros_like(image)
    low, high = np.percentile(finite, [1, 99])
    if high <= low:
        high = low + 1.0
    return np.clip((np.nan_to_num(image, nan=low) - low) / (high - low), 0, 1)


def _panel_size(shape: tuple[int, int], spacing_yx: tuple[float, float]) -> tuple[int, int]:
    """(height, width) in pixels of a panel showing `shape` at its physical aspect ratio."""
    height_mm, width_mm = shape[0] * spacing_yx[0], shape[1] * spacing_yx[1]
    scale = TILE_PANEL_PX / max(height_mm, width_mm)
    return max(8, round(height_mm * scale)), max(8, round(width_mm * scale))


def _resize(array: np.ndarray, size: tuple[int, int], smooth: bool) -> np.ndarray:
    """`array` resampled to (height, width): nearest for labels, box-averaged for images."""
    if smooth and size[0] < array.shape[0]:
        image = Image.fromarray(array.astype(np.float32), mode="F")
        return np.asarray(image.resize(size[::-1], Image.Resampling.BOX))
    rows = np.minimum((np.arange(size[0]) + 0.5) * array.shape[0] / size[0], array.shape[0] - 1)
    cols = np.minimum((np.arange(size[1]) + 0.5) * array.shape[1] / size[1], array.shape[1] - 1)
    return array[rows.astype(int)[:, None], cols.astype(int)[None, :]]


def _four_neighbours(mask: np.ndarray) -> list[np.ndarray]:
    padded = np.pad(mask, 1, constant_values=False)
    return [padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of `mask` with a 4-neighbour outside it, thickened by one pixel inwards."""
    edge = mask & ~np.logical_and.reduce(_four_neighbours(mask))
    return mask & (edge | np.logical_or.reduce(_four_neighbours(edge)))


def _contours(labels: np.ndarray) -> np.ndarray:
    """The outline of every foreground label (the first few when there are many)."""
    outline = np.zeros(labels.shape, bool)
    for value in np.unique(labels)[1:][:MAX_LABEL_CONTOURS]:
        outline |= _boundary(labels == value)
    return outline


# palette indices of a tile: grey levels, dimmed grey levels, then the overlay colours
_GREY_LEVELS = 64
_DIM = 0.55
_REF, _PRED, _FP, _FN, _GAP = (2 * _GREY_LEVELS + i for i in range(5))


def _tile_palette() -> list[int]:
    ramp = np.linspace(0, 255, _GREY_LEVELS)
    greys = [*ramp, *(ramp * _DIM)]
    palette = [round(g) for g in greys for _ in range(3)]
    for color in (REF_COLOR, PRED_COLOR, FP_COLOR, FN_COLOR, "#ffffff"):
        palette += [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    return palette


def case_tile_png(view: CaseSlice) -> bytes:
    """Two panels side by side, as a palette PNG: the image with the reference and prediction
    outlines, and the error map (false positives and negatives over the dimmed image)."""
    size = _panel_size(view.image.shape, view.spacing_yx)
    grey = _resize(window(view.image), size, smooth=True)
    levels = np.clip(np.rint(grey * (_GREY_LEVELS - 1)), 0, _GREY_LEVELS - 1).astype(np.uint8)
    reference = _resize(view.reference, size, smooth=False)
    prediction = _resize(view.prediction, size, smooth=False)
    outlined = levels.copy()
    outlined[_contours(reference)] = _REF
    outlined[_contours(prediction)] = _PRED
    errors = levels + _GREY_LEVELS
    false_positive, false_negative = error_masks(reference, prediction)
    errors[false_positive], errors[false_negative] = _FP, _FN
    gap = np.full((size[0], TILE_GAP_PX), _GAP, np.uint8)
    image = Image.fromarray(np.hstack([outlined, gap, errors]), mode="P")
    image.putpalette(_tile_palette())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# ---------------------------------------------------------------------------------------------
# HTML pieces


CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f3f4f6;color:#1f2937;font:14px/1.5 -apple-system,"Segoe UI",Roboto,
"DejaVu Sans",Helvetica,Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:28px 24px 48px}
h1{font-size:26px;margin:0 0 4px;letter-spacing:-.01em}
h2{font-size:18px;margin:0 0 12px}
h3{font-size:14px;margin:16px 0 8px;color:#374151}
.sub{color:#6b7280;margin:0 0 20px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:10px;padding:18px 20px;margin:0 0 18px;
box-shadow:0 1px 2px rgba(0,0,0,.04)}
.verdict{border-left:6px solid #9ca3af}
.verdict.passed{border-left-color:#16a34a;background:#f0fdf4}
.verdict.failed{border-left-color:#dc2626;background:#fef2f2}
.verdict .state{font-size:17px;font-weight:700;margin:0}
.verdict.passed .state{color:#15803d}.verdict.failed .state{color:#b91c1c}
.verdict ul{margin:6px 0 0;padding-left:20px}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:10px}
.stat{background:#f9fafb;border:1px solid #eef0f3;border-radius:8px;padding:8px 12px}
.stat .k{font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:#6b7280}
.stat .v{font-size:18px;font-weight:600;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
.run{display:grid;grid-template-columns:minmax(0,1fr) 500px;gap:20px;align-items:start}
.run .stats{grid-template-columns:repeat(3,minmax(0,1fr))}
img{max-width:100%;height:auto;display:block}
table{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eef0f3;vertical-align:top}
th{font-size:11px;text-transform:uppercase;letter-spacing:.04em;color:#6b7280;font-weight:600}
td.n,th.n{text-align:right;white-space:nowrap}
th{white-space:nowrap}
.desc{overflow-wrap:anywhere}
.group-head{display:flex;align-items:baseline;gap:10px;flex-wrap:wrap;margin-bottom:6px}
.rank{display:inline-block;color:#fff;font-weight:700;border-radius:6px;padding:1px 9px}
.gid{white-space:nowrap;font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:13px;color:#4b5563}
.group-body{display:grid;grid-template-columns:minmax(0,1fr) 340px;gap:16px}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0 0 10px}
.kv dt{color:#6b7280}.kv dd{margin:0;font-variant-numeric:tabular-nums}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:14px}
.tile{margin:0;background:#111827;border-radius:8px;overflow:hidden}
.tile img{width:100%}
.tile figcaption{background:#fff;border:1px solid #e5e7eb;border-top:0;padding:5px 8px;
font-size:12px;overflow-wrap:anywhere}
.tile .meta{color:#6b7280;font-size:11px}
.placeholder{color:#e5e7eb;padding:28px 12px;text-align:center;font-size:12px;overflow-wrap:anywhere}
.legend{display:flex;gap:14px;flex-wrap:wrap;font-size:12px;color:#4b5563;margin:0 0 8px}
.sw{display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:5px;vertical-align:-2px}
.note{color:#6b7280;font-size:12px}
footer{color:#9ca3af;font-size:12px;margin-top:24px}
@media (max-width:900px){.group-body,.run{grid-template-columns:1fr}}
"""


def verdict_html(verdict: dict | None, hint: str = "seg4seg audit --fail-gap …") -> str:
    """The gate's outcome in the words of every format: passed, failed or not gated."""
    status = verdict_status(verdict)
    if status == NOT_GATED:
        return (
            '<section class="card verdict none"><p class="state">Not gated</p>'
            f'<p class="note">{_e(NOT_GATED_REASON.capitalize())}: this run is not a release gate. '
            f"Run <code>{_e(hint)}</code> to use it as one.</p></section>"
        )
    rules = verdict.get("rules") or {}
    state = "passed" if status == PASS else "failed"
    title = "Gate passed" if status == PASS else "Gate failed"
    reasons = "".join(f"<li>{_e(reason)}</li>" for reason in verdict.get("reasons") or [])
    given = [
        f"--{name.replace('_', '-')} {rules[name]}"
        for name in ("fail_gap", "fail_below", "alpha")
        if rules.get(name) is not None
    ]
    rules_line = f'<p class="note">Rules: {_e(" · ".join(given))}</p>' if given else ""
    return (
        f'<section class="card verdict {state}"><p class="state">{title}</p>'
        f"{f'<ul>{reasons}</ul>' if reasons else ''}{rules_line}</section>"
    )


def _stat(key: str, value: str) -> str:
    return f'<div class="stat"><div class="k">{_e(key)}</div><div class="v">{_e(value)}</div></div>'


def summary_html(data: ReportData) -> str:
    payload, overall = data.payload, data.payload.get("overall") or {}
    items = [
        ("cases", fmt_number(payload.get("n_cases", len(data.cases)))),
        ("tested cases", fmt_number(payload.get("n_test"))),
        ("cross-fitting folds", fmt_number(payload.get("folds"))),
        ("metric", data.metric),
        (f"mean {data.metric}", fmt_number(overall.get("mean"))),
        (f"median {data.metric}", fmt_number(overall.get("median"))),
        ("method", payload.get("method", "–")),
        ("seed", payload.get("seed", "–")),
        ("subgroups", str(len(data.subgroups))),
    ]
    histogram = histogram_figure(data.values(), data.metric, overall)
    stats = "".join(_stat(key, str(value)) for key, value in items)
    return (
        f'<section class="card"><h2>Run</h2><div class="run"><div class="stats">{stats}</div>'
        f"<div>{_img(histogram, 'histogram of ' + data.metric)}"
        f'<p class="note">Distribution of {_e(data.metric)} over all cases.</p></div></div>'
        "</section>"
    )


def embedding_map_html(data: ReportData) -> str:
    embedding_map = embedding_map_figure(data)
    source = data.payload.get("embedding_source")
    map_part = (
        _img(embedding_map, "embedding map coloured by subgroup and by metric")
        + f'<p class="note">PCA of the standardised embeddings ({_e(source or "embeddings.parquet")}); '
        "a case in several subgroups takes the colour of the best-ranked one.</p>"
        if embedding_map
        else '<p class="note">No embedding map: embeddings.parquet is missing or too small.</p>'
    )
    return f'<section class="card"><h2>Embedding map</h2>{map_part}</section>'


def metadata_columns(cases: pd.DataFrame) -> list[str]:
    return [c for c in cases.columns if c.startswith("meta_")][:MAX_META_COLUMNS]


def _metadata_line(row: pd.Series, columns: Sequence[str]) -> str:
    parts = [f"{c[len('meta_') :]}={_short(row[c], 40)}" for c in columns if pd.notna(row[c])]
    return " · ".join(parts)


def worst_order(data: ReportData, rows: Iterable[int]) -> list[int]:
    """Row indices, worst metric first (lowest when higher is better); cases without a value last."""
    rows = np.asarray(list(rows), dtype=int)
    quality = quality_of(data.values()[rows], data.metric)
    quality = np.where(np.isfinite(quality), quality, np.inf)
    return rows[np.argsort(quality, kind="stable")].tolist()


def worst_phrase(data: ReportData) -> str:
    """How the worst cases are chosen, in words (the order `quality_of` gives)."""
    if data.better_high:
        return f"lowest {data.metric}"
    if data.metric.split("__", 1)[0] == "vol_diff_ml":
        return f"largest |{data.metric}|"
    return f"highest {data.metric}"


def worst_cases_html(data: ReportData) -> str:
    worst = worst_order(data, range(len(data.cases)))[:N_WORST_OVERALL]
    columns = metadata_columns(data.cases)
    values = data.values()
    ranks = subgroup_rank_of_cases(data)
    head = "".join(
        f"<th>{_e(h)}</th>"
        for h in ["case", data.metric, "best subgroup"] + [c[len("meta_") :] for c in columns]
    )
    rows = []
    for row in worst:
        case = data.cases.iloc[row]
        cells = [
            _e(_short(case["case_id"])),
            fmt_number(values[row]),
            f"#{ranks[row]}" if ranks[row] else "–",
        ] + [_e(_short(case[c], 40)) if pd.notna(case[c]) else "–" for c in columns]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return (
        f'<section class="card"><h2>Worst {len(worst)} cases overall</h2><table><thead><tr>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


class TileRenderer:
    """Case tiles, each drawn once even when a case is in several subgroups."""

    def __init__(self, data: ReportData) -> None:
        self.data = data
        self.cache: dict[str, str] = {}

    def body(self, case_id: str) -> str:
        if case_id not in self.cache:
            self.cache[case_id] = self._draw(case_id)
        return self.cache[case_id]

    def _draw(self, case_id: str) -> str:
        files = self.data.case_files.get(case_id)
        if files is None:
            why = self.data.files_problem or "case files not found in the dataset folder"
            return _placeholder(why)
        try:
            view = read_case_slice(*files)
        except (RuntimeError, ValueError, OSError) as exc:
            return _placeholder(f"cannot show this case: {_short(exc, 160)}")
        return _img(
            png_data_uri(case_tile_png(view)), f"{case_id}: contours and error map ({view.where})"
        )


def _placeholder(text: str) -> str:
    return f'<div class="placeholder">{_e(text)}</div>'


def montage_html(data: ReportData, subgroup: dict, tiles: TileRenderer, max_cases: int) -> str:
    members = np.flatnonzero(data.member_mask(subgroup))
    worst = worst_order(data, members)[:max_cases]
    if not worst:
        return ""
    values, columns = data.values(), metadata_columns(data.cases)
    figures = []
    for row in worst:
        case = data.cases.iloc[row]
        meta = _metadata_line(case, columns)
        figures.append(
            f'<figure class="tile">{tiles.body(case["case_id"])}<figcaption>'
            f"<strong>{_e(_short(case['case_id']))}</strong> · {_e(data.metric)} "
            f"{fmt_number(values[row])}"
            f"{f'<br><span class=meta>{_e(meta)}</span>' if meta else ''}</figcaption></figure>"
        )
    return (
        f"<h3>Worst {len(worst)} of its {members.size} cases ({_e(worst_phrase(data))})</h3>"
        f"{LEGEND}"
        f'<div class="tiles">{"".join(figures)}</div>'
    )


def _swatch(color: str, text: str) -> str:
    return f'<span><span class="sw" style="background:{color}"></span>{text}</span>'


LEGEND = (
    '<div class="legend">'
    + _swatch(REF_COLOR, "reference contour")
    + _swatch(PRED_COLOR, "prediction contour")
    + _swatch(FP_COLOR, "false positive")
    + _swatch(FN_COLOR, "false negative (missed or mislabelled)")
    + "<span>3-D: axial slice with the most errors</span></div>"
)


def top_features_html(features: list[dict]) -> str:
    if not features:
        return ""
    rows = "".join(
        f"<tr><td>{_e(_short(f.get('name', '')))}</td>"
        f'<td class="n">{fmt_number(f.get("mean_in"))}</td>'
        f'<td class="n">{fmt_number(f.get("mean_rest"))}</td>'
        f'<td class="n">{fmt_number(f.get("auc"))}</td></tr>'
        for f in features
    )
    return (
        "<h3>Features that set it apart</h3><table><thead><tr><th>feature</th>"
        '<th class="n">mean in</th><th class="n">mean rest</th><th class="n">AUC</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _facts(data: ReportData, group: dict) -> str:
    ci = group.get("gap_ci95")
    ci_text = f" [{fmt_number(ci[0])}, {fmt_number(ci[1])}]" if ci else " (no CI)"
    facts = [
        ("size", f"{group.get('size', '–')} cases ({fmt_percent(group.get('fraction'))})"),
        (
            f"{data.metric} inside / rest",
            f"{fmt_number(group.get('metric_mean'))} / {fmt_number(group.get('metric_mean_rest'))}",
        ),
        ("gap (95% CI)", fmt_number(group.get("gap")) + ci_text),
        ("effect size (d)", fmt_number(group.get("effect_size"))),
        ("p / adjusted p", f"{fmt_p(group.get('p_value'))} / {fmt_p(group.get('p_adjusted'))}"),
        (
            "tested cases",
            f"{group.get('n_test', '–')} inside, {group.get('n_test_rest', '–')} rest",
        ),
        (
            "stability",
            "–"
            if group.get("stability") is None
            else f"{fmt_percent(group['stability'])} of the fold fits find it again",
        ),
    ]
    if group.get("rule"):
        facts.append(("rule", _short(group["rule"], 200)))
    if group.get("merged"):
        facts.append(("merged with", ", ".join(map(str, group["merged"]))))
    return (
        '<dl class="kv">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts) + "</dl>"
    )


def subgroup_card_html(data: ReportData, group: dict, tiles: TileRenderer, max_cases: int) -> str:
    rank = int(group.get("rank", 0))
    color = rank_color(rank)
    strip = strip_figure(
        data.values(),
        data.member_mask(group),
        data.metric,
        color,
        int(data.payload.get("seed", 0) or 0) + rank,
    )
    return (
        f'<section class="card" id="subgroup-{rank}"><div class="group-head">'
        f'<span class="rank" style="background:{color}">#{rank}</span>'
        f'<span class="gid">{_e(group.get("id", ""))}</span>'
        f'<span class="note">{_e(group.get("method", ""))}</span></div>'
        f'<p class="desc">{_e(group.get("description", ""))}</p>'
        f'<div class="group-body"><div>{_facts(data, group)}'
        f"{top_features_html(group.get('top_features') or [])}</div>"
        f"<div>{_img(strip, f'{data.metric} inside subgroup {rank} and in the rest')}"
        f'<p class="note">All cases; the statistics at left are cross-fitted: each case tested by a slice found without it.</p>'
        f"</div></div>{montage_html(data, group, tiles, max_cases)}</section>"
    )


# ---------------------------------------------------------------------------------------------
# the page


def render_html(out: Path, verdict: dict | None = None, max_montage_cases: int = 6) -> str:
    """The report of out folder `out` as one self-contained HTML page.

    `verdict` is the gate's outcome, `{"passed": bool, "reasons": [str, ...]}`, or None when no
    gate rule was applied. Montages show the `max_montage_cases` worst cases of each subgroup.
    """
    data = load_report_data(Path(out))
    tiles = TileRenderer(data)
    cards = "".join(
        subgroup_card_html(data, group, tiles, max_montage_cases)
        for group in data.subgroups[:MAX_SUBGROUP_CARDS]
    )
    statistics = data.payload.get("statistics")
    title = f"seg4seg audit: {data.metric}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{_e(title)}</title><style>{CSS}</style></head>'
        f"<body><main><h1>seg4seg audit report</h1>"
        f'<p class="sub">{_e(metric_label(data.metric, data.better_high))} · method '
        f"{_e(data.payload.get('method', '–'))} · out folder {_e(data.out)}</p>"
        f"{verdict_html(verdict)}{summary_html(data)}{overview_table_html(data)}"
        f"{embedding_map_html(data)}{cards}{worst_cases_html(data)}"
        f"<footer>{_e(statistics) + '<br>' if statistics else ''}"
        f"seg4seg {_e(__version__)}. Gap: positive means the subgroup is worse than the rest."
        "</footer></main></body></html>\n"
    )


def write_html(out: Path, path: Path | None = None, verdict: dict | None = None) -> Path:
    """Render the report of `out` and write it atomically (default OUT/report.html)."""
    out = Path(out)
    target = Path(path) if path is not None else out / REPORT_NAME
    atomic.write_bytes(target, render_html(out, verdict).encode("utf-8"))
    return target
