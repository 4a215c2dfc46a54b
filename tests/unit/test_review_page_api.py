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
    settings = Settings(flows_dir=flows, dashboard_token=DASH)
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
    assert queue["proposals"] == [{"flow": "shop", "intent": "singing", "turns": [
        {"id": opera, "text": "my cat sings opera", "by": queue["proposals"][0]["turns"][0]["by"]}]}]
    assert client.post("/dashboard/api/review/settle", json={"action": "propose", "turns": [opera]},
                       headers=OWN).status_code == 409  # a proposal needs a name
    assert client.post("/dashboard/api/review/settle", json={"action": "delete", "turns": [opera]},
                       headers=OWN).status_code == 400
