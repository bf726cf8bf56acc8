"""UCI-shaped benchmark inputs: the real 19,998-row UCI file tiled with dates shifted by weeks."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

FMT = "%Y-%m-%d %H:%M:%S"


def tile_uci(source: Path, out: Path, rows: int) -> Path:
    """Write `rows` rows: copy k of the source moved k whole weeks later (customer-day
    structure stays realistic: the same customers buy on the same weekdays)."""
    if out.exists():
        return out
    with open(source, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        base = list(reader)
    ts = header.index("InvoiceDate")
    parsed = [datetime.strptime(r[ts], FMT) for r in base]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        written, copy = 0, 0
        while written < rows:
            shift = timedelta(weeks=copy)
            for r, when in zip(base, parsed):
                if written == rows:
                    break
                r = list(r)
                r[ts] = (when + shift).strftime(FMT)
                writer.writerow(r)
                written += 1
            copy += 1
    tmp.rename(out)
    return out
