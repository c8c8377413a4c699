"""The one table every benchmark prints: figure, value, baseline measured in the same run, ratio.

`make bench` sets BENCH_RESULTS to a file; each row is also appended there as a JSON line so
the runner can print one table for all benchmarks at the end.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Row:
    figure: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline


def _fmt(number: float | None) -> str:
    if number is None:
        return "-"
    return f"{number:,.0f}" if abs(number) >= 100 else f"{number:,.2f}"


def render(rows: list[Row]) -> str:
    header = ("figure", "value", "baseline (same run)", "ratio")
    lines = [
        (
            r.figure,
            f"{_fmt(r.value)} {r.unit}",
            f"{_fmt(r.baseline)} {r.baseline_label}".strip() if r.baseline is not None else "-",
            f"{r.ratio:.2f}" if r.ratio is not None else "-",
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines, strict=True)]
    out = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("-+-".join("-" * w for w in widths))
    out += [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def report(title: str, rows: list[Row]) -> None:
    """Print this benchmark's table, and record its rows for the combined one."""
    print(f"\n{title}\n{render(rows)}", flush=True)
    path = os.environ.get("BENCH_RESULTS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(asdict(row)) + "\n")


def load(path: str) -> list[Row]:
    with open(path, encoding="utf-8") as source:
        return [Row(**json.loads(line)) for line in source if line.strip()]
