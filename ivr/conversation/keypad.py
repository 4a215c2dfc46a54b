"""Keys pressed toward one answer, and the node's rule for when they make a whole answer.

Pure: the session owns the inter-digit timer and decides what a complete entry means.
"""

from __future__ import annotations

from ivr.dialog.engine import Expectation


class KeypadEntry:
    def __init__(self) -> None:
        self.digits = ""

    def press(self, expectation: Expectation, key: str) -> bool:
        """Add `key`; True when the entry is complete and is answered now: the node's finish
        key (not kept), its digit count reached, or no menu key starting with these digits."""
        if expectation.finish_on_key and key == expectation.finish_on_key:
            return True
        self.digits += key
        if expectation.max_digits and len(self.digits) >= expectation.max_digits:
            return True
        return bool(expectation.dtmf_keys) and not any(k.startswith(self.digits) for k in expectation.dtmf_keys)

    def take(self) -> str:
        """The entry so far, and a fresh one begun."""
        digits, self.digits = self.digits, ""
        return digits
