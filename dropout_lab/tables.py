"""Markdown tables, as the sweep report (report.py), the exercise reports and ``evaluate``
write them: GitHub-flavoured Markdown, every cell (header cells too) escaped."""

from typing import Iterable, Sequence


def cell(value) -> str:
    """A table cell: floats to 4 decimals, None empty, '|' escaped (a bare one splits the cell)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    lines = ["| " + " | ".join(cell(name) for name in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)
