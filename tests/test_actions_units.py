"""The code actions' pure parts, without models: <think> splitting, where actions are offered,
code written in each format (and refused when it would not parse), trimming of generated
methods, and a scripted answer whose <think> section must never reach an edit."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from server.actions import ActionError, ActionInput, ActionOptions, Run, offered, site_at
from server.actions.code import (
    method_that_parses,
    plan_patterns,
    split_methods,
    sunit_selector,
)
from server.actions.formats import (
    CodeEdit,
    EditRejected,
    NewMethod,
    add_methods,
    apply_changes,
    check_edit,
    comment_insertion,
    new_class,
)
from server.actions.generate import generate_yielding
from server.actions.run import run_action
from server.actions.targets import comment_at, looks_like_smalltalk
from server.actions.thinking import (
    UnfinishedThinking,
    answer_only,
    document_markdown,
    split_thinking,
)
from server.engine.types import CancelToken, GenerateParams, Generation
from server.project_model import ProjectModel
from smalltalk_grammar import parse, parse_path

SAMPLE = Path(__file__).parent / "fixtures" / "sample"
FILES = {
    "tonel": SAMPLE / "tonel" / "StreamingRights-Core" / "SRStore.class.st",
    "chunk": SAMPLE / "chunk-squeak" / "StreamingRights.st",
    "vw": SAMPLE / "chunk-vw" / "StreamingRights.st",
    "bracket": SAMPLE / "gnu" / "StreamingRights.st",
}


def load(name: str) -> tuple[str, str]:
    path = FILES[name]
    return str(path), path.read_text(encoding="utf-8")


# --- <think> ----------------------------------------------------------------------------------


def test_think_answer_and_reasoning_are_split():
    t = split_thinking("<think>\nThe user wants X.\n</think>\n\nIt answers the rights.")
    assert (t.answer, t.reasoning) == ("It answers the rights.", "The user wants X.")
    assert t.finished


def test_think_without_opening_tag():
    # DeepSeek-R1's template puts <think> into the prompt: the text starts inside it.
    t = split_thinking("first I look at it</think>The answer.")
    assert (t.answer, t.reasoning) == ("The answer.", "first I look at it")


def test_think_without_closing_tag_has_no_answer():
    t = split_thinking("<think>still thinking when the tokens ran out")
    assert not t.finished and t.answer == "" and "ran out" in t.reasoning
    with pytest.raises(UnfinishedThinking):
        answer_only("<think>still thinking")


def test_several_think_sections_and_plain_text():
    t = split_thinking("A <think>one</think>B<THINK>two</THINK> C")
    assert t.answer == "A B C" and t.reasoning == "one\n\ntwo"
    assert answer_only("no tags at all") == "no tags at all"


def test_document_shows_answer_first_and_folds_reasoning():
    md = document_markdown("Explanation: X", split_thinking("<think>why</think>What."), "_hdr_")
    assert md.index("What.") < md.index("<details>") < md.index("why")
    assert md.startswith("# Explanation: X")
    unfinished = document_markdown("T", split_thinking("<think>half a thought"))
    assert "no closing `</think>`" in unfinished and "half a thought" in unfinished


# --- where actions are offered -----------------------------------------------------------------


def site(name: str, needle: str, length: int = 0, skip: int = 0):
    path, text = load(name)
    start = text.index(needle) + skip
    return site_at(parse(text, path), text, start, start + length)


def test_on_a_method_without_comment():
    found = offered(site("tonel", "SRStore >> isEmpty", skip=12))
    assert set(found) == {"explain", "tests", "comment"} and not any(found.values())


def test_on_a_method_with_comment_no_comment_action():
    found = offered(site("chunk", "rightsFor: aTerritory\n", skip=2))
    assert set(found) == {"explain", "tests"}


def test_on_a_class_definition():
    found = offered(site("tonel", "#superclass : #Object"))
    assert set(found) == {"explain", "tests"}


def test_in_a_comment_design_and_implement():
    s = site("bracket", "Add aRight to the receiver", skip=4)
    assert s.comment.startswith("Add aRight to the receiver")
    found = offered(s)
    assert {"design", "implement"} <= set(found)


def test_selection_of_prose_disables_explain():
    path, text = load("tonel")
    source = parse(text, path)
    start = text.index("I hold a name")
    s = site_at(source, text, start, start + 40)
    found = offered(s)
    assert found["explain"] == "the selection is not Smalltalk code"
    assert "design" in found and "comment" not in found and "tests" not in found


def test_selection_of_code_offers_explain():
    code = "^ self rights select: [ :each | each territory = aTerritory ]"
    s = site("tonel", code, length=len(code))
    # Code selected inside a method is read in the context of that method.
    assert offered(s) == {"explain": None, "design": None, "tests": None}


def test_selected_comment_is_a_description():
    needle = '"Forget every right whose licence ended before aDate"'
    s = site("tonel", needle, length=len(needle))
    assert s.selection == "Forget every right whose licence ended before aDate"
    assert {"design", "implement"} <= set(offered(s))


def test_filetree_method_gets_no_code_actions_that_add_code():
    path = SAMPLE / "filetree/StreamingRights-Core.package/SRStore.class/instance/isEmpty.st"
    text = path.read_text()
    found = offered(site_at(parse(text, str(path)), text, 12, 12))
    assert "explain" in found and "comment" in found and "tests" not in found


def test_smalltalk_or_prose():
    assert looks_like_smalltalk("^ rights select: [:each | each territory = aTerritory]")
    assert looks_like_smalltalk("store isEmpty")
    assert looks_like_smalltalk("x + 1")
    assert not looks_like_smalltalk("A streaming rights store that expires licences by territory")
    assert not looks_like_smalltalk("This answers the rights, then stops.")
    assert not looks_like_smalltalk("hello ( world")


def test_comment_at_steps_over_strings():
    text = "foo\n\t^ 'it\"s' , \"a \"\"real\"\" one\" , $\""
    assert comment_at(text, text.index("real")) == "real"
    assert comment_at(text, text.index("it")) == ""


# --- code in each format -----------------------------------------------------------------------

TOTAL = NewMethod(
    "SRStore", "instance", "as yet unclassified",
    "totalFee\n\t\"Answer the sum of the fees!\"\n\t^ self rights inject: 0 into: [:s :r | s + r]",
)


@pytest.mark.parametrize("name", ["tonel", "chunk", "vw", "bracket"])
def test_methods_added_parse_in_the_format(name):
    path, text = load(name)
    source = parse(text, path)
    edit = add_methods(source, path, text, [TOTAL])
    new = check_edit(edit, {path: text})[0]
    assert new.format == source.format
    added = [m for m in new.methods if m.selector == "totalFee"]
    assert len(added) == 1 and added[0].class_name == "SRStore"
    assert added[0].comment == "Answer the sum of the fees!"  # `!` survives chunk escaping


@pytest.mark.parametrize("name", ["tonel", "chunk", "bracket"])
def test_new_test_class_parses_in_the_format(name, tmp_path):
    path, text = load(name)
    source = parse(text, path)
    test = NewMethod("SRStoreXTest", "instance", "tests", "testIsEmpty\n\tself assert: 1 = 1")
    edit = new_class(source, path, text, "SRStoreXTest", "TestCase", "StreamingRights-Tests",
                     "I test SRStore.", [test], tmp_path)
    parsed = check_edit(edit, {path: text})
    cls = [c for s in parsed for c in s.classes if c.name == "SRStoreXTest"]
    assert cls and cls[0].superclass == "TestCase" and cls[0].category == "StreamingRights-Tests"
    if name == "tonel":
        assert edit.files[0].path == str(tmp_path / "SRStoreXTest.class.st") and not edit.changes
    else:
        assert not edit.files and edit.changes[0].start == len(text)


@pytest.mark.parametrize("name", ["tonel", "chunk", "bracket"])
def test_comment_insertion(name):
    path, text = load(name)
    source = parse(text, path)
    method = next(m for m in source.methods if m.selector == "isEmpty")
    change = comment_insertion(path, text, method, 'Answer whether "it" is empty', source.format)
    new = parse(apply_changes(text, [change]), path)
    commented = next(m for m in new.methods if m.selector == "isEmpty")
    assert commented.comment == "Answer whether 'it' is empty"
    assert len(new.methods) == len(source.methods)


def test_broken_code_is_refused():
    path, text = load("tonel")
    source = parse(text, path)
    broken = NewMethod("SRStore", "instance", "x", "broken\n\t^ (self rights")
    with pytest.raises(EditRejected):
        check_edit(add_methods(source, path, text, [broken]), {path: text})


def test_an_edit_missing_its_method_is_refused():
    path, text = load("chunk")
    edit = CodeEdit(expected=[("SRStore", "instance", "neverWritten")])
    with pytest.raises(EditRejected, match="neverWritten"):
        check_edit(edit, {path: text})


# --- generated text -> methods -----------------------------------------------------------------


def test_split_methods_keeps_multiline_comments_and_strings():
    text = 'a\n\t"one\nstill the comment"\n\t^ 1\n\nb: x\n\t^ \'two\nlines\'\nc\n\t^ 3'
    assert split_methods(text) == [
        'a\n\t"one\nstill the comment"\n\t^ 1', "b: x\n\t^ 'two\nlines'", "c\n\t^ 3",
    ]


def test_trimming_keeps_the_longest_prefix_that_parses():
    raw = (
        "totalFee\n\t| sum |\n\tsum := 0.\n\tself rights do: [:r | sum := sum + r].\n"
        "\t^ sum foo: )"
    )
    assert method_that_parses(raw) == (
        "totalFee\n\t| sum |\n\tsum := 0.\n\tself rights do: [:r | sum := sum + r]."
    )
    done = "totalFee\n\t^ self rights size"
    assert method_that_parses(done + "\n!") == done


def test_code_of_another_language_is_not_a_method():
    assert method_that_parses("@Inject\n    private SRRight<SRRight> SRRight;") is None
    assert method_that_parses("foo\n\t\"only a comment\"") is None


def test_plan_patterns_and_test_selectors():
    plan = "Add `totalFee`, then #at:put: and expireFor: aTerritory; rightsFor stays."
    assert plan_patterns(plan, {"rightsFor:"}, 5) == [
        "totalFee", "at: anAt put: aPut", "expireFor: aTerritory",
    ]
    assert sunit_selector("rightsFor:") == "testRightsFor"
    assert sunit_selector("=") == "testEquals"


# --- pausing for completions -------------------------------------------------------------------


class CountingEngine:
    """A scripted engine: one token per `step` seconds, the text being the token numbers;
    it stops when its CancelToken says so, like the real one."""

    model_id = "scripted"
    fim = None

    def __init__(self, step: float = 0.01) -> None:
        self.step = step
        self.prompts: list[str] = []

    def generate(self, prompt, params, cancel, stop_check=None):
        self.prompts.append(prompt)
        text, n = "", 0
        while n < params.max_tokens:
            if cancel.should_stop():
                return Generation(text, "cancelled" if cancel.cancelled else "budget",
                                  generated_tokens=n, generate_ms=1.0)
            time.sleep(self.step)
            n += 1
            text += f"{len(prompt) + len(text)}."
            if stop_check is not None and (cut := stop_check(text)) is not None:
                return Generation(text[:cut], "stop", generated_tokens=n, generate_ms=1.0)
        return Generation(text, "length", generated_tokens=n, generate_ms=1.0)


def test_generation_pauses_while_the_gate_is_closed_and_resumes():
    engine = CountingEngine()
    busy = threading.Event()
    seen: list[int] = []

    def toggle() -> None:
        time.sleep(0.1)
        busy.set()
        time.sleep(0.2)
        busy.clear()

    thread = threading.Thread(target=toggle)
    thread.start()
    result = generate_yielding(engine, "P", GenerateParams(max_tokens=40), CancelToken(),
                               busy.is_set, lambda n, _t: seen.append(n))
    thread.join()
    assert result.pauses >= 1 and result.generation.generated_tokens == 40
    assert result.generation.stop_reason == "length"
    # Resumed with the prompt plus the text so far, so the whole text reads on.
    assert engine.prompts[1] == "P" + result.generation.text[: len(engine.prompts[1]) - 1]
    assert seen == sorted(seen) and seen[-1] >= 40


def test_a_stop_string_across_a_pause_is_found():
    engine = CountingEngine()
    cancel = CancelToken()
    result = generate_yielding(engine, "P", GenerateParams(max_tokens=50, stop=("9.1",)), cancel)
    assert result.generation.stop_reason == "stop" and "9.1" not in result.generation.text


def test_cancel_stops_a_paused_generation():
    cancel = CancelToken()
    threading.Timer(0.1, cancel.cancel).start()
    result = generate_yielding(CountingEngine(), "P", GenerateParams(max_tokens=500), cancel,
                               lambda: True)
    assert result.generation.stop_reason == "cancelled"


# --- a scripted answer with <think> never reaches an edit -------------------------------------


class ScriptedEngine:
    model_id = "scripted"
    fim = None

    class model:  # noqa: N801 - the shape of LoadedModel that Run uses
        @staticmethod
        def chat_template() -> None:
            return None

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers

    def generate(self, prompt, params, cancel, stop_check=None):
        text = self.answers.pop(0) if self.answers else ""
        return Generation(text, "eos", generated_tokens=len(text.split()), generate_ms=1.0)


class ScriptedModels:
    def __init__(self, reasoner: list[str], coder: list[str]) -> None:
        self.reasoning = ScriptedEngine(reasoner)
        self.coding = ScriptedEngine(coder)

    def reasoner(self, cancel):
        return self.reasoning

    def coder(self, cancel):
        return self.coding

    def gate(self) -> bool:
        return False

    def configured(self, role) -> bool:
        return True

    def model_name(self, role) -> str:
        return "scripted"


def scripted_input(kind, name, needle, tmp_path, skip=0, length=0):
    path, text = load(name)
    source = parse(text, path)
    start = text.index(needle) + skip
    s = site_at(source, text, start, start + length)
    project = ProjectModel(parse_path(FILES[name]))
    options = ActionOptions(attempts=2)
    return ActionInput(kind, s, source, project, tmp_path, "", options), text


def edit_texts(result) -> str:
    return "".join(c.new_text for c in result.edit.changes) + "".join(
        f.text for f in result.edit.files
    )


def test_think_in_a_plan_never_reaches_the_implementation(tmp_path):
    inp, text = scripted_input("implement", "tonel", "Forget every right", tmp_path, skip=3)
    inp.site = site_at(inp.source, text, text.index("Forget every"), text.index("Forget every"))
    plan = "<think>SECRET reasoning about `secretSelector`</think>Add `totalFee`."
    coder = ["<think>SECRET</think>\t^ self rights size", "\t^ self rights size"]
    models = ScriptedModels([plan], coder)
    result = run_action(inp, Run(models, CancelToken()))  # type: ignore[arg-type]
    written = edit_texts(result)
    assert "SECRET" not in written and "secretSelector" not in written and "think" not in written
    assert "totalFee" in written
    path, _ = load("tonel")
    check_edit(result.edit, {path: text})


def test_unclosed_think_in_a_plan_is_a_clear_error(tmp_path):
    inp, _ = scripted_input("implement", "tonel", "Forget every right", tmp_path, skip=3)
    models = ScriptedModels(["<think>I will add `totalFee` but I ran out"], ["\t^ 1"])
    with pytest.raises(ActionError, match="no closing </think>"):
        run_action(inp, Run(models, CancelToken()))  # type: ignore[arg-type]


def test_think_in_an_explanation_is_folded_below_the_answer(tmp_path):
    inp, _ = scripted_input("explain", "chunk", "rightsFor: aTerritory\n", tmp_path, skip=2)
    models = ScriptedModels(["<think>hidden steps</think>It selects rights."], [])
    result = run_action(inp, Run(models, CancelToken()))  # type: ignore[arg-type]
    assert result.path.parent == tmp_path / ".smalltalk-lsp" / "notes"
    text = result.path.read_text()
    assert text.index("It selects rights.") < text.index("<details>") < text.index("hidden steps")


def test_an_implementation_that_never_parses_changes_nothing(tmp_path):
    inp, _ = scripted_input("implement", "tonel", "Forget every right", tmp_path, skip=3)
    models = ScriptedModels(["Add `totalFee`."], ["\t^ (((", "\t^ [ :x", "@@@", "@@@"])
    with pytest.raises(ActionError, match="did not parse after 2 tries.*nothing was changed"):
        run_action(inp, Run(models, CancelToken()))  # type: ignore[arg-type]


def test_comment_from_think_answer(tmp_path):
    inp, _ = scripted_input("comment", "bracket", "    isEmpty [", tmp_path, skip=6)
    models = ScriptedModels([], ['<think>no</think>Answer whether the store is empty'])
    result = run_action(inp, Run(models, CancelToken()))  # type: ignore[arg-type]
    assert edit_texts(result).strip() == '"Answer whether the store is empty"'
