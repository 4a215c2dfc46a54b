"""A reviewer's decisions (#23, ivr/review/changes.py): reviewed turns become examples only after
the change is proven on the flow's queued turns and its tests; a change that breaks a test is
refused and nothing is written; a change is undone the same way; dismissed and proposed turns
leave the queue; every decision is an audit event in the call log. Offline: the bag-of-words
embedder of test_intents stands in for the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ivr.calllog.store import open_store
from ivr.dialog.loader import load_flow
from ivr.nlu.intents import IntentClassifier
from ivr.nlu.service import NLUService
from ivr.calllog.review_queue import settled_turns
from ivr.review.changes import ChangeError, accept, applied_changes, prove, settle, undo, without_change
from ivr.review.groups import accepted_turns, reviewed
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


def find(flows):
    def get(name):
        path = flows / f"{name}.yaml"
        return load_flow(path) if path.exists() else None
    return get


def audit(store, call="CA1"):
    store.flush()
    return [e["data"] for e in store.get_call(call)["events"] if e["type"] == "review"]


def seq_of(store, text):
    return next(e["seq"] for e in store.get_call("CA1")["events"] if e["type"] == "nlu" and e["data"]["text"] == text)


def test_accepted_turns_are_proven_then_written_with_who_when_and_which_call(setup):
    flows, store, classifier, nlu = setup
    turn = f"CA1:{seq_of(store, 'what time do you shut the doors tonight')}"
    before = load_flow(flows / "shop.yaml").version
    out = accept(store, find(flows), flows, "hours", [turn], by="dana", classifier=classifier, nlu=nlu, dry_run=True)
    assert out.action == "dry_run" and out.proof.fixed and out.proof.tests_passed == 1 and not out.proof.test_failures
    assert not (flows / "shop.reviewed.yaml").exists() and "dry run" in out.lines[-1]
    assert audit(store) == []  # a preview decides nothing
    out = accept(store, find(flows), flows, "hours", [turn], by="dana", classifier=classifier, nlu=nlu)
    assert out.action == "accepted" and out.written and out.change.startswith("r")
    written = yaml.safe_load((flows / "shop.reviewed.yaml").read_text())["examples"]
    assert written[0]["text"] == "what time do you shut the doors tonight" and written[0]["intent"] == "hours"
    assert (written[0]["node"], written[0]["by"], written[0]["call"]) == ("main", "dana", "CA1") and written[0]["at"]
    assert written[0]["change"] == out.change
    loaded = load_flow(flows / "shop.yaml")
    assert loaded.version != before and loaded.reviewed == 1
    assert "threshold at main" in "\n".join(out.lines)
    [event] = audit(store)
    assert event["action"] == "accepted" and event["by"] == "dana" and event["intent"] == "hours"
    assert event["turn"] == int(turn.split(":")[1]) and event["change"] == out.change
    # reviewed now: `ivr review` no longer shows it
    queue = store.review_queue()
    left = store.review_queue(skip=reviewed(accepted_turns(flows)))
    assert "what time do you shut the doors tonight" in [t["text"] for t in queue]
    assert "what time do you shut the doors tonight" not in [t["text"] for t in left] and len(left) == len(queue) - 1
    assert [c["change"] for c in applied_changes(flows)] == [out.change]

    # and undone: the entry goes, the designer's own lines stay, the turn is back in the queue
    path = flows / "shop.reviewed.yaml"
    path.write_text("# a designer's note\n" + path.read_text())
    back = undo(store, flows, out.change, by="lee", classifier=classifier, nlu=nlu)
    assert back.action == "undone" and back.turns == 1
    assert path.read_text().startswith("# a designer's note\n") and "shut the doors" not in path.read_text()
    assert load_flow(flows / "shop.yaml").reviewed == 0
    assert len(store.review_queue(skip=reviewed(accepted_turns(flows)))) == len(queue)
    assert [e["action"] for e in audit(store)] == ["accepted", "undone"] and audit(store)[-1]["by"] == "lee"
    with pytest.raises(ChangeError, match="no change"):
        undo(store, flows, out.change, by="lee", classifier=classifier, nlu=nlu)


def test_a_change_that_breaks_a_flow_test_is_refused_and_nothing_is_written(setup):
    flows, store, classifier, nlu = setup
    turn = f"CA1:{seq_of(store, 'when are you open in the morning')}"  # labelled order: the hours test would break
    out = accept(store, find(flows), flows, "order", [turn], by="dana", classifier=classifier, nlu=nlu)
    assert out.action == "refused" and out.proof.test_failures and "refused" in out.lines[-1]
    assert not (flows / "shop.reviewed.yaml").exists()
    [event] = audit(store)  # the refusal is audited too, with its reason
    assert event["action"] == "refused" and "hours" in event["reason"]


def test_an_undo_that_would_break_a_flow_test_is_refused(setup):
    flows, store, classifier, nlu = setup
    turn = f"CA1:{seq_of(store, 'what time do you shut the doors tonight')}"
    out = accept(store, find(flows), flows, "hours", [turn], by="dana", classifier=classifier, nlu=nlu)
    tests = flows / "tests" / "shop.test.yaml"  # a test written since, that holds only with the example
    tests.write_text(tests.read_text() + """  - name: closing time
    turns:
      - user: what time do you shut the doors tonight
        expect: {intent: hours}
