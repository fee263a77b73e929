"""ollama's output formats for the client commands: its tablewriter's tables, its `format`
package's sizes, counts and times, and Go's printing of numbers, JSON values and durations.

Pure: standard library only.
"""

from __future__ import annotations

import datetime
import decimal
import math
from typing import Any

# --- ollama's tablewriter and format package -------------------------------------------------------------


def table(rows: list[list[str]], *, header: list[str] | None = None, wrap: int = 30) -> str:
    """Rows as ollama's tablewriter prints them: left-aligned, no borders, four spaces after every cell
    (one after the header's last), cells wider than `wrap` broken at spaces into several lines."""
    cells = [[_wrap(cell, wrap) for cell in row] for row in rows]
    widths: dict[int, int] = {}
    for row in ([[[h] for h in header]] if header else []) + cells:
        for i, lines in enumerate(row):
            widths[i] = max(widths.get(i, 0), *(len(line) for line in lines))
    out = []
    if header:
        last = len(header) - 1
        out.append("".join(h.ljust(widths[i]) + (" " if i == last else "    ") for i, h in enumerate(header)))
    for row in cells:
        height = max((len(lines) for lines in row), default=0)
        for x in range(height):
            # tablewriter pads a short cell's missing lines with two spaces.
            out.append("".join((lines[x] if x < len(lines) else "  ").ljust(widths[i]) + "    "
                               for i, lines in enumerate(row)))
    return "".join(line + "\n" for line in out)


def _wrap(text: str, limit: int) -> list[str]:
    """tablewriter's `WrapString`: fewest ragged lines of at most `limit` (or the longest word)."""
    if len(text) <= limit:
        return [text]
    words = text.replace("\n", " ").split(" ")
    limit = max(limit, *(len(w) for w in words))
    n = len(words)
    cost, breaks = [0] * (n + 1), [n] * (n + 1)
    for i in range(n - 1, -1, -1):
        if len(" ".join(words[i:])) <= limit:
            cost[i], breaks[i] = 0, n
            continue
        cost[i] = 2**62
        for j in range(i + 1, n):
            width = len(" ".join(words[i:j]))
            penalty = (limit - width) ** 2 + cost[j] + (100_000 if width > limit else 0)
            if penalty < cost[i]:
                cost[i], breaks[i] = penalty, j
    lines, i = [], 0
    while i < n:
        lines.append(" ".join(words[i:breaks[i]]))
        i = breaks[i]
    return lines


def human_bytes(size: int) -> str:
    """ollama's `format.HumanBytes`: decimal units, "1.0 GB", "512 MB", "10 KB"."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if size >= scale:
            value = size / scale
            return f"{int(value)} {unit}" if value >= 10 or value == int(value) else f"{value:.1f} {unit}"
    return f"{size} B"


def human_number(count: int) -> str:
    """ollama's `format.HumanNumber`: 7B, 1.5B, 135M, 22.57M, 4K."""
    if count >= 10**9:
        value = count / 10**9
        return f"{value:.0f}B" if value == int(value) else f"{value:.1f}B"
    if count >= 10**6:
        value = count / 10**6
        return f"{value:.0f}M" if value == int(value) else f"{value:.2f}M"
    return f"{count / 1000:.0f}K" if count >= 1000 else str(count)


def human_time(value: str | None, zero: str, *, now: datetime.datetime | None = None) -> str:
    """ollama's `format.HumanTime`: "2 minutes ago", "4 minutes from now", "Forever" past 20 years."""
    moment = parse_time(value)
    if moment is None:
        return zero
    seconds = ((now or datetime.datetime.now(datetime.UTC)) - moment).total_seconds()
    if _years(seconds) < -20:
        return "Forever"
    return f"{_human_duration(-seconds)} from now" if seconds < 0 else f"{_human_duration(seconds)} ago"


def _human_duration(seconds: float) -> str:
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return "1 second" if int(seconds) == 1 else f"{int(seconds)} seconds"
    minutes = int(seconds // 60)
    if minutes < 60:
        return "About a minute" if minutes == 1 else f"{minutes} minutes"
    hours = math.floor(seconds / 3600 + 0.5)  # Go's math.Round: halves away from zero
    if hours == 1:
        return "About an hour"
    for limit, divisor, unit in ((48, 1, "hours"), (24 * 14, 24, "days"), (24 * 60, 24 * 7, "weeks"),
                                 (24 * 730, 24 * 30, "months")):
        if hours < limit:
            return f"{hours // divisor} {unit}"
    return f"{_years(seconds)} years"


def _years(seconds: float) -> int:
    # Go's int(d.Hours())/24/365: each division truncates toward zero.
    return int(int(int(seconds / 3600) / 24) / 365)


def parse_time(value: str | None) -> datetime.datetime | None:
    if not value or value.startswith("0001-01-01"):  # Go's zero time: never set
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.astimezone()


def processor(size: int, size_vram: int) -> str:
    """ollama's PROCESSOR column: where the model's memory is."""
    if size_vram == 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size == 0:
        return "Unknown"
    cpu = math.floor((size - size_vram) / size * 100 + 0.5)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


def short_digest(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def go_number(value: float, *, exponent_from: int = 6) -> str:
    """A JSON number as Go prints a float64: the shortest digits, in exponent form from 1e`exponent_from`
    up (`%g` uses 6, `%v` 21) and below 1e-4."""
    if isinstance(value, int) and abs(value) < 10**exponent_from:
        return str(value)
    if value == 0:
        return "0"
    shortest = decimal.Decimal(repr(float(value))).normalize()  # repr: the shortest digits that round-trip
    negative, digit_tuple, exp = shortest.as_tuple()
    digits = "".join(map(str, digit_tuple))
    exponent = len(digits) + int(exp) - 1
    sign = "-" if negative else ""
    if exponent < -4 or exponent >= exponent_from:
        mantissa = digits[0] + (f".{digits[1:]}" if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    return format(shortest, "f")


def go_value(value: Any, *, limit: int | None = None) -> str:
    """A JSON value as ollama's `show -v` prints it (`%t`, `%g`, `%v`; long lists cut at `limit` columns)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if is_number(value):
        return go_number(value, exponent_from=6 if limit is not None else 21)
    if isinstance(value, list):
        items = [go_value(item) for item in value]
        if limit is None:
            return "[" + " ".join(items) + "]"
        shown, width = 0, 1
        for i, item in enumerate(items):
            grow = len(item) + (2 if i else 0)
            if width + grow > limit and i:
                break
            width, shown = width + grow, shown + 1
        more = f" ...+{len(items) - shown} more" if shown < len(items) else ""
        return "[" + " ".join(items[:shown]) + more + "]"
    return "<nil>" if value is None else "map[string]interface {}"


# --- Go's time.Duration ------------------------------------------------------------------------------


def go_duration(nanoseconds: int) -> str:
    """Go's `time.Duration.String`: 1.234s, 512.5ms, 2m3s, 1h0m0s."""
    if nanoseconds == 0:
        return "0s"
    sign, ns = ("-" if nanoseconds < 0 else ""), abs(nanoseconds)

    def fraction(value: int, digits: int) -> str:
        whole, rest = divmod(value, 10**digits)
        tail = str(rest).rjust(digits, "0").rstrip("0")
        return f"{whole}.{tail}" if tail else str(whole)

    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{fraction(ns, 3)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{fraction(ns, 6)}ms"
    minutes, rest = divmod(ns, 60 * 10**9)
    text = fraction(rest, 9) + "s"
    if minutes:
        hours, minutes = divmod(minutes, 60)
        text = (f"{hours}h" if hours else "") + f"{minutes}m" + text
    return sign + text
