"""subgroups.json as Markdown, for CI summaries (GitHub step summaries are capped at 1 MiB).

Case lists are cut to the first ten ids per subgroup (strongest members first), so the size stays
bounded whatever the number of cases. Untrusted text (case ids, descriptions) is escaped.
"""

from __future__ import annotations

import html
import os

from seg4seg_cli.gate import FAIL, NOT_GATED, PASS, verdict_line, verdict_status

MAX_CASES_LISTED = 10
MAX_BYTES = 1 << 20


def escape_markdown(text: object) -> str:
    """Escape HTML and the Markdown characters that would change a table or inline text."""
    escaped = html.escape(str(text), quote=True)
    for char in ("\\", "|", "*", "_", "`", "[", "]"):
        escaped = escaped.replace(char, "\\" + char)
    return escaped.replace("\n", " ")


def _number(value: object, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value)


_ICONS = {PASS: "✅", FAIL: "❌", NOT_GATED: "⚪"}


def verdict_markdown(verdict: dict | None, hint: str = "--fail-gap or --fail-below") -> str:
    """`**✅ PASS**: ...`, `**❌ FAIL**: ...` or `**⚪ NOT GATED**: ...`, as the terminal line."""
    status = verdict_status(verdict)
    headline, _, rest = verdict_line(verdict, hint).partition(": ")
    return f"**{_ICONS[status]} {headline}**: {escape_markdown(rest)}"


def render_markdown(payload: dict, verdict: dict | None = None) -> str:
    metric = escape_markdown(payload["metric"])
    overall = payload["overall"]
    lines = ["# seg4seg audit", ""]
    if verdict is not None:
        lines += [verdict_markdown(verdict), ""]
    lines.append(
        f"{payload['n_cases']} cases, {metric} mean {_number(overall['mean'])}, median "
        f"{_number(overall['median'])}; method {escape_markdown(payload['method'])}, seed {payload['seed']}; "
        f"{len(payload['subgroups'])} subgroup(s). Statistics cross-fitted over {payload.get('n_test', '?')} cases."
    )
    lines.append("")
    if payload["subgroups"]:
        lines.append(
            f"| rank | subgroup | size | {metric} inside | rest | gap [95% CI] | adj. p | stability | description |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for group in payload["subgroups"]:
            ci = group.get("gap_ci95")
            gap = _number(group["gap"]) + (f" [{_number(ci[0])}, {_number(ci[1])}]" if ci else "")
            lines.append(
                f"| {group['rank']} | {escape_markdown(group['id'])} | {group['size']} | {_number(group['metric_mean'])} | "
                f"{_number(group['metric_mean_rest'])} | {gap} | {_number(group['p_adjusted'])} | "
                f"{_number(group.get('stability'))} | {escape_markdown(group['description'])} |"
            )
        lines.append("")
        for group in payload["subgroups"]:
            shown = group["case_ids"][:MAX_CASES_LISTED]
            more = len(group["case_ids"]) - len(shown)
            cases = ", ".join(escape_markdown(c) for c in shown) + (
                f" and {more} more" if more > 0 else ""
            )
            lines.append(f"- **{escape_markdown(group['id'])}** strongest members: {cases}")
        lines.append("")
    text = "\n".join(lines)
    if len(text.encode("utf-8")) > MAX_BYTES:  # cannot happen with bounded lists; a last guard
        text = (
            text.encode("utf-8")[: MAX_BYTES - 64].decode("utf-8", "ignore") + "\n\n(truncated)\n"
        )
    return text


def append_step_summary(text: str) -> None:
    """Append `text` to the file $GITHUB_STEP_SUMMARY names, when it is set (GitHub Actions)."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(text)
