"""The HTML report of `seg4seg compare`: one self-contained, offline page.

It reads `OUT/comparison.json`, both sides' `cases.parquet` and the images their `run.json` name,
and recomputes nothing: the verdict, the overall paired change, the paired scatter (baseline
against candidate per case, coloured by subgroup), the table of subgroups and, for each
regression, its worst cases with both models' contours and error maps side by side. No script,
no external URL; pictures are inlined PNGs; every text from the data is escaped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from seg4seg_cli import __version__, atomic
from seg4seg_cli.compare_report import overall_line
from seg4seg_cli.report_html import (
    CSS,
    LEGEND,
    REST_COLOR,
    _figure,
    _img,
    _locate_case_files,
    _placeholder,
    _stat,
    _style,
    case_tile_png,
    figure_to_data_uri,
    png_data_uri,
    read_case_slice,
    verdict_html,
)
from seg4seg_cli.report_text import _e, _short, fmt_number

REPORT_NAME = "comparison.html"
REGRESSION_COLORS = ["#dc2626", "#f97316", "#a855f7", "#db2777", "#92400e"]
IMPROVEMENT_COLORS = ["#16a34a", "#0ea5e9", "#14b8a6", "#65a30d", "#1d4ed8"]
MAX_CARDS = 5
WORST_SHOWN = 4


class Sides:
    """Each case's metric on both sides and the files to draw it from."""

    def __init__(self, out: Path, payload: dict) -> None:
        metric = payload["metric"]
        self.values, self.files, self.problems = {}, {}, {}
        for side in ("baseline", "candidate"):
            folder = out / side
            cases = pq.read_table(folder / "cases.parquet", columns=["case_id", metric])
            self.values[side] = dict(
                zip(
                    cases.column("case_id").to_pylist(),
                    cases.column(metric).to_numpy(zero_copy_only=False).astype(float),
                    strict=True,
                )
            )
            self.files[side], self.problems[side] = _locate_case_files(folder)

    def tile(self, side: str, case_id: str) -> str:
        files = self.files[side].get(case_id)
        if files is None:
            return _placeholder(self.problems[side] or "case files not found")
        try:
            view = read_case_slice(*files)
        except (RuntimeError, ValueError, OSError) as exc:
            return _placeholder(f"cannot show this case: {_short(exc, 160)}")
        alt = f"{case_id}: {side} contours and error map ({view.where})"
        return _img(png_data_uri(case_tile_png(view)), alt)


def _colors(payload: dict) -> dict[str, str]:
    colors, counts = {}, {"regression": 0, "improvement": 0}
    for group in payload["subgroups"]:
        palette = REGRESSION_COLORS if group["direction"] == "regression" else IMPROVEMENT_COLORS
        colors[group["id"]] = palette[counts[group["direction"]] % len(palette)]
        counts[group["direction"]] += 1
    return colors


def scatter_figure(payload: dict, sides: Sides, colors: dict[str, str]) -> str:
    """Baseline against candidate per paired case; the diagonal is no change."""
    metric = payload["metric"]
    figure = _figure(5.2, 4.6)
    ax = figure.add_subplot(1, 1, 1)
    _style(ax)
    ids = [c for c in sides.values["baseline"] if c in sides.values["candidate"]]
    x = np.array([sides.values["baseline"][c] for c in ids])
    y = np.array([sides.values["candidate"][c] for c in ids])
    finite = np.isfinite(x) & np.isfinite(y)
    group_of = {}
    for group in reversed(payload["subgroups"]):  # the best-ranked group's colour wins
        for case_id in group["case_ids"]:
            group_of[case_id] = group["id"]
    rest = np.array([c not in group_of for c in ids]) & finite
    ax.scatter(x[rest], y[rest], s=12, color=REST_COLOR, label="other cases", linewidths=0)
    for group in payload["subgroups"]:
        mask = np.array([group_of.get(c) == group["id"] for c in ids]) & finite
        label = f"{group['rank']}: {group['direction']} ({group['size']})"
        ax.scatter(x[mask], y[mask], s=16, color=colors[group["id"]], label=label, linewidths=0)
    if finite.any():
        low = float(min(x[finite].min(), y[finite].min()))
        high = float(max(x[finite].max(), y[finite].max()))
        ax.plot([low, high], [low, high], color="#6b7280", linewidth=0.8, linestyle="--")
    ax.set_xlabel(f"baseline {metric}")
    ax.set_ylabel(f"candidate {metric}")
    ax.legend(fontsize=7, frameon=False, loc="best")
    figure.tight_layout()
    return figure_to_data_uri(figure)


