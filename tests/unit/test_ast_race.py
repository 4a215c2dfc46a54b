"""A failing test is reported as a failure even while another thread parses Python source.

On CPython 3.11.7 (this project's CI) pytest died with an INTERNALERROR while formatting a
failure when a server thread printed a traceback at the same moment (tests/ast_race.py says
why). This runs that situation in a child pytest with the workaround; without it, the same run
ended in an INTERNALERROR three times in three on Python 3.11.7.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FAILING_TEST = '''
import ast, gc, sys, threading

def test_fails_while_another_thread_parses():
    # A collection that runs Python code (as finalizers and gc callbacks do in a real server),
    # and a thread that parses all the time (as traceback printing does).
    gc.callbacks.append(lambda phase, info: [i for i in range(50)])
    def parse_forever():
        while True:
            ast.parse("x = (1 + 2) * f(y)[3]")
    threading.Thread(target=parse_forever, daemon=True).start()
    sys.setswitchinterval(1e-6)
    assert False, "reported as a failure"
'''
# pytest parses the whole module to format the failure: a longer parse, a likelier race.
PADDING = "".join(f"\n\ndef helper_{i}(a, b):\n    return [a + b * k for k in range({i})]\n" for i in range(300))


def _pytest(tmp_path: Path, *plugin: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_race.py").write_text(FAILING_TEST + PADDING)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, "test_race.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_failure_while_another_thread_parses_is_reported_as_a_failure(tmp_path):
    result = _pytest(tmp_path, "-p", "tests.ast_race")
    output = result.stdout + result.stderr
    assert "INTERNALERROR" not in output, output[-3000:]
    assert result.returncode == 1 and "1 failed" in output, output[-3000:]
