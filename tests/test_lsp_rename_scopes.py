"""End-to-end: rename of a class (with its files) and of instance and class variables, in
every source format. Each edit is applied to the copy of the sample project the server runs on
(text edits, then file and folder renames), the server is told of the changed files as an
editor tells it, and the result is parsed again."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import pytest_lsp
from lsp_support import (
    FORMATS,
    SERVER,
    capabilities,
    copy_sample,
    doc,
    open_document,
    start_session,
)
from lsprotocol import types
from pygls.uris import to_fs_path
from pytest_lsp import LanguageClient

from server.project_model import numbered_methods
from smalltalk_grammar import SourceFile, offset_at, parse_path
from smalltalk_grammar.model import Position

pytestmark = pytest.mark.asyncio(loop_scope="module")

# A method of the subclass SRRegionalStore reading its superclass's instance variable `rights`
# and class variable `Registry`, added to each format's copy (our own source).
SUBCLASS_METHOD = {
    "tonel": (
        "StreamingRights-Core/SRRegionalStore.class.st",
        "\n{ #category : #accessing }\nSRRegionalStore >> rightCount [\n\n"
        "\t^ rights size + Registry size\n]\n",
    ),
    "chunk-squeak": (
        "StreamingRights.st",
        "\n!SRRegionalStore methodsFor: 'accessing'!\nrightCount\n"
        "\t^ rights size + Registry size! !\n",
    ),
    "chunk-vw": (
        "StreamingRights.st",
        "\n!StreamingRights.SRRegionalStore methodsFor: 'accessing'!\nrightCount\n"
        "\t^ rights size + Registry size! !\n",
    ),
    "filetree": (
        "StreamingRights-Core.package/SRRegionalStore.class/instance/rightCount.st",
        "accessing\nrightCount\n\t^ rights size + Registry size",
    ),
    "gnu": (
        "StreamingRights.st",
        "\nSRRegionalStore extend [\n    rightCount [\n\t^rights size + Registry size\n    ]\n]\n",
    ),
}
# An extension of SRStore in another package, in the formats that name files after classes.
EXTENSION = {
    "tonel": [(
        "StreamingRights-Tests/SRStore.extension.st",
        "Extension { #name : #SRStore }\n\n{ #category : #'*StreamingRights-Tests' }\n"
        "SRStore >> rightsCount [\n\n\t^ rights size\n]\n",
    )],
    "filetree": [
        ("StreamingRights-Tests.package/properties.json", "{\n\t }\n"),
        ("StreamingRights-Tests.package/SRStore.extension/properties.json",
         '{\n\t"name" : "SRStore" }\n'),
        ("StreamingRights-Tests.package/SRStore.extension/instance/rightsCount.st",
         "*StreamingRights-Tests\nrightsCount\n\t^ rights size"),
    ],
}
# Where each format names the class SRStore in its definition.
DEFINITION = {
    "tonel": "#name : #SRStore",
    "chunk-squeak": "subclass: #SRStore",
    "chunk-vw": "defineClass: #SRStore",
    "filetree": '"name" : "SRStore"',
    "gnu": "subclass: SRStore [",
}
DELETED, CREATED = types.FileChangeType.Deleted, types.FileChangeType.Created
NO_FILE_RENAMES = types.ClientCapabilities(
    workspace=types.WorkspaceClientCapabilities(
        workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True)
    ),
    window=types.WindowClientCapabilities(work_done_progress=True),
)


def prepared_copy(fmt: str, base: Path) -> Path:
    root = copy_sample(fmt, base)
    rel, text = SUBCLASS_METHOD[fmt]
    path = root / rel
    path.write_text(path.read_text() + text if path.exists() else text)
    for rel, text in EXTENSION.get(fmt, []):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


async def session(client: LanguageClient, request, factory, as_client=None):
    fmt = request.param
    root = prepared_copy(fmt, factory.mktemp(fmt))
    client.fmt, client.root = fmt, root  # type: ignore[attr-defined]
    await start_session(client, root, as_client=as_client or capabilities())


@pytest_lsp.fixture(scope="module", params=FORMATS, config=SERVER)
async def client(lsp_client: LanguageClient, request, tmp_path_factory):
    await session(lsp_client, request, tmp_path_factory)
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(scope="module", params=["tonel", "filetree"], config=SERVER)
async def plain_client(lsp_client: LanguageClient, request, tmp_path_factory):
    await session(lsp_client, request, tmp_path_factory, NO_FILE_RENAMES)
    yield
    await lsp_client.shutdown_session()


def shown(client: LanguageClient) -> list[str]:
    return [m.message for m in client.messages]


def project(root: Path) -> list[SourceFile]:
    return [s for s in parse_path(root) if s.format != "method" or s.methods]


def position_of(root: Path, needle: str, skip: int = 0) -> tuple[Path, types.Position]:
    files = (p for p in root.rglob("*") if p.suffix in (".st", ".json"))
    for path in sorted(p for p in files if ".smalltalk-lsp" not in p.parts):
        for number, line in enumerate(path.read_text().splitlines()):
            col = line.find(needle)
            if col >= 0:
                return path, types.Position(line=number, character=col + skip)
    raise AssertionError(needle)


def apply(client: LanguageClient, edit: types.WorkspaceEdit) -> None:
    """Apply the edit as an editor does, in order, and send the watched-file events."""
    events: list[types.FileEvent] = []
    for change in edit.document_changes or []:
        if isinstance(change, types.RenameFile):
            old, new = Path(to_fs_path(change.old_uri)), Path(to_fs_path(change.new_uri))
            assert not new.exists()
            moved = [p for p in old.rglob("*") if p.is_file()] if old.is_dir() else [old]
            shutil.move(old, new)
            for path in moved:
                after = new / path.relative_to(old) if old != path else new
                events.append(types.FileEvent(uri=path.as_uri(), type=DELETED))
                events.append(types.FileEvent(uri=after.as_uri(), type=CREATED))
            continue
        assert isinstance(change, types.TextDocumentEdit)
        path = Path(to_fs_path(change.text_document.uri))
        text = path.read_text()
        spans = []
        for e in change.edits:
            r = e.range
            start = offset_at(text, Position(line=r.start.line, character=r.start.character))
            end = offset_at(text, Position(line=r.end.line, character=r.end.character))
            spans.append((start, end, e.new_text))
        for start, end, new_text in sorted(spans, reverse=True):
            text = text[:start] + new_text + text[end:]
        path.write_text(text)
        events.append(types.FileEvent(uri=path.as_uri(), type=types.FileChangeType.Changed))
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=events))


async def rename_at(client: LanguageClient, needle: str, new: str, skip: int = 0):
    path, at = position_of(client.root, needle, skip)  # type: ignore[attr-defined]
    uri = open_document(client, path)
    try:
        prepared = await client.text_document_prepare_rename_async(
            types.PrepareRenameParams(text_document=doc(uri), position=at)
        )
        edit = await client.text_document_rename_async(
            types.RenameParams(text_document=doc(uri), position=at, new_name=new)
        )
    finally:
        client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=doc(uri)))
    return prepared, edit


def class_facts(root: Path, name: str) -> dict[str, object]:
    """What the project says of class `name`: its definition, subclasses, methods, and the
    methods that reference it."""
    sources = project(root)
    classes = [c for s in sources for c in s.classes]
    methods = [m for s in sources for m in numbered_methods(s)]
    defined = [c for c in classes if c.name == name and c.kind == "class"]
    return {
        "defined": [(c.superclass, c.instance_variables, c.class_variables) for c in defined],
        "subclasses": sorted(c.name for c in classes if c.superclass == name),
        "methods": sorted(f"{m.side} {m.selector}" for m in methods if m.class_name == name),
        "referenced by": sorted(
            f"{m.class_name} {m.selector}" for m in methods if name in m.class_references
        ),
    }


def uses(root: Path, name: str, classes: set[str]) -> list[str]:
    """The methods of `classes` that read or write `name` (an instance or class variable)."""
    return sorted(
        f"{m.class_name} {m.side} {m.selector}"
        for s in project(root)
        for m in numbered_methods(s)
        if m.class_name in classes and name in (*m.variable_references, *m.class_references)
    )


def declared(root: Path, cls: str) -> tuple[list[str], list[str]]:
    found = [c for s in project(root) for c in s.classes if c.name == cls and c.kind == "class"]
    assert len(found) == 1, found
    return found[0].instance_variables, found[0].class_variables


# --- class ------------------------------------------------------------------------------------


async def test_rename_class_renames_definitions_references_and_files(client: LanguageClient):
    root, fmt = client.root, client.fmt  # type: ignore[attr-defined]
    before = class_facts(root, "SRStore")
    assert before["defined"] and before["subclasses"] == ["SRRegionalStore"]
    prepared, edit = await rename_at(client, DEFINITION[fmt], "SRShop", DEFINITION[fmt].index("SR"))
    assert prepared is not None and prepared.placeholder == "SRStore"
    assert edit is not None
    moves = [c for c in edit.document_changes or [] if isinstance(c, types.RenameFile)]
    apply(client, edit)
    after = class_facts(root, "SRShop")
    assert after == before
    assert class_facts(root, "SRStore") == {
        "defined": [], "subclasses": [], "methods": [], "referenced by": []
    }
    if fmt == "tonel":
        core = root / "StreamingRights-Core"
        assert sorted(m.new_uri.rsplit("/", 1)[1] for m in moves) == [
            "SRShop.class.st", "SRShop.extension.st"
        ]
        assert (core / "SRShop.class.st").exists() and not (core / "SRStore.class.st").exists()
        assert (root / "StreamingRights-Tests" / "SRShop.extension.st").exists()
        [annotation] = (edit.change_annotations or {}).values()
        assert "SRStore.class.st -> SRShop.class.st" in annotation.label
    elif fmt == "filetree":
        package = root / "StreamingRights-Core.package"
        assert sorted(m.new_uri.rsplit("/", 1)[1] for m in moves) == [
            "SRShop.class", "SRShop.extension"
        ]
        assert (package / "SRShop.class" / "instance" / "rights.st").exists()
        assert not (package / "SRStore.class").exists()
        tests = root / "StreamingRights-Tests.package"
        assert (tests / "SRShop.extension" / "instance" / "rightsCount.st").exists()
    else:
        assert moves == []  # one file holds every class
    # The server followed the editor's file events: the new name is what it knows now.
    prepared, _ = await rename_at(client, "SRShop", "SRShop2")
    assert prepared is not None and prepared.placeholder == "SRShop"


async def test_rename_class_without_file_operations(plain_client: LanguageClient):
    """A client that cannot rename files: Tonel gets the text edits and a message (file names
    do not name classes there); FileTree, where the folder names the class, is refused."""
    client = plain_client
    root, fmt = client.root, client.fmt  # type: ignore[attr-defined]
    before = class_facts(root, "SRStore")
    _, edit = await rename_at(client, DEFINITION[fmt], "SRShop", DEFINITION[fmt].index("SR"))
    if fmt == "filetree":
        assert edit is None
        assert any("cannot rename folders" in m for m in shown(client))
        assert class_facts(root, "SRStore") == before
        return
    assert edit is not None
    assert not [c for c in edit.document_changes or [] if isinstance(c, types.RenameFile)]
    assert any("keep their names" in m for m in shown(client))
    apply(client, edit)
    assert class_facts(root, "SRShop") == before
    assert (root / "StreamingRights-Core" / "SRStore.class.st").exists()


# --- instance and class variables -------------------------------------------------------------


async def test_rename_instance_variable_in_class_and_subclasses(client: LanguageClient):
    root = client.root  # type: ignore[attr-defined]
    store = "SRShop" if class_facts(root, "SRShop")["defined"] else "SRStore"
    hierarchy = {store, "SRRegionalStore"}
    before = uses(root, "rights", hierarchy)
    assert "SRRegionalStore instance rightCount" in before
    territory_before = uses(root, "name", {"SRTerritory"})
    prepared, edit = await rename_at(client, "rights size + Registry", "grants")
    assert prepared is not None and prepared.placeholder == "rights"
    assert edit is not None
    apply(client, edit)
    assert uses(root, "grants", hierarchy) == before
    assert uses(root, "rights", hierarchy) == []
    ivars, _ = declared(root, store)
    assert "grants" in ivars and "rights" not in ivars
    # Another class's variable of another name is untouched.
    assert uses(root, "name", {"SRTerritory"}) == territory_before


async def test_rename_class_variable(client: LanguageClient):
    root = client.root  # type: ignore[attr-defined]
    store = "SRShop" if class_facts(root, "SRShop")["defined"] else "SRStore"
    hierarchy = {store, "SRRegionalStore"}
    before = uses(root, "Registry", hierarchy)
    assert "SRRegionalStore instance rightCount" in before and len(before) >= 2
    _, edit = await rename_at(client, "Registry size", "Catalogue")
    assert edit is not None
    apply(client, edit)
    assert uses(root, "Catalogue", hierarchy) == before
    assert uses(root, "Registry", hierarchy) == []
    _, cvars = declared(root, store)
    assert "Catalogue" in cvars and "Registry" not in cvars


async def test_rename_variable_refused_on_collision(client: LanguageClient):
    root = client.root  # type: ignore[attr-defined]
    needle = "size + Catalogue" if class_facts(root, "SRShop")["defined"] else "size + Registry"
    path, at = position_of(root, needle)
    text = path.read_text().splitlines()[at.line]
    var = text[: at.character].split()[-1].lstrip("^")
    column = text.index(var)
    assert var in ("grants", "rights")
    for new, reason in (
        ("territories", "already a variable of SRRegionalStore"),  # a subclass's
        ("aString", "already a temporary or argument"),  # an argument of `name:`
        ("Self", "not an instance variable name"),
    ):
        uri = open_document(client, path)
        edit = await client.text_document_rename_async(
            types.RenameParams(
                text_document=doc(uri),
                position=types.Position(line=at.line, character=column),
                new_name=new,
            )
        )
        client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=doc(uri)))
        assert edit is None
        assert any(reason in m for m in shown(client)), shown(client)


# --- temporaries and arguments ----------------------------------------------------------------


async def test_rename_argument_in_its_method_only(client: LanguageClient):
    root = client.root  # type: ignore[attr-defined]
    store = "SRShop" if class_facts(root, "SRShop")["defined"] else "SRStore"

    def add_right() -> dict[str, tuple[list[str], str]]:
        return {
            m.class_name: (m.arguments, m.source)
            for s in project(root)
            for m in numbered_methods(s)
            if m.selector == "addRight:"
        }

    before = add_right()
    assert before[store][0] == ["aRight"] and before["SRRegionalStore"][0] == ["aRight"]
    # The first send of `add: aRight` is in the store's own addRight:.
    prepared, edit = await rename_at(client, "add: aRight", "aGrant", len("add: "))
    assert prepared is not None and prepared.placeholder == "aRight"
    assert edit is not None
    assert len(edit.document_changes or []) == 1
    apply(client, edit)
    after = add_right()
    assert after[store][0] == ["aGrant"]
    code = re.sub(r'"[^"]*"', '""', before[store][1])  # comments keep their words
    assert re.sub(r'"[^"]*"', '""', after[store][1]) == code.replace("aRight", "aGrant")
    assert after["SRRegionalStore"] == before["SRRegionalStore"]


@pytest.mark.parametrize("client", ["tonel", "chunk-squeak"], indirect=True)
async def test_rename_trait_renames_its_users_compositions(client: LanguageClient):
    root, fmt = client.root, client.fmt  # type: ignore[attr-defined]
    before = class_facts(root, "TSRComparable")

    def composition() -> str | None:
        [right] = [c for s in project(root) for c in s.classes if c.name == "SRRight"]
        return right.traits

    assert composition() == "TSRComparable" and before["methods"]
    needle = {"tonel": "#name : #TSRComparable", "chunk-squeak": "named: #TSRComparable"}[fmt]
    _, edit = await rename_at(client, needle, "TSROrdered", needle.index("TSR"))
    assert edit is not None
    apply(client, edit)
    assert composition() == "TSROrdered"
    traits = [c for s in project(root) for c in s.classes if c.kind == "trait"]
    assert [t.name for t in traits] == ["TSROrdered"]
    methods = sorted(
        f"{m.side} {m.selector}"
        for s in project(root) for m in numbered_methods(s) if m.class_name == "TSROrdered"
    )
    assert methods == before["methods"]
    if fmt == "tonel":
        assert (root / "StreamingRights-Core" / "TSROrdered.trait.st").exists()


# Where each format declares SRRegionalStore's instance variable `territories`.
DECLARATION = {
    "tonel": "'territories'",
    "chunk-squeak": "instanceVariableNames: 'territories'",
    "chunk-vw": "instanceVariableNames: 'territories'",
    "filetree": '"territories" ]',
    "gnu": "| territories |",
}


async def test_rename_instance_variable_from_its_declaration(client: LanguageClient):
    root, fmt = client.root, client.fmt  # type: ignore[attr-defined]
    needle = DECLARATION[fmt]
    before = uses(root, "territories", {"SRRegionalStore"})
    assert before
    prepared, edit = await rename_at(client, needle, "regions", needle.index("territories"))
    assert prepared is not None and prepared.placeholder == "territories"
    assert edit is not None
    apply(client, edit)
    assert uses(root, "regions", {"SRRegionalStore"}) == before
    assert uses(root, "territories", {"SRRegionalStore"}) == []
    assert declared(root, "SRRegionalStore")[0] == ["regions"]
    # The selector `territories` (an accessor of the same name) is not a variable: it stays.
    sends = [m for s in project(root) for m in numbered_methods(s) if "territories" in m.sends]
    assert sends


async def test_rename_variable_named_like_a_definition_key(client: LanguageClient):
    """`name` is an instance variable of two unrelated classes, Tonel's `#name :` key and
    FileTree's `"name"` key: only the one class's variable is renamed, the definitions stay."""
    root = client.root  # type: ignore[attr-defined]

    def state() -> dict[str, tuple[list[str], list[str]]]:
        classes = [c for s in project(root) for c in s.classes if c.kind == "class"]
        return {c.name: (c.instance_variables, uses(root, "name", {c.name})) for c in classes}

    before = state()
    owners = [n for n, (ivars, _) in before.items() if "name" in ivars]
    assert owners
    _, edit = await rename_at(client, "name := aString", "label")
    assert edit is not None
    apply(client, edit)
    after = state()
    assert sorted(after) == sorted(before)  # every class still defined under its name
    changed = [n for n in after if after[n] != before[n]]
    assert len(changed) == 1 and changed[0] in owners
    ivars, _ = after[changed[0]]
    assert "label" in ivars and "name" not in ivars
    assert uses(root, "label", {changed[0]}) == before[changed[0]][1]  # the same methods
