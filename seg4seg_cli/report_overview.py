"""The subgroup overview table of report.html: one row per subgroup, stability included."""

from __future__ import annotations

from seg4seg_cli.report_text import _e, _short, fmt_number, fmt_p, fmt_percent, rank_color

MAX_SUBGROUP_CARDS = 20  # report.html details this many subgroups in cards


def overview_table_html(data) -> str:
    """The table of every subgroup at the top of report.html (`data`: a ReportData)."""
    if not data.subgroups:
        return (
            '<section class="card"><h2>Subgroups</h2><p>No failure subgroup was found: no slice '
            "is worse than the rest on its own cases.</p></section>"
        )
    rows = []
    for group in data.subgroups:
        rank = int(group.get("rank", 0))
        rows.append(
            f'<tr><td><span class="rank" style="background:{rank_color(rank)}">{rank}</span></td>'
            f'<td class="gid">{_e(group.get("id", ""))}</td>'
            f'<td class="n">{_e(group.get("size", ""))}</td>'
            f'<td class="n">{fmt_percent(group.get("fraction"))}</td>'
            f'<td class="n">{fmt_number(group.get("metric_mean"))}</td>'
            f'<td class="n">{fmt_number(group.get("metric_mean_rest"))}</td>'
            f'<td class="n">{fmt_number(group.get("gap"))}</td>'
            f'<td class="n">{fmt_p(group.get("p_adjusted"))}</td>'
            f'<td class="n">{fmt_percent(group.get("stability"))}</td>'
            f'<td class="desc">{_e(_short(group.get("description", ""), 140))}</td></tr>'
        )
    head = "".join(
        f'<th class="{"n" if numeric else ""}">{_e(name)}</th>'
        for name, numeric in (
            ("rank", False),
            ("id", False),
            ("size", True),
            ("share", True),
            ("mean in", True),
            ("mean rest", True),
            ("gap", True),
            ("p adj.", True),
            ("stability", True),
            ("description", False),
        )
    )
    more = ""
    if len(data.subgroups) > MAX_SUBGROUP_CARDS:
        more = f'<p class="note">Details below for the first {MAX_SUBGROUP_CARDS} subgroups.</p>'
    return (
        f'<section class="card"><h2>Subgroups</h2><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{more}</section>"
    )
