"""`ivr serve` is ready only when its default flow can answer: a missing or broken default flow
stops it at start with the reason, before the models load; `--flow` takes a file too."""

import subprocess
import sys
from pathlib import Path

from ivr.serving.config import Settings
from ivr.serving.flows import FlowRepository
from ivr.tools.cli import _serve_flow_args, default_flow_problem

REPO = Path(__file__).parent.parent.parent
BROKEN = "flow: broken\nstart: nowhere\nnodes: {}\n"


def test_a_flow_file_is_served_alone_as_the_default(tmp_path):
    (tmp_path / "shop.yaml").write_text((REPO / "flows" / "order_status.yaml").read_text())
    (tmp_path / "other.yaml").write_text(BROKEN)  # beside it, not served
    assert _serve_flow_args(str(tmp_path / "shop.yaml"), None) == (tmp_path / "shop.yaml", "order_status")
    flows = FlowRepository(tmp_path / "shop.yaml")
    flows.reload()
    assert flows.names == ["order_status"] and not flows.errors
    assert _serve_flow_args("order_status", None) == (None, "order_status")  # a name stays a name
    assert _serve_flow_args(None, str(tmp_path)) == (tmp_path, None)


def test_a_missing_or_broken_flow_file_is_refused(tmp_path, capsys):
    assert _serve_flow_args(str(tmp_path / "nothere.yaml"), None) is None
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "broken.yaml").write_text(BROKEN)
    assert _serve_flow_args(str(tmp_path / "broken.yaml"), None) is None
    assert "broken.yaml:2" in capsys.readouterr().err  # the designer's file:line


def test_the_default_flow_must_be_loaded(tmp_path):
    (tmp_path / "broken.yaml").write_text(BROKEN)
    (tmp_path / "shop.yaml").write_text((REPO / "flows" / "order_status.yaml").read_text())
    flows = FlowRepository(tmp_path)
    flows.reload()
    problem = default_flow_problem(flows, Settings(flows_dir=tmp_path, default_flow="customer_service"))
    assert "'customer_service' is not loaded" in problem and "order_status" in problem and "broken.yaml:2" in problem
    assert default_flow_problem(flows, Settings(flows_dir=tmp_path, default_flow="order_status")) is None


def test_serve_stops_at_once_with_the_reason(tmp_path):
    (tmp_path / "broken.yaml").write_text(BROKEN)
    done = subprocess.run([sys.executable, "-m", "ivr.tools.cli", "serve", "--flow", str(tmp_path / "broken.yaml"),
                           "--port", "1"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2 and "start node 'nowhere'" in done.stderr
    assert "loading models" not in done.stdout  # refused before the minute the models take


def test_a_warm_up_call_is_placed_only_to_a_flow_that_greets_without_calling_out():
    from ivr.dialog.loader import load_flow, load_flow_text
    from ivr.media.warmup import greets_quietly

    assert all(greets_quietly(load_flow(p).flow) for p in sorted((REPO / "flows").glob("*.yaml")))
    backend_first = load_flow_text("""
flow: lookup
start: look
nodes:
  look: {action: {http: GET, url: "https://example.com/x"}, say: "Hello.", next: ask}
  ask: {say: "Yes?", collect: ok, next: bye}
  bye: {say: "Bye.", hangup: true}
slots:
  ok: {type: yes_no}
""")
    assert not greets_quietly(backend_first.flow)
