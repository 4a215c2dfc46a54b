"""Examples accepted from reviewed calls (#23), in NAME.reviewed.yaml beside the flow: merged into
the flow's intents on load, covered by its version, reloaded when they change, and handed to
the NLU (out-of-scope ones as examples of what not to route)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ivr.dialog.engine import FlowEngine
from ivr.dialog.loader import FlowLoadError, expand_flow_paths, load_flow
from ivr.dialog.reviewed import ReviewedError, parse_reviewed, reviewed_path
from ivr.nlu.understanding import OUT_OF_SCOPE
from ivr.serving.flows import FlowRepository

REPO = Path(__file__).parent.parent.parent


@pytest.fixture
def flows(tmp_path) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir()
    shutil.copy(REPO / "flows" / "customer_service.yaml", folder)
    return folder


def write(flows: Path, body: str) -> Path:
    path = flows / "customer_service.reviewed.yaml"
    path.write_text("# accepted from reviewed calls\nexamples:\n" + body)
    return path


def menu_intents(loaded, node="main_menu"):
    engine = FlowEngine(loaded)
    engine.state.node = node
    return engine.expectation()


def test_reviewed_examples_join_the_flows_intents_and_its_version(flows):
    plain = load_flow(flows / "customer_service.yaml")
    write(flows, """
  - {text: where has my parcel got to, intent: order, node: main_menu, by: session ab12, at: "2026-12-07T07:10:00Z", call: CA1}
  - {text: get me a human being, intent: talk_to_agent}
  - {text: can I buy a gift card, intent: out_of_scope, node: main_menu}
  - {text: what is the weather on mars, intent: out_of_scope}
""")
    loaded = load_flow(flows / "customer_service.yaml")
    assert loaded.version != plain.version and loaded.reviewed == 4
    assert reviewed_path(flows / "customer_service.yaml").name == "customer_service.reviewed.yaml"
    exp = menu_intents(loaded)
    order = next(o for o in exp.intents if o.name == "order")
    assert order.examples[-1] == "where has my parcel got to"
    assert order.examples[:-1] == next(o for o in menu_intents(plain).intents if o.name == "order").examples
    assert next(o for o in exp.intents if o.name == "talk_to_agent").examples[-1] == "get me a human being"
    assert exp.out_of_scope == ("what is the weather on mars", "can I buy a gift card")
    oos = [i for i in exp.candidates.intents if i.name == OUT_OF_SCOPE]
    assert oos and oos[0].examples == exp.out_of_scope  # to the NLU, as what not to route
    assert OUT_OF_SCOPE not in [o.name for o in exp.intents]  # never a choice of the flow's
    assert [p.name for p in expand_flow_paths([flows])] == ["customer_service.yaml"]


def test_a_reviewed_example_for_an_intent_the_flow_lacks_is_a_load_error(flows):
    write(flows, "  - {text: refund please, intent: refunds}\n")
    with pytest.raises(FlowLoadError) as err:
        load_flow(flows / "customer_service.yaml")
    assert "customer_service.reviewed.yaml" in str(err.value.errors[0]) and "no intent 'refunds'" in str(err.value.errors[0])
    write(flows, "  - {text: hi, intent: order, node: nowhere}\n")
    with pytest.raises(FlowLoadError, match="no node 'nowhere'"):
        load_flow(flows / "customer_service.yaml")
    for bad in ["examples: nope\n", "  - {intent: order}\n", "  - [: bad\n"]:
        with pytest.raises(ReviewedError):
            parse_reviewed("examples:\n" + bad if not bad.startswith("examples") else bad)


def test_the_server_reloads_a_flow_when_its_reviewed_examples_change(flows):
    repo = FlowRepository(flows)
    repo.reload()
    before = repo.get("customer_service").version
    path = write(flows, "  - {text: where has my parcel got to, intent: order, node: main_menu}\n")
    later = os.stat(flows / "customer_service.yaml").st_mtime + 5
    os.utime(path, (later, later))
    assert repo.reload() == ["customer_service"]
    after = repo.get("customer_service")
    assert after.version != before and after.reviewed == 1
    write(flows, "  - {text: refund please, intent: refunds}\n")  # broken: the last good one keeps serving
    os.utime(path, (later + 5, later + 5))
    assert repo.reload() == [] and repo.get("customer_service").version == after.version
    assert repo.errors


def test_every_reviewed_file_is_read_once_broken_ones_passed_over(tmp_path):
    from ivr.dialog.reviewed import flow_path_of, reviewed_files

    (tmp_path / "shop.yaml").write_text("flow: shop\n")
    (tmp_path / "shop.reviewed.yaml").write_text("examples:\n  - {text: hi there, intent: hours}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "bank.reviewed.yml").write_text("examples: [not, a, mapping")
    found = list(reviewed_files(tmp_path))
    assert [(p.name, [e.text for e in ex]) for p, ex in found] == [("shop.reviewed.yaml", ["hi there"])]
    assert flow_path_of(found[0][0]) == tmp_path / "shop.yaml"
    assert flow_path_of(tmp_path / "sub" / "bank.reviewed.yml") is None  # no flow beside it
