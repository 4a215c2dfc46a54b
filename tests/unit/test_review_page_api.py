"""The Review page's API (#23, ivr/dashboard/review_api.py): only a logged-in operator, only the
dashboard's own pages may decide, and a decision made there is the same proven, audited change
as `ivr review`'s, which the running server then answers with."""

from __future__ import annotations

import time

import pytest
import yaml
from fastapi.testclient import TestClient

from ivr.calllog.store import CallStore
from ivr.nlu.intents import IntentClassifier
from ivr.nlu.service import NLUService
from ivr.serving.app import create_app
from ivr.serving.config import Settings
from ivr.serving.flows import FlowRepository
from ivr.serving.runtime import Runtime
from tests.fakes import ScriptedTranscriber, ToneSynthesizer
from tests.unit.test_intents import FakeEmbedder
from tests.unit.test_review_changes import FLOW, TESTS

DASH = "dash-token"
OWN = {"Origin": "http://testserver"}


@pytest.fixture
def server(tmp_path):
    flows = tmp_path / "flows"
    (flows / "tests").mkdir(parents=True)
    (flows / "shop.yaml").write_text(FLOW)
    (flows / "tests" / "shop.test.yaml").write_text(TESTS)
    store = CallStore(tmp_path / "calls.sqlite3")
    embedder = FakeEmbedder()
    embedder.id = "fake:64"
    settings = Settings(flows_dir=flows, dashboard_token=DASH, recording=True, recording_dir=tmp_path / "rec")
    repo = FlowRepository(flows)
    repo.reload()
    runtime = Runtime(settings=settings, stt=ScriptedTranscriber(), tts=ToneSynthesizer(),
                      nlu=NLUService(IntentClassifier(embedder), timeout=None), store=store, flows=repo,
                      models={}, secret="x")
    texts = ["what time do you shut the doors tonight", "what time do you shut tonight", "my cat sings opera",
             "when are you open in the morning"]
    for n, text in enumerate(texts):
        store.start_call(f"CA{n}", flow="shop", flow_version=repo.get("shop").version, started_at=time.time() - 60)
        store.add_event(f"CA{n}", "nlu", {"node": "main", "text": text, "intent": "out_of_scope" if n < 3 else "order",
                                          "confidence": 0.4, "source": "router", "ranked": [],
                                          "decision": {"escalate": False}})
        store.end_call(f"CA{n}", "completed")
    store.flush()
    client = TestClient(create_app(settings, runtime_factory=lambda: runtime))
    with client:
        client.post("/dashboard/login", data={"token": DASH})
        yield client, runtime, flows
    store.close()


def turn_id(runtime, call):
    return f"{call}:{next(e['seq'] for e in runtime.store.get_call(call)['events'] if e['type'] == 'nlu')}"


def test_the_queue_is_grouped_and_says_what_each_turn_can_be_given(server):
    client, runtime, _ = server
    queue = client.get("/dashboard/api/review").json()
    assert queue["total"] == 4 and queue["group_count"] == 3
    biggest = queue["groups"][0]
    assert biggest["size"] == 2 and "shut" in biggest["text"] and len(biggest["ids"]) == 2
    assert queue["flows"]["shop"]["main"] == ["hours", "order"]
    assert client.get("/dashboard/api/review?since=nonsense").status_code == 400
    client.cookies.clear()
    assert client.get("/dashboard/api/review").status_code == 401