""")
    back = undo(store, flows, out.change, by="lee", classifier=classifier, nlu=nlu)
    assert back.action == "refused" and "closing time" in "\n".join(back.proof.test_failures)
    assert load_flow(flows / "shop.yaml").reviewed == 1


def test_dismissed_and_proposed_turns_leave_the_queue_until_restored(setup):
    flows, store, classifier, nlu = setup
    shut = f"CA1:{seq_of(store, 'what time do you shut the doors tonight')}"
    morning = f"CA1:{seq_of(store, 'when are you open in the morning')}"
    settle(store, [shut], "proposed", by="dana", intent="closing_time")
    settle(store, [morning], "dismissed", by="dana")
    store.flush()
    settled = settled_turns(store.review_actions())
    assert store.review_queue(skip=reviewed(set(), settled)) == []
    settle(store, [shut], "restored", by="lee")
    store.flush()
    left = store.review_queue(skip=reviewed(set(), settled_turns(store.review_actions())))
    assert [t["text"] for t in left] == ["what time do you shut the doors tonight"]
    assert [e["action"] for e in audit(store)] == ["proposed", "dismissed", "restored"]
    assert audit(store)[0]["intent"] == "closing_time"
    with pytest.raises(ChangeError, match="needs a name"):
        settle(store, [shut], "proposed", by="dana", intent=" ")
    assert not (flows / "shop.reviewed.yaml").exists()


def test_undo_keeps_every_line_of_other_changes():
    text = """# header
examples:
  # my own note about the first one
  - text: a
    intent: hours
    change: r1
  - {text: b, intent: order, change: r2}
  - text: c
    intent: hours
    change: r1
"""
    new, removed = without_change(text, "r1")
    assert [e["text"] for e in removed] == ["a", "c"]
    assert new == "# header\nexamples:\n  - {text: b, intent: order, change: r2}\n"  # a's note went with it
    notes = """examples:
  - {text: a, intent: hours, change: r1}
# about b, at the margin
  # and indented
  - {text: b, intent: order, change: r2}
  - {text: c, intent: hours, change: r1}
# the end
"""
    new, removed = without_change(notes, "r1")
    assert [e["text"] for e in removed] == ["a", "c"]
    assert new == "examples:\n# about b, at the margin\n  # and indented\n  - {text: b, intent: order, change: r2}\n# the end\n"
    with pytest.raises(ChangeError, match="by hand"):  # an entry it cannot read as one item is not silently kept
        without_change("examples:\n  - {text: a, intent: hours,\n change: r1}\n", "r1")


def test_what_cannot_become_an_example_is_refused_with_the_reason(setup):
    flows, store, classifier, nlu = setup
    for intent, turn, words in [("refunds", f"CA1:{seq_of(store, 'when are you open in the morning')}", "no intent 'refunds'"),
                                ("hours", f"CA1:{seq_of(store, '[redacted]')}", "redacted"),
                                ("hours", "CA1:999", "no such turn"), ("hours", "nonsense", "no such turn")]:
        with pytest.raises(ChangeError, match=words):
            accept(store, find(flows), flows, intent, [turn], by="dana", classifier=classifier, nlu=nlu)
    assert not (flows / "shop.reviewed.yaml").exists()
    assert Path(flows / "tests" / "shop.test.yaml").read_text().startswith("# the designer's tests")


def test_a_change_that_could_not_be_written_is_refused_before_the_proof(setup, monkeypatch):
    import os

    flows, store, classifier, nlu = setup
    turn = f"CA1:{seq_of(store, 'what time do you shut the doors tonight')}"
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == flows else real(path, mode))
    proved = []
    monkeypatch.setattr("ivr.review.changes.prove", lambda *a, **k: proved.append(1))
    with pytest.raises(ChangeError, match="cannot be written here"):  # a read-only flows folder (the image)
        accept(store, find(flows), flows, "hours", [turn], by="dana", classifier=classifier, nlu=nlu)
    assert proved == [] and audit(store) == []


def test_a_change_proven_while_another_landed_is_not_written_over_it(setup, monkeypatch):
    flows, store, classifier, nlu = setup
    turn = f"CA1:{seq_of(store, 'what time do you shut the doors tonight')}"
    path = flows / "shop.reviewed.yaml"
    real = prove

    def slow_proof(*args, **kwargs):  # another reviewer's change lands while this one is proven
        path.write_text("examples:\n  - {text: store hours please, intent: hours, by: lee, change: rOTHER}\n")
        return real(*args, **kwargs)

    monkeypatch.setattr("ivr.review.changes.prove", slow_proof)
    with pytest.raises(ChangeError, match="changed while"):
        accept(store, find(flows), flows, "hours", [turn], by="dana", classifier=classifier, nlu=nlu)
    assert "rOTHER" in path.read_text() and "shut the doors" not in path.read_text()
    assert audit(store) == [] and not list(flows.glob("*.tmp"))
