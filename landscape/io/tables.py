"""CSV tables of results and logs: one writer (the csv module, so a cell with a comma is quoted).

Run logs (``steps.csv``, ``metrics.csv``) and comparison tables (``comparison.csv``) are written here.
A cell that is ``None`` or absent from a row is left empty; numbers are written as ``str`` writes them
(the shortest text that reads back to the same float).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """The CSV text of ``rows`` under the header ``columns`` (``\\n`` line ends).

    Args:
        rows: one mapping per line; keys outside ``columns`` are ignored.
        columns: the header, in order.

    Returns:
        The header line and one line per row, each ending in a newline.
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in columns})
    return buf.getvalue()
