"""`ivr review accept` (#23): reviewed turns become examples only after the change is proven on
the flow's queued turns and its tests; a change that breaks a test is refused and nothing is
written. Offline: the bag-of-words embedder of test_intents stands in for the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ivr.calllog.store import open_store
from ivr.dialog.loader import load_flow
from ivr.nlu.intents import IntentClassifier
from ivr.nlu.service import NLUService
from ivr.tools.review import accepted_turns, not_yet_reviewed
from ivr.tools.review_accept import AcceptError, accept
from tests.unit.test_intents import FakeEmbedder

FLOW = """flow: shop
start: main
nodes:
  main:
    say: Hours or an order?
    intents:
      hours: {examples: [what are your opening hours, when are you open, store hours], goto: hours}
      order: {examples: [where is my order, track my package, order status], goto: order}
  hours: {say: We open at nine., hangup: true}
  order: {say: Your order is on its way., hangup: true}
"""
TESTS = """# the designer's tests
flow: ../shop.yaml
cases:
  - name: hours
    turns:
      - user: when are you open in the morning
        expect: {intent: hours, node: hours}
"""


@pytest.fixture
def setup(tmp_path):
    flows = tmp_path / "flows"
    (flows / "tests").mkdir(parents=True)
    (flows / "shop.yaml").write_text(FLOW)
    (flows / "tests" / "shop.test.yaml").write_text(TESTS)
    store = open_store(str(tmp_path / "calls.sqlite3"))
    store.start_call("CA1", flow="shop", flow_version="v", started_at=1.0)
    for text, intent in [("what time do you shut the doors tonight", "out_of_scope"), ("[redacted]", "out_of_scope"),
                         ("when are you open in the morning", "order")]:
        store.add_event("CA1", "nlu", {"node": "main", "text": text, "intent": intent, "confidence": 0.4,
                                       "source": "router", "ranked": [], "decision": {"escalate": False}})
    store.end_call("CA1", "completed", ended_at=9.0)
    store.flush()
    classifier = IntentClassifier(FakeEmbedder())
    yield flows, store, classifier, NLUService(classifier, timeout=None)
    store.close()


def seq_of(store, text):
    return next(e["seq"] for e in store.get_call("CA1")["events"] if e["type"] == "nlu" and e["data"]["text"] == text)


def test_accepted_turns_are_proven_then_written_with_who_when_and_which_call(setup):
    flows, store, classifier, nlu = setup
    turn = f"CA1:{seq_of(store, 'what time do you shut the doors tonight')}"
    before = load_flow(flows / "shop.yaml").version
    proof, lines = accept(store, flows, "hours", [turn], by="dana", classifier=classifier, nlu=nlu, dry_run=True)
    assert proof.fixed and proof.tests_passed == 1 and not proof.test_failures
    assert not (flows / "shop.reviewed.yaml").exists() and "dry run" in lines[-1]
    proof, lines = accept(store, flows, "hours", [turn], by="dana", classifier=classifier, nlu=nlu)
    written = yaml.safe_load((flows / "shop.reviewed.yaml").read_text())["examples"]
    assert written[0]["text"] == "what time do you shut the doors tonight" and written[0]["intent"] == "hours"
    assert (written[0]["node"], written[0]["by"], written[0]["call"]) == ("main", "dana", "CA1") and written[0]["at"]
    loaded = load_flow(flows / "shop.yaml")
    assert loaded.version != before and loaded.reviewed == 1
    assert "threshold at main" in "\n".join(lines)
    # reviewed now: `ivr review` no longer shows it
    queue = store.review_queue()
    left = not_yet_reviewed(queue, accepted_turns(flows))
    assert "what time do you shut the doors tonight" in [t["text"] for t in queue]
    assert "what time do you shut the doors tonight" not in [t["text"] for t in left] and len(left) == len(queue) - 1


def test_a_change_that_breaks_a_flow_test_is_refused_and_nothing_is_written(setup):
    flows, store, classifier, nlu = setup
    turn = f"CA1:{seq_of(store, 'when are you open in the morning')}"  # labelled order: the hours test would break
    proof, lines = accept(store, flows, "order", [turn], by="dana", classifier=classifier, nlu=nlu)
    assert proof.test_failures and "refused" in lines[-1]
    assert not (flows / "shop.reviewed.yaml").exists()


def test_what_cannot_become_an_example_is_refused_with_the_reason(setup):
    flows, store, classifier, nlu = setup
    for intent, turn, words in [("refunds", f"CA1:{seq_of(store, 'when are you open in the morning')}", "no intent 'refunds'"),
                                ("hours", f"CA1:{seq_of(store, '[redacted]')}", "redacted"),
                                ("hours", "CA1:999", "no such turn"), ("hours", "nonsense", "no such turn")]:
        with pytest.raises(AcceptError, match=words):
            accept(store, flows, intent, [turn], by="dana", classifier=classifier, nlu=nlu)
    assert not (flows / "shop.reviewed.yaml").exists()
    assert Path(flows / "tests" / "shop.test.yaml").read_text().startswith("# the designer's tests")
