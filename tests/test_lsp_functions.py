"""Direct tests of the plain functions behind the static features (no LSP, no server)."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from lsprotocol import types

from server.core import guarded
from server.documents import Snapshot
from server.features import analysis, common, completion, folding, symbols
from server.logging_setup import ClientLogHandler
from server.project_model import ProjectModel, summarize
from server.workspace import WorkspaceIndex
from smalltalk_grammar import Position, SourceFile, offset_at, parse

SHAPES = """Class {
\t#name : #Shape,
\t#superclass : #Object,
\t#instVars : [ 'origin' ],
\t#classVars : [ 'Count' ],
\t#category : #Shapes
}

{ #category : #accessing }
Shape >> at: index put: value [
\t^ origin at: index put: value
]

{ #category : #drawing }
Shape >> drawOn: aCanvas [
\t| pen |
\tpen := aCanvas pen.
\tself at: 1 put: 2.
\t#(1 2) do: [ :each | pen moveTo: each ].
\tsuper drawOn: aCanvas.
\t^ 'abc' size + 3 printString size
]

{ #category : #'instance creation' }
Shape class >> unit [
\t^ self new at: 1 put: Count; yourself
]
"""
CIRCLE = """Class {
\t#name : #Circle,
\t#superclass : #Shape,
\t#category : #Shapes
}

{ #category : #drawing }
Circle >> drawOn: aCanvas [
\t"Draw a circle"
\tself perform: #area
]

{ #category : #accessing }
Circle >> area [
\t^ 3
]
"""
CHUNK = """Object subclass: #Greeter
\tinstanceVariableNames: ''
\tclassVariableNames: ''
\tcategory: 'Demo'!

!Greeter methodsFor: 'printing'!
shout
\t^ 'Hello!!' , self name! !
"""


def project() -> ProjectModel:
    return ProjectModel([parse(SHAPES, "/p/Shape.class.st"), parse(CIRCLE, "/p/Circle.class.st")])


def at(text: str, needle: str, skip: int = 0, occurrence: int = 0) -> int:
    index = -1
    for _ in range(occurrence + 1):
        index = text.index(needle, index + 1)
    return index + skip


def target(text: str, path: str, offset: int, model: ProjectModel) -> analysis.Target | None:
    source = model.file(path) or parse(text, path)
    snap = Snapshot(path, text, source)
    pos = Position(
        line=text[:offset].count("\n"), character=offset - text.rfind("\n", 0, offset) - 1
    )
    method = analysis.method_at(source.methods, pos)
    assert method is not None
    tree = common.method_tree_of(snap, method)
    return analysis.target_at(tree, offset, model)


# --- cursor analysis ---------------------------------------------------------------------------


def test_every_keyword_part_gives_the_whole_selector():
    model = project()
    on_put = target(SHAPES, "/p/Shape.class.st", at(SHAPES, "put: 2", 1), model)
    assert on_put is not None
    assert (on_put.kind, on_put.name, on_put.keyword_index) == ("selector", "at:put:", 1)
    assert on_put.receiver == analysis.Receiver("Shape", "instance")
    on_at = target(SHAPES, "/p/Shape.class.st", at(SHAPES, "at: 1 put: 2"), model)
    assert on_at is not None and (on_at.name, on_at.keyword_index) == ("at:put:", 0)


def test_receivers_are_typed_statically():
    model = project()
    path = "/p/Shape.class.st"
    sup = target(SHAPES, path, at(SHAPES, "drawOn: aCanvas.", 1), model)
    assert sup is not None and sup.receiver == analysis.Receiver("Object")
    size = target(SHAPES, path, at(SHAPES, "size +", 1), model)
    assert size is not None and size.receiver == analysis.Receiver("String")
    plus = target(SHAPES, path, at(SHAPES, "+ 3"), model)
    assert plus is not None and plus.name == "+" and plus.receiver is None
    printed = target(SHAPES, path, at(SHAPES, "printString", 2), model)
    assert printed is not None and printed.receiver == analysis.Receiver("SmallInteger")
    do = target(SHAPES, path, at(SHAPES, "do:", 1), model)
    assert do is not None and do.receiver == analysis.Receiver("Array")
    # `self new at: 1 put: Count` on the class side: an instance of Shape.
    cascade = target(SHAPES, path, at(SHAPES, "put: Count", 1), model)
    assert cascade is not None and cascade.receiver == analysis.Receiver("Shape", "instance")
    circle_super = target(CIRCLE, "/p/Circle.class.st", at(CIRCLE, "perform:"), model)
    assert circle_super is not None and circle_super.receiver == analysis.Receiver("Circle")


def test_variables_and_classes_are_told_apart():
    model = project()
    path = "/p/Shape.class.st"
    pen = target(SHAPES, path, at(SHAPES, "pen moveTo:"), model)
    assert pen is not None and (pen.kind, pen.scope) == ("variable", "temporary")
    assert pen.declaration == (at(SHAPES, "pen |"), at(SHAPES, "pen |") + 3)
    each = target(SHAPES, path, at(SHAPES, "each ]"), model)
    assert each is not None and each.declaration == (at(SHAPES, ":each", 1), at(SHAPES, ":each", 5))
    origin = target(SHAPES, path, at(SHAPES, "origin at:"), model)
    assert origin is not None and (origin.kind, origin.scope) == ("variable", "instance")
    count = target(SHAPES, path, at(SHAPES, "Count;"), model)
    assert count is not None and (count.kind, count.scope) == ("variable", "class")
    area = target(CIRCLE, "/p/Circle.class.st", at(CIRCLE, "#area", 2), model)
    assert area is not None and (area.kind, area.name) == ("selector", "area")


def test_chunk_methods_map_doubled_bangs_back():
    path = "/p/greeter.st"
    source = parse(CHUNK, path)
    model = ProjectModel([source])
    found = target(CHUNK, path, at(CHUNK, "name!"), model)
    assert found is not None and found.name == "name"
    assert (found.start, found.end) == (at(CHUNK, "name!"), at(CHUNK, "name!") + 4)


def test_implementors_rank_receiver_class_then_superclasses():
    model = project()
    ranked = analysis.rank_implementors(model, "drawOn:", analysis.Receiver("Circle"))
    assert [m.class_name for _, m in ranked] == ["Circle", "Shape"]
    ranked = analysis.rank_implementors(model, "drawOn:", analysis.Receiver("Shape"))
    assert [m.class_name for _, m in ranked] == ["Shape", "Circle"]
    ranked = analysis.rank_implementors(model, "drawOn:", None)
    assert [m.class_name for _, m in ranked] == ["Circle", "Shape"]


# --- completion, symbols, folding -------------------------------------------------------------


def test_completion_site_and_snippets():
    assert completion.snippet_for("at:put:") == "at: ${1} put: ${2}"
    assert completion.snippet_for("size") is None
    text = "foo\n\tself at: 1 pu"
    site = completion.completion_site(text, len(text))
    assert (site.prefix, site.expects) == ("pu", "selector")
    text = "foo\n\tx := pe"
    assert completion.completion_site(text, len(text)).expects == "expression"
    text = "foo\n\tself bar; ba"
    assert completion.completion_site(text, len(text)).expects == "selector"
    text = "foo\n\t^ #dra"
    assert completion.completion_site(text, len(text)).expects == "symbol"
    text = "foo\n\tself at: "
    assert completion.completion_site(text, len(text)).expects == "expression"


def test_name_index_ranks_by_use_and_filters_by_prefix():
    model = project()
    names = completion.NameIndex().refresh(model)
    assert completion.with_prefix(names.selectors, "AT") == ["at:put:", "area"][:1]
    assert names.ranked(model, "selector", "a") == ["at:put:", "area"]  # 2 senders vs 1
    assert names.ranked(model, "class", "") == ["Circle", "Shape"]  # unused: by name


def test_document_symbols_nest_protocols_and_the_class_side():
    found = symbols.document_symbols(parse(SHAPES, "/p/Shape.class.st"))
    assert [s.name for s in found] == ["Shape"]
    children = {c.name: [m.name for m in c.children or []] for c in found[0].children or []}
    assert children == {
        "accessing": ["at:put:"],
        "drawing": ["drawOn:"],
        "Shape class": ["instance creation"],
    }


def test_workspace_symbols_match_fuzzily():
    model = project()
    assert [s.name for s in symbols.workspace_symbols(model, "drwOn")] == ["drawOn:", "drawOn:"]
    assert symbols.workspace_symbols(model, "circle")[0].name == "Circle"
    assert symbols.workspace_symbols(model, "zzz") == []


def test_folding_ranges_are_multi_line_definitions():
    ranges = folding.folding_ranges(parse(CIRCLE, "/p/Circle.class.st"))
    assert [(r.start_line, r.end_line) for r in ranges] == [(0, 4), (7, 10), (13, 15)]


# --- the project model -------------------------------------------------------------------------


def test_names_generation_moves_only_when_names_change():
    model = project()
    before = model.names_generation
    model.put(parse(CIRCLE, "/p/Circle.class.st"))  # same names
    assert model.names_generation == before
    model.put(parse(CIRCLE.replace("area", "radius"), "/p/Circle.class.st"))
    assert model.names_generation > before
    assert model.send_count("area") == 0 and model.send_count("radius") == 1
    model.remove("/p/Circle.class.st")
    assert model.class_named("Circle") is None
    assert model.implementors("drawOn:")[0][1].class_name == "Shape"


def test_summaries_load_files_on_first_use():
    source = parse(CIRCLE, "/p/Circle.class.st")
    loads: list[int] = []

    def loader() -> SourceFile:
        loads.append(1)
        return source

    model = ProjectModel([parse(SHAPES, "/p/Shape.class.st")])
    model.put_summary("/p/Circle.class.st", summarize(source), loader)
    assert model.superclass_chain("Circle") == ["Shape", "Object"]
    assert [r.class_name for r in model.implementor_refs("drawOn:")] == ["Shape", "Circle"]
    assert loads == []
    assert [m.class_name for _, m in model.implementors("area")] == ["Circle"]
    model.implementors("drawOn:")
    assert loads == [1]


def test_a_stale_summary_is_replaced_by_what_loads():
    model = ProjectModel()
    old = parse(CIRCLE, "/p/Circle.class.st")
    new = parse(CIRCLE.replace("area", "radius"), "/p/Circle.class.st")
    model.put_summary("/p/Circle.class.st", summarize(old), lambda: new)
    assert model.implementors("area") == []
    assert [m.selector for _, m in model.implementors("radius")] == ["radius"]


def test_concurrent_writers_and_readers():
    model = ProjectModel()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(200):
                model.put(parse(SHAPES, f"/p/{i % 7}.st"))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    thread = threading.Thread(target=write)
    thread.start()
    while thread.is_alive():
        model.class_names()
        model.senders("at:put:")
        model.selectors()
    thread.join()
    assert errors == []
    assert len(model.implementors("drawOn:")) == 7


# --- scanning and the cache --------------------------------------------------------------------


def test_scan_uses_the_cache_and_notices_changes(tmp_path: Path):
    (tmp_path / "Shape.class.st").write_text(SHAPES)
    circle = tmp_path / "Circle.class.st"
    circle.write_text(CIRCLE)
    first = WorkspaceIndex(ProjectModel(), [tmp_path]).scan()
    assert (first.parsed, first.cached) == (2, 0)
    model = ProjectModel()
    second = WorkspaceIndex(model, [tmp_path]).scan()
    assert (second.parsed, second.cached) == (0, 2)
    assert [m.class_name for _, m in model.implementors("drawOn:")] == ["Circle", "Shape"]
    # Touched but unchanged: no parse. Changed: parsed again.
    stamp = time.time() + 5
    os.utime(circle, (stamp, stamp))
    third = WorkspaceIndex(ProjectModel(), [tmp_path]).scan()
    assert (third.parsed, third.cached) == (0, 2)
    circle.write_text(CIRCLE.replace("area", "radius"))
    model = ProjectModel()
    fourth = WorkspaceIndex(model, [tmp_path]).scan()
    assert (fourth.parsed, fourth.cached) == (1, 1)
    assert model.implementors("area") == []
    assert (tmp_path / ".smalltalk-lsp" / ".gitignore").read_text() == "*\n"


def test_a_cached_file_turned_binary_leaves_the_index(tmp_path: Path):
    # Unchanged cached files skip the binary sniff; a changed one must not.
    (tmp_path / "Shape.class.st").write_text(SHAPES)
    circle = tmp_path / "Circle.class.st"
    circle.write_text(CIRCLE)
    WorkspaceIndex(ProjectModel(), [tmp_path]).scan()
    circle.write_bytes(b"\x00\x01binary\x00" * 100)
    model = ProjectModel()
    stats = WorkspaceIndex(model, [tmp_path]).scan()
    assert (stats.files, stats.cached, stats.parsed) == (1, 1, 0)
    assert model.paths() == [str(tmp_path / "Shape.class.st")]


def test_refresh_path_follows_the_disk(tmp_path: Path):
    model = ProjectModel()
    index = WorkspaceIndex(model, [tmp_path], use_cache=False)
    shape = tmp_path / "pkg" / "Shape.class.st"
    shape.parent.mkdir()
    shape.write_text(SHAPES)
    assert index.refresh_path(str(shape)) == [str(shape)]
    assert index.refresh_path(str(shape)) == []  # unchanged
    shape.unlink()
    assert index.refresh_path(str(shape.parent)) == [str(shape)]  # a deleted folder
    assert model.class_named("Shape") is None


# --- plumbing -----------------------------------------------------------------------------------


def test_log_records_wait_for_the_client():
    handler = ClientLogHandler()
    logger = logging.getLogger("server.test_buffer")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("early %d", 1)
        sent: list[tuple[int, str]] = []
        handler.attach(lambda level, message: sent.append((level, message)))
        logger.warning("late")
        assert sent == [
            (logging.INFO, "INFO server.test_buffer: early 1"),
            (logging.WARNING, "WARNING server.test_buffer: late"),
        ]
    finally:
        logger.removeHandler(handler)


def test_a_failing_handler_answers_empty_and_logs(caplog):
    @guarded("textDocument/hover", empty=list)
    def broken(params: object) -> list[int]:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="server.core"):
        assert broken(None) == []
    assert "textDocument/hover failed" in caplog.text


def test_offsets_round_trip_through_lsp_positions():
    text = "a\r\nbb\rccc\n"
    pos = common.model_position(types.Position(line=2, character=1))
    assert offset_at(text, pos) == text.index("ccc") + 1


# --- references ---------------------------------------------------------------------------------


class _Server:
    """What the navigation functions read of the language server."""

    def __init__(self, model: ProjectModel) -> None:
        from server.documents import OpenDocuments

        self.project = model
        self.documents = OpenDocuments()
        self.texts: dict[str, str] = {}

    def snapshot(self, uri: str):  # type: ignore[no-untyped-def]
        return self.documents.parse(uri, self.texts[uri], 1)[0]

    def document_text(self, uri: str) -> str | None:
        return self.texts.get(uri)


def test_repeated_references_follow_model_changes(tmp_path: Path):
    from server.features import navigation

    shape, circle = tmp_path / "Shape.class.st", tmp_path / "Circle.class.st"
    shape.write_text(SHAPES)
    circle.write_text(CIRCLE)
    model = ProjectModel([parse(SHAPES, str(shape)), parse(CIRCLE, str(circle))])
    ls = _Server(model)
    uri = common.uri_of(str(shape))
    ls.texts[uri] = SHAPES
    ls.documents.opened(uri)
    offset = at(SHAPES, "drawOn: aCanvas.", skip=1)
    line = SHAPES[:offset].count("\n")
    pos = types.Position(line=line, character=offset - SHAPES.rfind("\n", 0, offset) - 1)

    def senders() -> list[str]:
        ctx = common.context_at(ls, uri, pos)  # type: ignore[arg-type]
        assert ctx is not None and ctx.target is not None and ctx.target.name == "drawOn:"
        found = navigation.references(ls, ctx, False)  # type: ignore[arg-type]
        return [f"{Path(loc.uri).name}:{loc.range.start.line}" for loc in found]

    first = senders()
    assert first == [f"Shape.class.st:{line}"]
    assert senders() == first  # answered again (from the cache) alike
    # A new sender elsewhere: the next answer has it.
    extra = tmp_path / "Square.class.st"
    extra.write_text(CIRCLE.replace("Circle", "Square").replace("#area", "#drawOn:"))
    model.put(parse(extra.read_text(), str(extra)))
    assert senders() == [*first, "Square.class.st:9"]


def test_answered_errors_leave_no_traceback():
    from pygls.exceptions import JsonRpcInvalidParams

    from server.logging_setup import quiet_answered_errors

    quiet_answered_errors()
    logger = logging.getLogger("pygls.protocol.json_rpc")
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        for error in (JsonRpcInvalidParams("usage: x"), RuntimeError("a real bug")):
            try:
                raise error
            except Exception:
                logger.exception("Failed to handle request %s", type(error).__name__)
    finally:
        logger.removeHandler(handler)
    assert seen == ["Failed to handle request RuntimeError"]


def test_gnu_eval_bodies_are_senders():
    gnu = Path(__file__).parent / "fixtures" / "sample" / "gnu" / "StreamingRights.st"
    source = parse(gnu.read_text(), str(gnu))
    model = ProjectModel([source])
    refs = model.sender_refs("showCr:")
    assert [(r.class_name, r.selector_range[0]) for r in refs] == [("UndefinedObject", 372)]
    doit = model.method(refs[0])
    assert doit is not None and doit.selector == "DoIt" and "showCr:" in doit.sends
    assert [m.selector for _, m in model.senders("showCr:")] == ["DoIt"]
    assert "DoIt" not in [m.selector for _, m in model.implementors("DoIt")]
    # A cached summary gives the same refs without loading the file.
    cached = ProjectModel()
    cached.put_summary(str(gnu), summarize(source), lambda: source)
    assert cached.sender_refs("showCr:") == refs and not cached.is_loaded(str(gnu))


def test_a_cold_scan_in_worker_processes_indexes_what_one_process_does(tmp_path: Path, caplog):
    from server.scan_workers import PARALLEL_MIN_FILES

    for copy in range(PARALLEL_MIN_FILES // 2 + 1):
        (tmp_path / f"Shape{copy}.class.st").write_text(SHAPES.replace("Shape", f"Shape{copy}"))
        (tmp_path / f"Circle{copy}.class.st").write_text(
            CIRCLE.replace("Circle", f"Circle{copy}").replace("Shape", f"Shape{copy}")
        )
    spread, alone = ProjectModel(), ProjectModel()
    stats = WorkspaceIndex(spread, [tmp_path]).scan()
    assert (stats.parsed, stats.cached) == (PARALLEL_MIN_FILES + 2, 0)
    assert "worker processes failed" not in caplog.text
    assert not spread.is_loaded(str(tmp_path / "Circle7.class.st"))  # parsed elsewhere
    WorkspaceIndex(alone, [tmp_path], use_cache=False, use_workers=False).scan()
    assert sorted(spread.paths()) == sorted(alone.paths())
    assert len(spread.implementors("drawOn:")) == len(alone.implementors("drawOn:")) == 302
    assert sorted(r.path for r in spread.sender_refs("area")) == sorted(
        r.path for r in alone.sender_refs("area")
    )
    assert spread.file(str(tmp_path / "Circle7.class.st")) == alone.file(
        str(tmp_path / "Circle7.class.st")
    )
    again = WorkspaceIndex(ProjectModel(), [tmp_path]).scan()
    assert (again.parsed, again.cached) == (0, PARALLEL_MIN_FILES + 2)


def test_a_scan_whose_workers_fail_parses_in_process(tmp_path: Path, caplog, monkeypatch):
    import server.workspace
    from server.scan_workers import PARALLEL_MIN_FILES

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("cannot start processes here")
        yield  # a generator, as parse_in_workers is

    monkeypatch.setattr(server.workspace, "parse_in_workers", broken)
    for copy in range(PARALLEL_MIN_FILES):
        (tmp_path / f"Shape{copy}.class.st").write_text(SHAPES.replace("Shape", f"Shape{copy}"))
    model = ProjectModel()
    stats = WorkspaceIndex(model, [tmp_path]).scan()
    assert (stats.parsed, stats.cached) == (PARALLEL_MIN_FILES, 0)
    assert "parsing in worker processes failed (cannot start processes here)" in caplog.text
    assert len(model.implementors("drawOn:")) == PARALLEL_MIN_FILES
    again = WorkspaceIndex(ProjectModel(), [tmp_path]).scan()
    assert (again.parsed, again.cached) == (0, PARALLEL_MIN_FILES)
