"""Rich tables that keep names and numbers whole at any width (80 columns, a pipe).

rich shrinks every column of a table wider than the console, cutting names and numbers into "…".
Here the columns that hold names and numbers (`whole`) are as wide as their widest cell and never
wrap; every other column wraps at spaces only, so no word (a name, a number, an override, a word
of a title) is ever split. The space left after the whole columns goes first to the ordinary
columns, in proportion to what they would need unwrapped, and what remains to the `free` ones
(titles, descriptions: they wrap the most). Only when the columns cannot get that narrow is the
table printed wider than the console (the terminal wraps the lines) — still without a cut. A
table that does not fit even so is printed as several tables, each with the `repeat` leading
columns (the row's name; the first column unless told) and as many of the others as fit, like a
wide data frame wraps.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table


def column_widths(header: list[str], rows: list[list[str]], whole: set[str], free: set[str], width: int) -> list[int]:
    natural, least = [], []
    for i, name in enumerate(header):
        cells = [name, *(row[i] for row in rows)]
        natural.append(max(map(cell_len, cells)))
        longest_word = max(cell_len(word) for cell in cells for word in cell.split() or [""])
        least.append(natural[-1] if name in whole else longest_word)
    available = width - 3 * len(header) - 1  # one space of padding each side, one border each
    if sum(natural) <= available:
        return natural
    widths = list(least)
    spare = max(0, available - sum(least))
    for takers in ([i for i, n in enumerate(header) if n not in free], [i for i, n in enumerate(header) if n in free]):
        slack = sum(natural[i] - least[i] for i in takers)
        share = min(spare, slack)
        for i in takers:
            widths[i] += (natural[i] - least[i]) * share // (slack or 1)
        spare -= sum(widths[i] - least[i] for i in takers)
    return widths


def print_table(header: list[str], rows: list[list[str]], whole: set[str], free: set[str] = frozenset(),
                right: set[str] = frozenset(), title: str | None = None, row_styles: list[str | None] | None = None,
                console: Console | None = None, repeat: int = 1) -> None:
    console = console or Console()
    for columns in _chunks(header, rows, whole, free, console.width, repeat):
        sub_header, sub_rows = [header[i] for i in columns], [[row[i] for i in columns] for row in rows]
        widths = column_widths(sub_header, sub_rows, whole, free, console.width)
        needed = sum(widths) + 3 * len(columns) + 1
        out = console if needed <= console.width else Console(width=needed, file=console.file,
                                                               force_terminal=console.is_terminal)
        table = Table(title=title)
        for name, width in zip(sub_header, widths):
            table.add_column(name, justify="right" if name in right else "left", width=width,
                             no_wrap=name in whole, overflow="fold")
        for i, row in enumerate(sub_rows):
            table.add_row(*row, style=row_styles[i] if row_styles else None)
        out.print(table)
        title = None


def _chunks(header: list[str], rows: list[list[str]], whole: set[str], free: set[str], width: int,
            repeat: int) -> list[list[int]]:
    """Column indices of each table: all of them, or the first `repeat` plus as many as fit."""
    least = column_widths(header, rows, whole, free, 0)  # each column at its narrowest
    if not repeat or sum(least) + 3 * len(header) + 1 <= width:
        return [list(range(len(header)))]
    chunks, current = [], []
    used = sum(least[:repeat]) + 3 * repeat + 1
    for i in range(repeat, len(header)):
        if current and used + least[i] + 3 > width:
            chunks.append(current)
            current, used = [], sum(least[:repeat]) + 3 * repeat + 1
        current.append(i)
        used += least[i] + 3
    return [list(range(repeat)) + chunk for chunk in [*chunks, current]]
