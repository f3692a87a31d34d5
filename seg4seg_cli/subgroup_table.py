"""The terminal table of subgroups (stderr), shared by discover, audit and report."""

from __future__ import annotations

from seg4seg_cli import console


def render_subgroups(payload: dict) -> None:
    """Print the overall line and one row per subgroup; descriptions below on narrow terminals."""
    from rich.table import Table
    from rich.text import Text

    overall = payload["overall"]
    console.console.print(
        f"{payload['metric']}: mean {overall['mean']:.3f}, median {overall['median']:.3f} over "
        f"{payload['n_cases']} cases; {len(payload['subgroups'])} subgroup(s) by {payload['method']}",
        markup=False,
    )
    if not payload["subgroups"] or console.settings.quiet:
        return
    narrow = console.console.width < 120
    table = Table(show_lines=False)
    for column in ("rank", "id", "size", "inside", "rest", "gap [95% CI]", "p adj", "stable"):
        # numbers never wrap mid-token; on a narrow terminal the CI goes to its own line
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    if not narrow:
        table.add_column("description", overflow="fold", ratio=1)
    for group in payload["subgroups"]:
        ci = group["gap_ci95"]
        gap = f"{group['gap']:.3f}" + (
            ("\n" if narrow else " ") + f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        )
        table.add_row(
            str(group["rank"]),
            Text(console.printable(group["id"])),  # untrusted text: never rich markup
            str(group["size"]),
            f"{group['metric_mean']:.3f}",
            f"{group['metric_mean_rest']:.3f}",
            gap,
            f"{group['p_adjusted']:.2g}",
            "–" if group.get("stability") is None else f"{group['stability']:.0%}",
            *([] if narrow else [Text(console.printable(group["description"]))]),
        )
    console.console.print(table)
    if narrow:  # a terminal too narrow for a description column: one line each below
        for group in payload["subgroups"]:
            text = f"  {group['rank']} {group['id']}: {group['description']}"
            console.console.print(console.printable(text), markup=False, highlight=False)
