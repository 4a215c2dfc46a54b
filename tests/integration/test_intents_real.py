"""The intent classifier with the real models: a small bank menu, obvious utterances.

Loads the MiniLM ONNX router and, when llama-cpp-python is importable, the Qwen SLM (seconds).
"""

from __future__ import annotations

import importlib.util

import pytest

from ivr.nlu.intents import IntentClassifier, load_intent_classifier
from ivr.nlu.understanding import OUT_OF_SCOPE, Intent

pytestmark = pytest.mark.slow

MENU = [
    Intent("balance", ("what's my balance", "how much money do I have", "check my account balance",
                       "how much is in my checking account")),
    Intent("lost_card", ("I lost my card", "my card was stolen", "I can't find my debit card",
                         "report a lost credit card")),
    Intent("pay_bill", ("I want to pay a bill", "pay my electricity bill", "make a bill payment",
                        "I need to pay my phone bill")),
    Intent("talk_to_agent", ("agent", "representative", "a real person", "let me talk to someone")),
]

OBVIOUS = [
    ("uh yeah I wanna know how much is in my checking", "balance"),
    ("what is my current balance", "balance"),
    ("somebody stole my card", "lost_card"),
    ("I think I lost my credit card", "lost_card"),
    ("I'd like to pay my water bill", "pay_bill"),
    ("can I speak to a human please", "talk_to_agent"),
]

OUT = ["what's the weather like on mars"]


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _registry_or_skip():
    from ivr.registry import RegistryError, model_registry

    reg = model_registry()
    try:
        reg.for_role("embedder")
    except RegistryError as exc:
        pytest.skip(f"embedder not installed: {exc}")
    return reg


@pytest.fixture(scope="module")
def router_only() -> IntentClassifier:
    reg = _registry_or_skip()
    clf = load_intent_classifier(reg, use_slm=False)
    clf.prepare("bank", MENU)
    return clf


@pytest.fixture(scope="module")
def hybrid() -> IntentClassifier:
    reg = _registry_or_skip()
    if not _have("llama_cpp"):
        pytest.skip("llama-cpp-python is not installed")
    clf = load_intent_classifier(reg, use_slm=True)
    if clf.slm is None:
        pytest.skip("the SLM could not be loaded (see the log)")
    clf.prepare("bank", MENU)
    return clf


@pytest.mark.parametrize("text,expected", OBVIOUS + [(t, OUT_OF_SCOPE) for t in OUT])
def test_router_only(router_only, text, expected):
    r = router_only.classify("bank", MENU, text)
    assert r.intent == expected, (r, router_only.calibration("bank"))
    assert r.source == "router"


def test_hybrid(hybrid):
    for text, expected in OBVIOUS + [(t, OUT_OF_SCOPE) for t in OUT]:
        r = hybrid.classify("bank", MENU, text)
        assert r.intent == expected, r
        assert r.intent in {i.name for i in MENU} | {OUT_OF_SCOPE}


def test_slm_verifies_the_obvious(hybrid):
    """The SLM's yes/no log-odds favour the right intent over the others (it settles the
    router's unsure turns by verifying the router's best guess)."""
    slm = hybrid.slm
    wrong = []
    for text, expected in OBVIOUS:
        odds = {i.name: slm.verify("bank", text, i.name) for i in MENU}
        if max(odds, key=odds.get) != expected:
            wrong.append((text, expected, odds))
    assert len(wrong) <= 1, wrong


def test_slm_prefix_is_cached_per_key(hybrid, monkeypatch):
    """A second menu does not evict the first: switching keys restores a saved state, it does
    not evaluate the prompt again (which costs seconds)."""
    slm = hybrid.slm
    other = [Intent("yes", ("yes", "yeah", "that's right")), Intent("no", ("no", "nope", "that's wrong"))]
    hybrid.prepare("confirm", other)
    a = slm.verify("bank", "somebody stole my card", "lost_card")
    evals = []
    original = slm._eval_prefix
    monkeypatch.setattr(slm, "_eval_prefix", lambda prompt: (evals.append(prompt), original(prompt)))
    slm.verify("confirm", "yes please", "yes")
    b = slm.verify("bank", "somebody stole my card", "lost_card")
    assert evals == []
    assert abs(a - b) < 0.5  # same prefix state, same answer (batching may move logits a little)
    assert slm.verify("confirm", "yeah that's right", "yes") > slm.verify("confirm", "yeah that's right", "no")


def test_slm_choose_prompt(hybrid):
    """The SLM-only baseline prompt (letters + "none of these") on a two-intent menu."""
    slm = hybrid.slm
    other = [Intent("yes", ("yes", "yeah", "that's right")), Intent("no", ("no", "nope", "that's wrong"))]
    slm.prepare("confirm-choose", other, modes=("choose",))
    probs = slm.score("confirm-choose", "yes that is correct")
    assert set(probs) == {"yes", "no", OUT_OF_SCOPE}
    assert abs(sum(probs.values()) - 1.0) < 1e-6
    assert max(probs, key=probs.get) == "yes"


