"""Text formatting shared by the HTML report's sections: escaping, numbers, p-values, colours."""

from __future__ import annotations

import html
import math

MAX_TEXT = 80
# one colour per subgroup rank (tab10 without its grey)
RANK_COLORS = [
    "#d62728",
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
]


def _e(value: object) -> str:
    """Escaped text, for data that may hold markup."""
    return html.escape(str(value), quote=True)


def _short(value: object, limit: int = MAX_TEXT) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fmt_number(value: object, digits: int = 3) -> str:
    """A number for people: 3 significant digits, scientific when tiny, '–' when missing."""
    if value is None or isinstance(value, bool):
        return "–" if value is None else str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _short(value)
    if not math.isfinite(number):
        return "–"
    if number != 0 and abs(number) < 10 ** -(digits - 1):
        return f"{number:.{digits - 1}e}"
    if abs(number) >= 10**digits:
        return f"{number:,.0f}"
    return f"{number:.{digits}g}"


def fmt_p(value: object) -> str:
    if value is None:
        return "–"
    number = float(value)
    return f"{number:.2e}" if number < 1e-3 else f"{number:.3f}"


def fmt_percent(value: object) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}%"


def metric_label(metric: str, better_high: bool) -> str:
    return f"{metric} ({'higher' if better_high else 'lower'} is better)"


def rank_color(rank: int) -> str:
    return RANK_COLORS[(rank - 1) % len(RANK_COLORS)]
