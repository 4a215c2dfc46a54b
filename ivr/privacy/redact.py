"""Keep callers' personal data out of what is sent to a language model.

The LLM may be a hosted service, so everything it receives is redacted first: transcripts, the
bot's own prompts (they read values back, "I heard order 1 2 3 4 5 6") and slot values. Pure
functions over strings and dicts; `redact_text` is cheap enough to run on every message.

Transcripts come from whisper, so numbers arrive as "4111 1111 1111 1111", "4111-1111-...",
"1 2 3 4 5 6" (our own read-back) or spoken words ("four one one one ..."); all are caught.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

REDACTED = "[redacted]"
CARD = "[card number]"
PHONE = "[phone number]"
NUMBER = "[number]"
EMAIL = "[email]"

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Whisper writes dictated addresses as words: "john dot smith at gmail dot com".
_SPOKEN_EMAIL = re.compile(
    r"\b[\w.-]+(?:\s+dot\s+[\w-]+)*\s+at\s+[\w-]+(?:\s+dot\s+[\w-]+)*\s+dot\s+(?:com|net|org|edu|gov|io|co|uk|us|info)\b",
    re.IGNORECASE,
)
# Digits with at most one separator between them: 6+ of them is an account, card or phone.
_DIGIT_RUN = re.compile(r"\+?\(?\d(?:[ \-.()/]{0,2}\d){5,}")
_DIGIT_WORDS = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|niner)"
_SPOKEN_DIGITS = re.compile(rf"\b{_DIGIT_WORDS}(?:[\s,-]+{_DIGIT_WORDS}){{5,}}\b", re.IGNORECASE)


def _label_digits(match: re.Match) -> str:
    text = match.group(0)
    digits = sum(ch.isdigit() for ch in text)
    if 13 <= digits <= 19:
        return CARD
    if text.startswith(("+", "(")) or digits in (10, 11):
        return PHONE
    return NUMBER


def _secret_forms(secrets: Iterable[Any]) -> list[str]:
    """Sensitive slot values as they may appear in text: as typed, and digit by digit as read back."""
    forms: set[str] = set()
    for value in secrets:
        if value is None or isinstance(value, bool):
            continue
        text = str(value).strip()
        if len(text) < 3:  # "1" or "ok" would blank out ordinary words
            continue
        forms.add(text)
        if text.isdigit():
            forms.add(" ".join(text))
    return sorted(forms, key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[Any] = ()) -> str:
    """Replace emails, card/phone/account-like numbers and the given secret values."""
    if not text:
        return text
    for form in _secret_forms(secrets):
        text = re.sub(re.escape(form), REDACTED, text, flags=re.IGNORECASE)
    text = _EMAIL.sub(EMAIL, text)
    text = _SPOKEN_EMAIL.sub(EMAIL, text)
    text = _DIGIT_RUN.sub(_label_digits, text)
    text = _SPOKEN_DIGITS.sub(NUMBER, text)
    return text


# Types whose values are personal data whatever the designer marked; free text may hold anything.
_PII_TYPES = frozenset({"phone", "email"})


def redact_slots(slots: Mapping[str, Any], slot_defs: Mapping[str, Any]) -> dict[str, Any]:
    """Slot values safe to show a model: sensitive and PII-typed slots hidden, free text scrubbed.

    Typed, non-sensitive values (an order number, a date) pass through: the designer chose not to
    mark them, and the model needs them to help.
    """
    out: dict[str, Any] = {}
    for name, value in slots.items():
        spec = slot_defs.get(name)
        if spec is not None and (spec.sensitive or spec.type in _PII_TYPES):
            out[name] = REDACTED
        elif isinstance(value, str) and (spec is None or spec.type == "text"):
            out[name] = redact_text(value)
        else:
            out[name] = value
    return out


def sensitive_values(slots: Mapping[str, Any], slot_defs: Mapping[str, Any]) -> list[Any]:
    """The values of the slots marked `sensitive: true`, to scrub from free text too."""
    return [v for k, v in slots.items() if (spec := slot_defs.get(k)) is not None and spec.sensitive]