def test_slm_budget_stops_the_evaluation_and_leaves_the_cache_clean(hybrid):
    """A spent budget raises before the next chunk; the next turn gets the same answer as if
    nothing had been cut (the aborted tokens do not stay in the KV cache)."""
    import time

    from ivr.nlu.slm_prompts import SlmBudgetExceeded

    slm = hybrid.slm
    text = "somebody stole my card yesterday at the station and I need to block it right now please"
    before = slm.verify("bank", text, "lost_card")
    with pytest.raises(SlmBudgetExceeded):
        slm.verify("bank", text, "lost_card", deadline=time.monotonic() - 1)
    chunked = slm.verify("bank", text, "lost_card", deadline=time.monotonic() + 60)
    after = slm.verify("bank", text, "lost_card")
    assert abs(after - before) < 1e-6
    assert abs(chunked - before) < 0.5  # chunked evaluation: same answer, logits move a little


def test_slm_takes_idle_cores_and_gives_them_back(hybrid, monkeypatch):
    """The thread count follows the machine's load chunk by chunk, and the answer does not
    depend on it (threads split the same arithmetic)."""
    import time

    from ivr.nlu.cpu_threads import ThreadPolicy

    slm = hybrid.slm
    text = "somebody stole my card yesterday at the station and I need to block it right now please"
    runnable = {"n": 1}
    monkeypatch.setattr(slm.threads, "policy", ThreadPolicy(1, 2, cpus=2, probe=lambda: runnable["n"]))
    idle = slm.verify("bank", text, "lost_card")
    assert slm.threads.last == 2
    runnable["n"] = 3  # another job wants the other core
    busy = slm.verify("bank", text, "lost_card", deadline=time.monotonic() + 60)
    assert slm.threads.last == 1
    assert abs(idle - busy) < 0.5
    runnable["n"] = None  # /proc/loadavg unreadable: the floor
    slm.verify("bank", text, "lost_card")
    assert slm.threads.last == 1


# Businesses whose own requests the built-in background set words as someone else's errand
# (ivr/nlu/router.py BACKGROUND_OOS): each menu must route its core request, said the way the
# background phrase says it, and still turn away what no such business handles.
OWN_ERRANDS = {
    "pizza": ([Intent("order", ("I'd like to place an order for delivery", "can I get a large pepperoni",
                                "I want two pizzas for pickup", "I'd like to order food")),
               Intent("order_status", ("where is my order", "my food hasn't arrived yet", "how long until my delivery")),
               Intent("hours", ("what are your hours", "are you open now", "when do you close tonight"))],
              "I want to order a pizza", "order"),
    "hotel": ([Intent("book_room", ("I'd like to book a room", "do you have a room for tonight",
                                    "I need a double room for two nights", "can I make a reservation")),
               Intent("cancel_booking", ("I need to cancel my reservation", "cancel my booking please")),
               Intent("front_desk", ("can I speak to the front desk", "connect me to reception"))],
              "I want to reserve a hotel room", "book_room"),
    "taxi": ([Intent("book_ride", ("I need a cab", "can you send a car to my address",
                                   "I'd like to book a ride for tomorrow morning", "pick me up at the station")),
              Intent("lost_item", ("I left my phone in the car", "I lost something in a taxi")),
              Intent("complaint", ("the driver was rude", "I want to complain about my ride"))],
             "I need a taxi to the airport", "book_ride"),
    "internet": ([Intent("outage", ("my connection keeps dropping", "the wifi isn't working", "I have no service",
                                    "is there an outage in my area")),
                  Intent("billing", ("I have a question about my bill", "why is my bill so high")),
                  Intent("install", ("I'd like to set up new service", "when can a technician come"))],
                 "my internet is down", "outage"),
    "shop": ([Intent("returns", ("I'd like to return something", "how do I send back an item",
                                 "I want a refund for my order", "this doesn't fit, can I exchange it")),
              Intent("order_status", ("where is my package", "has my order shipped", "track my delivery")),
              Intent("store_hours", ("what time do you open", "are you open on sunday"))],
             "I want to return a sweater I bought", "returns"),
}


@pytest.mark.parametrize("business", sorted(OWN_ERRANDS))
def test_a_business_is_not_turned_away_from_its_own_errand(router_only, business):
    intents, request, intent = OWN_ERRANDS[business]
    key = f"own-{business}"
    assert router_only.classify(key, intents, request).intent == intent
    assert request in router_only.calibration(key)["background_in_menu"]
    others = [r for b, (_, r, _) in OWN_ERRANDS.items() if b != business]
    for stranger in ("tell me a joke", "who won the game last night", "what's the capital of france", *others):
        assert router_only.classify(key, intents, stranger).intent == OUT_OF_SCOPE, stranger
