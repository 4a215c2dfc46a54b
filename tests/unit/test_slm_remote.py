"""RemoteSlmScorer with a fake OpenAI client: prompt shape, log-odds, degraded servers."""

from types import SimpleNamespace as NS

import pytest

from ivr.nlu.intents import Intent
from ivr.nlu.slm_remote import VERDICT_LOG_ODDS, RemoteSlmError, RemoteSlmScorer
from ivr.registry import _adhoc_entry

INTENTS = [Intent("pay_bill", ("pay my bill", "make a payment")), Intent("hours", ("opening hours",))]


class FakeChat:
    def __init__(self, reply):
        self.reply = reply
        self.calls = []

    def create(self, **kw):
        self.calls.append(kw)
        r = self.reply(kw) if callable(self.reply) else self.reply
        if isinstance(r, Exception):
            raise r
        return r


def _client(reply, models=("remote-qwen",)):
    chat = FakeChat(reply)
    return NS(chat=NS(completions=chat), models=NS(list=lambda: [NS(id=m) for m in models])), chat


def _reply(content, tops=None):
    lp = NS(content=[NS(top_logprobs=[NS(token=t, logprob=v) for t, v in tops])]) if tops is not None else None
    return NS(choices=[NS(message=NS(content=content), logprobs=lp)])


def test_log_odds_from_top_logprobs_and_prompt_shape():
    client, chat = _client(_reply("yes", [("yes", -0.1), ("no", -2.5), (" Yes", -3.0)]))
    s = RemoteSlmScorer("http://x/v1", client=client)
    assert s.model == "remote-qwen"  # the server's first model when none is named
    s.prepare("menu", INTENTS)
    lo = s.verify("menu", "I'd like to pay what I owe", "pay_bill")
    assert lo == pytest.approx(-0.1 + 0.0 - (-2.5), abs=0.2)  # "yes" variants add up
    last = chat.calls[-1]
    assert last["max_tokens"] == 1 and last["logprobs"] is True and last["temperature"] == 0.0
    msgs = last["messages"]
    assert msgs[0]["role"] == "system" and "pay bill" in msgs[0]["content"]
    assert msgs[-1] == {"role": "user", "content": 'Caller: "I\'d like to pay what I owe"\nRequest: pay bill'}
    # the few-shot turns alternate user/assistant and answer only yes or no
    assert {m["content"] for m in msgs[1:-1] if m["role"] == "assistant"} <= {"yes", "no"}


def test_missing_label_uses_floor():
    client, _ = _client(_reply("no", [("no", -0.05), ("maybe", -4.0)]))
    s = RemoteSlmScorer("http://x/v1", "m", client=client)
    s.prepare("menu", INTENTS)
    assert s.verify("menu", "what's the weather", "hours") < -10


def test_server_without_logprobs_gives_a_firm_verdict():
    client, _ = _client(_reply("No."))
    s = RemoteSlmScorer("http://x/v1", "m", client=client)
    s.prepare("menu", INTENTS)
    assert s.verify("menu", "tell me a joke", "hours") == -VERDICT_LOG_ODDS


def test_garbage_and_errors_raise_a_clear_error():
    client, chat = _client(_reply("yes"))
    s = RemoteSlmScorer("http://x/v1", "m", client=client)
    s.prepare("menu", INTENTS)
    chat.reply = _reply("As an AI model I")
    with pytest.raises(RemoteSlmError, match="not yes or no"):
        s.verify("menu", "hello", "hours")
    chat.reply = ConnectionError("refused")
    with pytest.raises(RemoteSlmError, match="refused"):
        s.verify("menu", "hello", "hours")


def test_classifier_falls_back_to_the_router_when_the_server_fails():
    from ivr.nlu.intents import IntentClassifier
    from tests.unit.test_intents import FakeEmbedder

    client, chat = _client(_reply("yes", [("yes", -0.1), ("no", -3.0)]))
    slm = RemoteSlmScorer("http://x/v1", "m", client=client)
    clf = IntentClassifier(FakeEmbedder(), slm, accept_band=100.0, reject_band=100.0)  # SLM on every turn
    clf.prepare("menu", INTENTS)
    assert clf.classify("menu", INTENTS, "pay my bill").source == "slm"
    chat.reply = TimeoutError("slow")
    r = clf.classify("menu", INTENTS, "pay my bill")
    assert r.source == "router" and r.detail.get("slm_error")


def test_adhoc_registry_entries():
    e = _adhoc_entry("http://10.0.0.5:8080/v1#qwen2.5-3b")
    assert e["source"] == "url" and e["url"] == "http://10.0.0.5:8080/v1" and e["model"] == "qwen2.5-3b"
    assert _adhoc_entry("http://h/v1")["model"] is None
    assert _adhoc_entry("some-registry-name") is None
    assert _adhoc_entry("/definitely/not/here.gguf") is None