def test_decisions_only_from_the_dashboards_own_pages_as_json(server):
    client, runtime, flows = server
    body = {"intent": "hours", "turns": [turn_id(runtime, "CA0")]}
    assert client.post("/dashboard/api/review/accept", json=body,
                       headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post("/dashboard/api/review/accept", data=body, headers=OWN).status_code == 415
    assert client.post("/dashboard/api/review/accept", json={"intent": "hours", "turns": "CA0"},
                       headers=OWN).status_code == 400
    refused = client.post("/dashboard/api/review/accept", json={**body, "intent": "refunds"}, headers=OWN)
    assert refused.status_code == 409 and "no intent 'refunds'" in refused.json()["detail"]
    client.cookies.clear()
    assert client.post("/dashboard/api/review/accept", json=body, headers=OWN).status_code == 401
    assert not (flows / "shop.reviewed.yaml").exists()


def test_a_group_accepted_on_the_page_is_proven_applied_audited_answered_with_and_undone(server):
    client, runtime, flows = server
    before = runtime.flows.get("shop").version
    group = client.get("/dashboard/api/review").json()["groups"][0]
    preview = client.post("/dashboard/api/review/accept", json={"intent": "hours", "turns": group["ids"],
                                                                 "dry_run": True, "by": "Dana"}, headers=OWN).json()
    assert preview["action"] == "dry_run" and not preview["written"] and len(preview["proof"]["fixed"]) == 2
    out = client.post("/dashboard/api/review/accept", json={"intent": "hours", "turns": group["ids"], "by": "Dana"},
                      headers=OWN).json()
    assert out["action"] == "accepted" and out["written"]
    entries = yaml.safe_load((flows / "shop.reviewed.yaml").read_text())["examples"]
    assert {e["by"] for e in entries} == {"Dana (session " + entries[0]["by"].split("(session ")[1]}
    deadline = time.time() + 10  # the flow watcher loads the new version; the next call answers with it
    while runtime.flows.get("shop").version == before and time.time() < deadline:
        time.sleep(0.1)
    assert runtime.flows.get("shop").version != before and runtime.flows.get("shop").reviewed == 2
    queue = client.get("/dashboard/api/review").json()
    assert queue["total"] == 2 and all("shut" not in g["text"] for g in queue["groups"])
    history = client.get("/dashboard/api/review/history").json()
    assert [c["change"] for c in history["changes"]] == [out["change"]]
    assert {a["action"] for a in history["actions"]} == {"accepted"} and len(history["actions"]) == 2

    back = client.post("/dashboard/api/review/undo", json={"change": out["change"]}, headers=OWN).json()
    assert back["action"] == "undone" and client.get("/dashboard/api/review").json()["total"] == 4


def test_dismissed_and_proposed_turns_leave_the_queue_and_proposals_are_listed(server):
    client, runtime, _ = server
    opera = turn_id(runtime, "CA2")
    r = client.post("/dashboard/api/review/settle", json={"action": "propose", "turns": [opera], "intent": "singing"},
                    headers=OWN)
    assert r.json() == {"action": "proposed", "turns": 1}
    client.post("/dashboard/api/review/settle", json={"action": "dismiss", "turns": [turn_id(runtime, "CA3")]},
                headers=OWN)
    queue = client.get("/dashboard/api/review").json()
    assert queue["total"] == 2
    assert [d["text"] for d in queue["dismissed"]] == ["when are you open in the morning"]
    assert queue["proposals"] == [{"flow": "shop", "intent": "singing", "turns": [
        {"id": opera, "text": "my cat sings opera", "by": queue["proposals"][0]["turns"][0]["by"]}]}]
    assert client.post("/dashboard/api/review/settle", json={"action": "propose", "turns": [opera]},
                       headers=OWN).status_code == 409  # a proposal needs a name
    assert client.post("/dashboard/api/review/settle", json={"action": "delete", "turns": [opera]},
                       headers=OWN).status_code == 400


def test_a_queued_turn_plays_the_callers_words_from_the_recording(server, tmp_path):
    import io
    import wave

    import numpy as np

    from ivr.media.recording import CallRecording, RecordingWriter

    client, runtime, _ = server
    clock = [1000.0]
    writer = RecordingWriter()
    rec = CallRecording(tmp_path / "rec" / "CA9.wav", writer=writer, clock=lambda: clock[0])
    (tmp_path / "rec").mkdir(exist_ok=True)
    t = np.arange(8000 * 4) / 8000  # 4 s: quiet, then the caller's 1 s of 300 Hz from 2.0 s, quiet again
    caller = np.where((t >= 2.0) & (t < 3.0), 6000 * np.sin(2 * np.pi * 300 * t), 0).astype(np.int16)
    for i in range(0, len(caller), 160):
        rec.caller(caller[i:i + 160], at=1000.0 + i / 8000)
        clock[0] = 1000.0 + (i + 160) / 8000
    info = rec.finish()
    writer.drain()
    store = runtime.store
    store.start_call("CA9", flow="shop", flow_version="v", started_at=time.time() - 60)
    store.add_event("CA9", "nlu", {"node": "main", "text": "my cat sings opera", "intent": "out_of_scope",
                                   "confidence": 0.4, "source": "router", "ranked": [], "decision": {"escalate": False},
                                   "speech": [rec.started_at + 2.0, rec.started_at + 3.0]})
    store.add_event("CA9", "recording", {"file": info.file, "duration_s": info.duration_s, "paused_s": 0,
                                         "started_at": info.started_at})
    store.end_call("CA9", "completed")
    store.flush()
    turn = next(e["seq"] for e in store.get_call("CA9")["events"] if e["type"] == "nlu")
    queue = client.get("/dashboard/api/review").json()
    assert queue["recording"] is True
    assert any(t["speech"] for g in queue["groups"] for t in g["turns"] if t["call_id"] == "CA9")
    r = client.get(f"/dashboard/api/calls/CA9/recording?turn={turn}")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(r.content)) as w:
        assert (w.getnchannels(), w.getframerate()) == (1, 8000)
        words = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert len(words) == pytest.approx(8000 * 1.6, abs=2)  # the second of words and 0.3 s either side
    assert np.abs(words[2400:-2400]).max() > 5000 and np.abs(words[:2000]).max() == 0
    assert client.get(f"/dashboard/api/calls/CA9/recording?turn={turn + 1}").status_code == 404  # not a turn
    assert client.get("/dashboard/api/calls/CA9/recording?turn=x").status_code == 400
    assert client.get("/dashboard/api/calls/CA9/recording").content[:4] == b"RIFF"  # the whole call as before
