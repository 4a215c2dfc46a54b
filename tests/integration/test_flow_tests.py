"""Every example flow's conversation tests pass through `ivr test` with the real NLU models,
and `ivr test` fails (non-zero, with the reason) when a flow breaks its tests."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent.parent
pytestmark = pytest.mark.slow


def run_ivr(*args, cwd=REPO, stdin=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "ivr.tools.cli", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def test_all_example_flow_tests_pass():
    result = run_ivr("test", "flows/tests")
    print(result.stdout[-4000:])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " 0 failed" in result.stdout
    tested = {line.strip() for line in result.stdout.splitlines() if line.endswith(".test.yaml")}
    flows = {p.stem for p in (REPO / "flows").glob("*.yaml")}
    assert {Path(t).name.removesuffix(".test.yaml") for t in tested} == flows, "every flow needs a test file"


def test_a_failing_case_exits_nonzero_with_the_reason(tmp_path):
    (tmp_path / "bad.test.yaml").write_text(
        f"flow: {REPO / 'flows' / 'customer_service.yaml'}\n"
        "cases:\n"
        "  - name: wrong expectation\n"
        "    turns:\n"
        "      - dtmf: '1'\n"
        "        expect: {node: ask_order}\n"
    )
    result = run_ivr("test", str(tmp_path / "bad.test.yaml"), "--no-slm")
    assert result.returncode == 1
    assert "FAIL  wrong expectation" in result.stdout
    assert "expected node 'ask_order', got 'anything_else'" in result.stdout


def test_chat_in_text(tmp_path):
    """`ivr chat`: type what the caller says (or #keys) and see node, intent and slots."""
    result = run_ivr("chat", "flows/customer_service.yaml", "--no-slm",
                     stdin="where is my order\n#123456\nyes\n")
    out = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert "bot> Please say or key in your six digit order number." in out
    assert "[nlu] intent=order" in out
    assert "slots={'order_number': '123456'}" in out
    assert "[transfer to +15550100" in out
