"""Human durations used in configuration: ``30s``, ``90m``, ``4h``, ``2d``, ``1h30m``."""
from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | int | float, *, allow_zero: bool = False) -> timedelta:
    """Parse ``30s`` / ``90m`` / ``4h`` / ``1h30m`` (or a number of seconds) into a timedelta.

    Raises ValueError with the offending text when it is not a positive duration (zero passes
    with ``allow_zero``: a wait that may be switched off).
    """
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 90m, 4h, 1h30m)")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        compact = text.strip().lower().replace(" ", "")
        if compact.isdigit():
            seconds = float(compact)
        else:
            pos, seconds = 0, 0.0
            for match in _PART.finditer(compact):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
                pos = match.end()
            if pos != len(compact) or not compact:
                raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 90m, 4h, 1h30m)")
    try:
        delta = timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        raise ValueError(f"duration out of range: {text!r}") from None
    # Checked on the timedelta: a positive float below a microsecond rounds to zero.
    if delta < timedelta(0) or (delta == timedelta(0) and not allow_zero):
        raise ValueError(f"duration must be positive: {text!r}")
    return delta


def format_duration(delta: timedelta) -> str:
    """Render a timedelta compactly for people: ``45s``, ``12m``, ``3h05m``, ``2d4h``."""
    total = int(delta.total_seconds())
    sign = "-" if total < 0 else ""
    total = abs(total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{sign}{days}d{hours}h"
    if hours:
        return f"{sign}{hours}h{minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m"
    return f"{sign}{seconds}s"
