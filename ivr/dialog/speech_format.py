"""How values are said on the phone: `{slots.amount|money}` in a prompt.

Slot values are stored in machine form ("42.50", "2026-03-05", "15:00"); a TTS voice reads
those literally ("forty two point five zero", "two thousand twenty six dash..."). These pure
filters turn them into what a person would say.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

FILTERS = ("money", "date", "time", "digits")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def money(value) -> str:
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except InvalidOperation:
        return str(value)
    sign = "minus " if amount < 0 else ""
    dollars, cents = divmod(abs(amount) * 100, 100)
    dollars, cents = int(dollars), int(cents)
    parts = []
    if dollars or not cents:
        parts.append(f"{dollars:,} dollar" + ("" if dollars == 1 else "s"))
    if cents:
        parts.append(f"{cents} cent" + ("" if cents == 1 else "s"))
    return sign + " and ".join(parts)


def spoken_date(value, today: date | None = None) -> str:
    try:
        d = date.fromisoformat(str(value))
    except ValueError:
        return str(value)
    today = today or date.today()
    text = f"{d.strftime('%A')}, {d.strftime('%B')} {_ordinal(d.day)}"
    return text if d.year == today.year else f"{text}, {d.year}"


def spoken_time(value) -> str:
    try:
        hours, minutes = (int(p) for p in str(value).split(":")[:2])
    except ValueError:
        return str(value)
    if (hours, minutes) == (12, 0):
        return "noon"
    if (hours, minutes) == (0, 0):
        return "midnight"
    suffix = "AM" if hours < 12 else "PM"
    hour = hours % 12 or 12
    return f"{hour} {suffix}" if minutes == 0 else f"{hour}:{minutes:02d} {suffix}"


def digits(value) -> str:
    return " ".join(str(value).replace(" ", ""))


def apply(name: str, value) -> str:
    if name == "money":
        return money(value)
    if name == "date":
        return spoken_date(value)
    if name == "time":
        return spoken_time(value)
    if name == "digits":
        return digits(value)
    raise ValueError(f"unknown filter '{name}' (known: {', '.join(FILTERS)})")