def _summary(payload: dict) -> str:
    overall, left = payload["overall"], payload["left_out"]
    n_left = len(left["only_baseline"]) + len(left["only_candidate"]) + len(left["no_metric"])
    ci = overall.get("mean_change_ci95")
    items = [
        ("paired cases", fmt_number(payload["n_cases"])),
        ("left out", fmt_number(n_left)),
        (f"baseline {payload['metric']}", fmt_number(overall["baseline_mean"])),
        (f"candidate {payload['metric']}", fmt_number(overall["candidate_mean"])),
        ("mean change", f"{overall['mean_change']:+.3f}"),
        ("95% CI", f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "–"),
        ("improved", f"{overall['improved']:.0%}"),
        ("worsened", f"{overall['worsened']:.0%}"),
        ("subgroups", str(len(payload["subgroups"]))),
    ]
    return "".join(_stat(key, value) for key, value in items)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _table(payload: dict, colors: dict[str, str]) -> str:
    if not payload["subgroups"]:
        return '<p class="note">No subgroup changed systematically.</p>'
    rows = []
    for group in payload["subgroups"]:
        ci = group["mean_change_ci95"]
        kind = (
            f"regression ({group['mode']})" if group["direction"] == "regression" else "improvement"
        )
        rows.append(
            f'<tr><td><span class="rank" style="background:{colors[group["id"]]}">'
            f"{group['rank']}</span></td><td>{_e(kind)}</td><td class=n>{group['size']}</td>"
            f"<td class=n>{fmt_number(group['baseline_mean'])}</td>"
            f"<td class=n>{fmt_number(group['candidate_mean'])}</td>"
            f"<td class=n>{group['mean_change']:+.3f}"
            f"{f' [{ci[0]:.3f}, {ci[1]:.3f}]' if ci else ''}</td>"
            f"<td class=n>{fmt_number(group['p_adjusted'])}</td>"
            f"<td class=n>{_percent(group['stability'])}</td>"
            f'<td class="desc">{_e(group["description"])}</td></tr>'
        )
    return (
        "<table><tr><th>rank</th><th>kind</th><th class=n>size</th><th class=n>baseline</th>"
        "<th class=n>candidate</th><th class=n>change [95% CI]</th><th class=n>adj. p</th>"
        f"<th class=n>stability</th><th>description</th></tr>{''.join(rows)}</table>"
    )


def _card(payload: dict, group: dict, sides: Sides, color: str) -> str:
    change = {
        c: sides.values["candidate"].get(c, np.nan) - sides.values["baseline"].get(c, np.nan)
        for c in group["case_ids"]
    }
    sign = 1.0 if payload["higher_is_better"] else -1.0
    worst = sorted(
        (c for c in group["case_ids"] if np.isfinite(change[c])), key=lambda c: sign * change[c]
    )[:WORST_SHOWN]
    figures = []
    for case_id in worst:
        figures.append(
            f'<figure class="tile">{sides.tile("baseline", case_id)}'
            f"{sides.tile('candidate', case_id)}<figcaption><strong>{_e(_short(case_id))}"
            f"</strong> · {_e(payload['metric'])} baseline "
            f"{fmt_number(sides.values['baseline'].get(case_id))}, candidate "
            f"{fmt_number(sides.values['candidate'].get(case_id))} (top: baseline, bottom: "
            "candidate)</figcaption></figure>"
        )
    mode = "a new failure mode" if group["mode"] == "new" else "a deepened failure mode"
    return (
        f'<section class="card" id="regression-{group["rank"]}"><div class="group-head">'
        f'<span class="rank" style="background:{color}">{group["rank"]}</span>'
        f"<h2>Regression: {group['size']} cases, {_e(mode)}</h2>"
        f'<span class="gid">{_e(group["id"])}</span></div>'
        f'<p class="desc">{_e(group["description"])}</p>'
        f"<h3>The {len(worst)} cases that lost most</h3>{LEGEND}"
        f'<div class="tiles">{"".join(figures)}</div></section>'
    )


def render_comparison_html(out: Path) -> str:
    """The report of compare out folder `out` as one self-contained page."""
    out = Path(out)
    payload = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    sides = Sides(out, payload)
    colors = _colors(payload)
    regressions = [g for g in payload["subgroups"] if g["direction"] == "regression"]
    cards = "".join(
        _card(payload, group, sides, colors[group["id"]]) for group in regressions[:MAX_CARDS]
    )
    scatter = scatter_figure(payload, sides, colors)
    verdict = verdict_html(payload.get("verdict"), hint="seg4seg compare --fail-regression 0.05 …")
    title = f"seg4seg compare: {payload['metric']}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{_e(title)}</title><style>{CSS}</style></head>'
        "<body><main><h1>seg4seg compare report</h1>"
        f'<p class="sub">{_e(overall_line(payload))}<br>baseline: '
        f"{_e(payload['baseline']['source'])} · candidate: {_e(payload['candidate']['source'])}"
        f" · method {_e(payload['method'])}</p>{verdict}"
        f'<section class="card"><h2>Paired change</h2><div class="run"><div class="stats">'
        f"{_summary(payload)}</div><div>{_img(scatter, 'baseline against candidate per case')}"
        '<p class="note">Each dot is a case; below the dashed diagonal the candidate is worse. '
        "A case in several subgroups takes the colour of the best-ranked one.</p></div></div>"
        f'</section><section class="card"><h2>Subgroups</h2>{_table(payload, colors)}</section>'
        f"{cards}<footer>{_e(payload.get('statistics', ''))}<br>seg4seg {_e(__version__)}. "
        "Change: candidate minus baseline, positive is better.</footer></main></body></html>\n"
    )


def write_comparison_html(out: Path, path: Path | None = None) -> Path:
    target = Path(path) if path is not None else Path(out) / REPORT_NAME
    atomic.write_bytes(target, render_comparison_html(out).encode("utf-8"))
    return target
