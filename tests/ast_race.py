"""CPython 3.11.0-3.11.7 and 3.12.0-3.12.1 (python/cpython#106905, fixed in 3.11.8 and 3.12.2):
`ast.parse` keeps its recursion counter in per-interpreter state, so when a garbage collection
inside one parse runs Python code and another thread parses meanwhile, the first parse fails
with `SystemError: AST constructor recursion depth mismatch`.

pytest parses the test's source to format every failure, and Python's own traceback printing
parses the failing line, so a test that fails while one of its server threads prints a
traceback (the LLM fault servers do) made pytest die with an INTERNALERROR instead of
reporting the failure, and the rest of the suite never ran. Loaded as a plugin by
tests/conftest.py: on an affected Python, parses take turns, and the one case a lock cannot
cover (a parse started from a collection inside another parse, same thread) is retried.
"""

from __future__ import annotations

import ast
import functools
import sys
import threading

AFFECTED = (3, 11) <= sys.version_info[:3] < (3, 11, 8) or (3, 12) <= sys.version_info[:3] < (3, 12, 2)
_MISMATCH = "recursion depth mismatch"
_RETRIES = 5


def serialised(parse):
    lock = threading.RLock()

    @functools.wraps(parse)
    def parse_in_turn(*args, **kwargs):
        for attempt in range(_RETRIES):
            with lock:
                try:
                    return parse(*args, **kwargs)
                except SystemError as exc:
                    if _MISMATCH not in str(exc) or attempt == _RETRIES - 1:
                        raise

    parse_in_turn.ivr_serialised = True
    return parse_in_turn


def install() -> None:
    if AFFECTED and not getattr(ast.parse, "ivr_serialised", False):
        ast.parse = serialised(ast.parse)


install()
