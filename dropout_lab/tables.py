"""Markdown tables, as the sweep report (report.py) and the exercise reports write them."""

from typing import Iterable, Sequence


def cell(value) -> str:
    """A table cell: floats to 4 decimals, None empty, '|' escaped."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)
