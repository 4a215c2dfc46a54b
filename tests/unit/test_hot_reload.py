"""Editing a flow takes effect for new calls; a broken edit keeps the last good version."""

import json
import shutil
import time
from pathlib import Path

from fastapi.testclient import TestClient

from ivr.serving.app import create_app
from ivr.calllog.store import CallStore
from ivr.serving.config import Settings
from ivr.serving.flows import FlowRepository
from ivr.serving.runtime import Runtime
from tests.fakes import KeywordNLU, ScriptedTranscriber, ToneSynthesizer
from tests.unit.test_media_protocol import TOKEN, dtmf, hang_up, receive_until, start_msg, wait_for

REPO = Path(__file__).parent.parent.parent


def copy_flows(tmp_path: Path) -> Path:
    flows = tmp_path / "flows"
    flows.mkdir()
    shutil.copy(REPO / "flows" / "customer_service.yaml", flows)
    return flows


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    # mtime resolution can be coarse: make sure the edit is seen as a change
    later = time.time() + 2
    import os

    os.utime(path, (later, later))


def test_edit_is_picked_up_and_broken_edit_keeps_last_good(tmp_path):
    flows = copy_flows(tmp_path)
    prepared = []
    repo = FlowRepository(flows, prepare=prepared.append)
    assert repo.reload() == ["customer_service"]
    v1 = repo.get("customer_service")
    assert repo.reload() == []  # nothing changed

    edit(flows / "customer_service.yaml", "Thanks for calling Acme.", "Welcome to Acme.")
    assert repo.reload() == ["customer_service"]
    v2 = repo.get("customer_service")
    assert v2.version != v1.version and v2.flow.nodes["main_menu"].say.startswith("Welcome")
    assert [p.version for p in prepared] == [v1.version, v2.version]  # prepared before serving

    edit(flows / "customer_service.yaml", "start: main_menu", "start: no_such_node")
    assert repo.reload() == []
    assert repo.get("customer_service") is v2  # still serving the last good version
    errors = repo.errors[flows / "customer_service.yaml"]
    assert "no_such_node" in str(errors[0]) and errors[0].line > 1

    edit(flows / "customer_service.yaml", "start: no_such_node", "start: main_menu")
    # Fixed back to v2's exact content: the error clears and v2 keeps serving.
    assert repo.reload() == [] and not repo.errors
    assert repo.get("customer_service") is v2


def test_new_file_and_name_clash(tmp_path):
    flows = copy_flows(tmp_path)
    repo = FlowRepository(flows)
    repo.reload()
    text = (flows / "customer_service.yaml").read_text()
    (flows / "second.yaml").write_text(text.replace("flow: customer_service", "flow: second"))
    (flows / "clash.yaml").write_text(text + "\n# same name, other file\n")
    assert repo.reload() == ["second"]
    assert repo.get("customer_service").path.endswith("customer_service.yaml")


def test_call_in_progress_keeps_its_version(tmp_path):
    flows = copy_flows(tmp_path)
    store = CallStore(tmp_path / "calls.sqlite3")
    settings = Settings(twilio_auth_token=TOKEN, flows_dir=flows, public_url="https://bot.example.com")
    repo = FlowRepository(flows)
    repo.reload()
    runtime = Runtime(settings=settings, stt=ScriptedTranscriber(), tts=ToneSynthesizer(), nlu=KeywordNLU(),
                      store=store, flows=repo, models={}, secret=TOKEN)
    client = TestClient(create_app(settings, runtime_factory=lambda: runtime))
    with client:
        with client.websocket_connect("/twilio/media") as old_call:
            old_call.send_text(start_msg(call_sid="CAold"))
            receive_until(old_call, "media")
            edit(flows / "customer_service.yaml", "Please say or key in your six digit order number.",
                 "Please enter your six digit order number now.")
            assert wait_for(lambda: "Please enter" in str(repo.get("customer_service").flow.nodes["ask_order"].say), 5)
            with client.websocket_connect("/twilio/media") as new_call:
                new_call.send_text(start_msg(call_sid="CAnew", stream_sid="MZ1"))
                receive_until(new_call, "media")
                new_call.send_text(dtmf("2"))
                assert wait_for(lambda: "Please enter your six digit order number now." in runtime.tts.spoken)
                hang_up(new_call, call_sid="CAnew")
            old_call.send_text(dtmf("2"))
            assert wait_for(lambda: "Please say or key in your six digit order number." in runtime.tts.spoken)
            hang_up(old_call, call_sid="CAold")
    store.flush()
    old, new = store.get_call("CAold"), store.get_call("CAnew")
    assert old["flow_version"] != new["flow_version"]
    assert new["flow_version"] == repo.get("customer_service").version
    store.close()
