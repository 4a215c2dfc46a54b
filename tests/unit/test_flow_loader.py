"""Flow files load, and each typical mistake is reported at the line a designer must edit."""

from pathlib import Path

import pytest

from ivr.dialog.loader import FlowLoadError, load_flow, load_flow_text, validate_paths

HERE = Path(__file__).parent
BROKEN = HERE / "flows_broken"
REPO = HERE.parent.parent


def errors_of(name: str):
    with pytest.raises(FlowLoadError) as info:
        load_flow(BROKEN / name)
    return info.value.errors


def test_every_shipped_flow_is_valid():
    loaded, errors = validate_paths([REPO / "flows"])
    assert errors == []
    assert "customer_service" in {f.name for f in loaded}


def test_version_is_content_hash_and_changes_with_content():
    text = (REPO / "flows" / "customer_service.yaml").read_text()
    a = load_flow_text(text, "a.yaml")
    b = load_flow_text(text + "\n# edited\n", "a.yaml")
    assert a.version != b.version and len(a.version) == 12
    assert load_flow_text(text, "c.yaml").version == a.version


@pytest.mark.parametrize(
    "name, line, column, fragment",
    [
        ("yaml_syntax.yaml", 6, 11, "YAML syntax"),
        ("unknown_key.yaml", 6, 5, "unknown key 'hangpu'"),
        ("unknown_goto.yaml", 7, 48, "unknown node 'salez'"),
        ("unreachable.yaml", 7, 3, "'orphan' is unreachable"),
        ("slot_without_parser.yaml", 6, 14, "not declared under `slots`"),
        ("missing_prompt.yaml", 4, 3, "has no `say` prompt"),
        ("dead_end.yaml", 4, 3, "dead end"),
        ("bad_condition.yaml", 10, 13, "condition"),
        ("duplicate_key.yaml", 7, 3, "duplicate key 'a'"),
        ("unknown_slot_in_prompt.yaml", 5, 10, "no declared slot 'balance'"),
        ("flow_mapping_comma.yaml", 4, 26, "put the text in quotes"),
        ("wrong_type.yaml", 4, 13, "slots.n.type"),
    ],
)
def test_broken_flow_reports_file_line_column(name, line, column, fragment):
    errors = errors_of(name)
    match = [e for e in errors if fragment in e.message]
    assert match, f"no error mentions {fragment!r}: {[str(e) for e in errors]}"
    err = match[0]
    assert err.file.endswith(name)
    assert (err.line, err.column) == (line, column), str(err)
    assert str(err).startswith(f"{err.file}:{line}:{column}: ")


def test_validate_reports_all_errors_of_a_directory():
    loaded, errors = validate_paths([BROKEN])
    assert loaded == []
    files = {Path(e.file).name for e in errors}
    assert len(files) == len(list(BROKEN.glob("*.yaml")))


def test_missing_file_is_an_error_not_a_crash(tmp_path):
    with pytest.raises(FlowLoadError) as info:
        load_flow(tmp_path / "nope.yaml")
    assert "cannot read" in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(FlowLoadError) as info:
        load_flow(path)
    assert "empty" in str(info.value)


def test_a_mistyped_target_names_the_node_meant_and_nothing_else():
    """The node the typo meant is unreachable too; saying so nine times buries the one error."""
    errors = errors_of("unknown_goto.yaml")
    assert [e.message for e in errors] == ["node 'menu' goes to unknown node 'salez' (did you mean 'sales'?)"]


@pytest.mark.parametrize("value, read", [
    ("No", "the boolean false"), ("yes", "the boolean true"), ("+15550142", "the number 15550142"),
])
def test_text_yaml_reads_as_a_boolean_or_a_number_says_to_quote_it(value, read):
    text = f"flow: f\nstart: a\nnodes:\n  a:\n    say: {value}\n    hangup: true\n"
    with pytest.raises(FlowLoadError) as info:
        load_flow_text(text, "f.yaml")
    (err,) = info.value.errors  # one error, not one per type the key accepts
    assert (err.line, err.column) == (5, 10) and read in err.message and "put it in quotes" in err.message


def test_a_colon_inside_unquoted_text_says_to_quote_it():
    with pytest.raises(FlowLoadError) as info:
        load_flow_text("flow: f\nstart: a\nnodes:\n  a:\n    say: Note: we are closed\n    hangup: true\n", "f.yaml")
    assert "put the text in quotes" in str(info.value)


def test_two_files_of_one_flow_name_are_an_error(tmp_path):
    """The server would answer with one of them and refuse the other."""
    text = "flow: same\nstart: a\nnodes:\n  a:\n    say: Hello.\n    hangup: true\n"
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "b.yaml").write_text(text.replace("Hello.", "Hi."))
    (tmp_path / "c.draft.yaml").write_text(text)  # a draft of it is how flows are changed
    loaded, errors = validate_paths([tmp_path])
    assert len(loaded) == 3
    (err,) = errors
    assert err.file.endswith("b.yaml") and (err.line, err.column) == (1, 7) and "a.yaml" in err.message
