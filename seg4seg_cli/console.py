"""The one console (stderr) that logs and progress go through, and the progress display.

Data goes to files, or to stdout when asked; everything for people goes to stderr. On a TTY
progress is a bar; elsewhere (CI logs, SLURM output files) it is a line every 10% or 30 seconds.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

console = Console(stderr=True, highlight=False, soft_wrap=True)
if not console.is_terminal and "COLUMNS" not in os.environ:
    console.width = 160  # logs (CI, SLURM) have no width limit; tables should not wrap at 80


@dataclass
class Verbosity:
    quiet: bool = False
    verbose: bool = False
    progress: str = "auto"  # auto | always | never


settings = Verbosity()


_CONTROL = {code: f"\\x{code:02x}" for code in (*range(32), 127)}


def printable(text: str) -> str:
    """Untrusted text (case ids, file names) with control characters shown as \\xNN escapes,
    so that one log line stays one line."""
    return text.translate(_CONTROL)


def info(message: str) -> None:
    if not settings.quiet:
        console.print(escape(message))


def debug(message: str) -> None:
    if settings.verbose:
        console.print(f"[dim]{escape(message)}[/dim]")


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {escape(printable(message))}")


def error(message: str) -> None:
    console.print(f"[bold red]error:[/bold red] {escape(printable(message))}")


class CaseProgress:
    """Progress over `total` cases: a bar on a TTY, periodic one-line reports otherwise."""

    def __init__(self, label: str, total: int, every_s: float = 30.0) -> None:
        self.label, self.total, self.every_s = label, total, every_s
        self.done = 0
        self._bar: Progress | None = None
        self._start = self._last_line = time.monotonic()
        self._next_fraction = 0.1

    def __enter__(self) -> CaseProgress:
        mode = settings.progress
        use_bar = mode == "always" or (mode == "auto" and console.is_terminal)
        if use_bar and not settings.quiet and self.total:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def advance(self, case_id: str) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=f"{self.label} {case_id}")
            return
        if settings.quiet or settings.progress == "never":
            return
        now = time.monotonic()
        fraction = self.done / self.total
        if fraction >= self._next_fraction or now - self._last_line >= self.every_s:
            elapsed = now - self._start
            left = elapsed / self.done * (self.total - self.done)
            console.print(
                f"{self.label}: {self.done}/{self.total} cases ({fraction:.0%}), "
                f"{elapsed:.1f} s elapsed, ~{left:.0f} s left"
            )
            self._last_line = now
            while self._next_fraction <= fraction:
                self._next_fraction += 0.1

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def case_summary(
    step: str,
    new: list[str],
    reused: list[str],
    skipped: dict[str, str],
    seconds: float,
    device: str,
    out: object,
    is_result: bool = True,
) -> None:
    """The closing line of a per-case step, then one line per skipped case with its reason.

    When the step is the command's result (`is_result`), --quiet still prints it; within an
    audit, --quiet leaves only the verdict.
    """
    per_case = f", {seconds / len(new):.3f} s/case" if new else ""
    summary = (
        f"{step}: {len(new) + len(reused)} case(s) done ({len(new)} new, {len(reused)} reused), "
        f"{len(skipped)} skipped, {seconds:.1f} s on {device}{per_case} -> {out}"
    )
    if settings.quiet and not is_result:
        return
    console.print(summary, markup=False)
    for case_id, reason in sorted(skipped.items()):
        console.print(
            f"  skipped {printable(case_id)}: {printable(reason)}", markup=False, highlight=False
        )
