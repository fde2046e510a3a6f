"""The retrieval index on the sample project with the real embedding model and real FAISS:
nearest units, incremental updates, repair of damaged files, model changes, and the context
for a cursor."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from server.project_model import ProjectModel
from server.retrieval.context import build_context
from server.retrieval.embedder import EmbedderError, load_embedder
from server.retrieval.index import DB_FILE, MANIFEST_FILE, RetrievalIndex
from server.retrieval.store import MetadataStore
from server.retrieval.units import Unit, method_key, units_of_files
from server.retrieval.vectors import VectorIndex
from smalltalk_grammar import parse_file, parse_path

SAMPLE = Path(__file__).parent / "fixtures" / "sample" / "tonel"
CORE = "StreamingRights-Core"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns(".smalltalk-lsp"))
    return root


@pytest.fixture(scope="module")
def indexed_template(tmp_path_factory: pytest.TempPathFactory, minilm_embedder) -> Path:
    """The sample with its index built once; tests get copies (embedding costs seconds)."""
    root = tmp_path_factory.mktemp("template") / "ws"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns(".smalltalk-lsp"))
    index = RetrievalIndex(root, minilm_embedder)
    index.sync_project(_project(root))
    index.close()
    return root


@pytest.fixture
def indexed(tmp_path: Path, indexed_template: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(indexed_template, root)
    return root


def _project(root: Path) -> ProjectModel:
    return ProjectModel(parse_path(root))


def _key(cls: str, selector: str, side: str = "instance") -> str:
    return method_key(f"{CORE}/{cls}.class.st", cls, side, selector)


def _nearest(index: RetrievalIndex, key: str, k: int = 3) -> list[tuple[str, str]]:
    vector = index.stored_vector(key)
    assert vector is not None
    hits = index.search_vector(vector, k + 1)
    return [(r.class_name, r.selector) for r, _ in hits if r.key != key][:k]


def test_index_sample_and_nearest_units(workspace: Path, minilm_embedder) -> None:
    index = RetrievalIndex(workspace, minilm_embedder)
    stats = index.sync_project(_project(workspace))
    # 44 methods and 7 class definitions (6 classes and a trait; SAMPLE.md). The String
    # extension adds a method, not a class unit.
    assert stats.embedded == stats.units == len(index) == 51
    # The override is the nearest unit to the method it overrides, and the other accessor
    # pair with the same name is nearest to an accessor.
    assert _nearest(index, _key("SRStore", "addRight:"))[0] == ("SRRegionalStore", "addRight:")
    assert set(_nearest(index, _key("SRTerritory", "name"), 2)) == {
        ("SRTerritory", "name:"), ("SRStore", "name")}
    assert ("SRLicence", "setStart:end:") in _nearest(index, _key("SRLicence", "isActiveOn:"))
    # A query in words finds the method it describes.
    hits = index.search_similar("the daily fee of a licence", 3)
    assert ("SRLicence", "feePerDay") in [(r.class_name, r.selector) for r, _ in hits]
    assert index.save()
    manifest = index.read_manifest()
    assert manifest is not None
    assert (manifest["model"], manifest["dimension"], manifest["count"], manifest["kind"]) == (
        "all-minilm-l6-v2@onnx-int8/128", 384, len(index), "flat")
    index.close()


def test_an_edit_re_embeds_only_the_changed_method(indexed: Path, minilm_embedder) -> None:
    workspace = indexed
    project = _project(workspace)
    total = len(units_of_files(project.files()))

    path = workspace / CORE / "SRStore.class.st"
    text = path.read_text()
    path.write_text(text.replace("^ self rights isEmpty", "^ self rights size = 0"))
    project.put(parse_file(path))
    reopened = RetrievalIndex(workspace, minilm_embedder)
    assert reopened.repairs == []  # opened from its files, nothing rebuilt
    before = reopened.stored_vector(_key("SRStore", "isEmpty"))
    other_before = reopened.stored_vector(_key("SRStore", "rights"))
    stats = reopened.update_sources([project.file(str(path))])
    assert (stats.embedded, stats.removed) == (1, 0)
    assert stats.reused == stats.units - 1
    after = reopened.stored_vector(_key("SRStore", "isEmpty"))
    assert before is not None and after is not None and not np.allclose(before, after)
    assert np.array_equal(other_before, reopened.stored_vector(_key("SRStore", "rights")))

    # A whole-project sync afterwards has nothing to do; deleting a file removes its units.
    assert reopened.sync_project(project).embedded == 0
    gone = workspace / CORE / "SRTerritory.class.st"
    gone.unlink()
    project.remove(str(gone))
    stats = reopened.sync_project(project)
    assert stats.embedded == 0 and stats.removed == 9  # 8 methods and the class
    assert len(reopened) == total - 9
    assert not any(r.class_name == "SRTerritory" for r in reopened.records())
    reopened.close()


def test_truncated_vector_file_is_rebuilt_without_embedding(
    indexed: Path, minilm_embedder, caplog: pytest.LogCaptureFixture
) -> None:
    workspace = indexed
    index = RetrievalIndex(workspace, minilm_embedder)
    project = _project(workspace)
    expected = _nearest(index, _key("SRStore", "addRight:"))
    index.close()
    manifest = index.read_manifest()
    assert manifest is not None
    vector_file = index.directory / manifest["file"]
    vector_file.write_bytes(vector_file.read_bytes()[: vector_file.stat().st_size // 2])

    with caplog.at_level(logging.WARNING, logger="server.retrieval"):
        repaired = RetrievalIndex(workspace, minilm_embedder)
    assert repaired.repairs == ["vectors rebuilt"]
    assert any("rebuilding it from the stored vectors" in r.message for r in caplog.records)
    assert repaired.sync_project(project).embedded == 0
    assert _nearest(repaired, _key("SRStore", "addRight:")) == expected
    repaired.close()
    assert RetrievalIndex(workspace, minilm_embedder).repairs == []  # saved on close


def test_truncated_database_is_detected_and_rebuilt(indexed: Path, minilm_embedder) -> None:
    workspace = indexed
    project = _project(workspace)
    count = len(units_of_files(project.files()))
    db = workspace / ".smalltalk-lsp" / "index" / DB_FILE
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 3])

    repaired = RetrievalIndex(workspace, minilm_embedder)
    assert repaired.repairs == ["store rebuilt"]
    assert len(repaired) == 0
    assert repaired.sync_project(project).embedded == count
    assert _nearest(repaired, _key("SRStore", "addRight:"))[0] == ("SRRegionalStore",
                                                                   "addRight:")
    repaired.close()


class _Truncated:
    """Another embedding model: the same network's first 128 dimensions, renormalised.
    Its vectors must never be mixed with the 384-dimensional ones."""

    name = "minilm-128"
    dimension = 128

    def __init__(self, inner) -> None:
        self.inner = inner

    def embed(self, texts):
        vectors = self.inner.embed(texts)[:, :128]
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_index_of_another_model_is_rebuilt(indexed: Path, minilm_embedder) -> None:
    workspace = indexed
    project = _project(workspace)
    count = len(units_of_files(project.files()))
    other = RetrievalIndex(workspace, _Truncated(minilm_embedder))
    assert other.repairs == ["other model"]
    assert len(other) == 0
    assert other.sync_project(project).embedded == count
    other.close()
    manifest = RetrievalIndex(workspace, _Truncated(minilm_embedder)).read_manifest()
    assert manifest is not None and (manifest["model"], manifest["dimension"]) == (
        "minilm-128", 128)


def _write_forever(db_path: str) -> None:
    """Child process: commit transactions of 200 units as fast as possible."""
    store = MetadataStore(db_path)
    store.set_meta({"model": "m", "dimension": "4"})
    next_id = store.next_id()
    while True:
        rows = []
        for _ in range(200):
            unit = Unit(key=f"k{next_id}", kind="method", path="p", class_name="C",
                        selector=f"s{next_id}", text="t", hash=str(next_id))
            rows.append((next_id, unit, np.ones(4, dtype=np.float32) / 2))
            next_id += 1
        store.apply(rows, [])


def test_kill_during_writes_leaves_a_usable_store(tmp_path: Path) -> None:
    db_path = str(tmp_path / DB_FILE)
    child = multiprocessing.get_context("spawn").Process(target=_write_forever,
                                                         args=(db_path,))
    child.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if os.path.exists(db_path) and MetadataStore(db_path).generation >= 5:
            break
    os.kill(child.pid, 9)
    child.join()
    store = MetadataStore(db_path)  # raises StoreCorrupt if the kill broke it
    ids, vectors = store.vectors(4)
    # Whole transactions only: a multiple of 200 units, each generation one transaction.
    assert len(ids) == 200 * store.generation > 0
    assert vectors.shape == (len(ids), 4)


def test_interrupted_vector_write_keeps_previous_index(indexed: Path, minilm_embedder) -> None:
    workspace = indexed
    directory = workspace / ".smalltalk-lsp" / "index"
    manifest = (directory / MANIFEST_FILE).read_text()
    # What a kill in the middle of save() leaves: a half-written temporary file.
    (directory / "vectors-999.faiss.tmp").write_bytes(b"\x00" * 100)
    reopened = RetrievalIndex(workspace, minilm_embedder)
    assert reopened.repairs == []
    assert len(reopened) > 40 and (directory / MANIFEST_FILE).read_text() == manifest
    reopened.close()


def test_deleted_workspace_folder_keeps_working_in_memory(
    workspace: Path, minilm_embedder
) -> None:
    project = _project(workspace)
    shutil.rmtree(workspace)
    index = RetrievalIndex(workspace, minilm_embedder)
    assert not workspace.exists()  # not recreated to hold the index
    assert index.sync_project(project).embedded > 40
    assert index.save() is False
    assert _nearest(index, _key("SRStore", "addRight:"))[0] == ("SRRegionalStore", "addRight:")
    index.close()


def test_workspace_deleted_while_open(indexed: Path, minilm_embedder) -> None:
    workspace = indexed
    index = RetrievalIndex(workspace, minilm_embedder)
    project = _project(workspace)
    assert index.sync_project(project).embedded == 0
    shutil.rmtree(workspace)
    path = str(workspace / CORE / "SRStore.class.st")
    project.remove(path)
    assert index.remove_paths([path]).removed == 10
    assert index.save() is False  # logged, not raised
    index.close()


def test_embedding_model_that_fails_to_load() -> None:
    with pytest.raises(EmbedderError, match="neither 'all-minilm-l6-v2' nor a"):
        load_embedder("/no/such/model")


def test_lexical_only_index_without_embedder(workspace: Path) -> None:
    index = RetrievalIndex(workspace, None)
    index.sync_project(_project(workspace))
    assert not (workspace / ".smalltalk-lsp" / "index").exists()
    hits = [(r.class_name, r.selector) for r, _ in index.search_lexical(["rightsFor:"], 3)]
    assert hits[0] == ("SRStore", "rightsFor:")
    assert index.search_similar("anything", 3) == []


def test_ivf_index_when_large() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(1, 3001)
    index = VectorIndex(32, ivf_threshold=2000)
    index.rebuild(ids, vectors)
    assert index.kind == "ivf" and index.ntotal == 3000
    assert index.search(vectors[10], 1)[0][0] == 11
    index.remove([11])
    assert 11 not in [i for i, _ in index.search(vectors[10], 5)]
    index.add([5000], vectors[10:11])
    assert index.search(vectors[10], 1)[0][0] == 5000
    loaded = VectorIndex.from_bytes(index.serialize(), 32, ivf_threshold=2000)
    assert loaded.kind == "ivf" and loaded.search(vectors[10], 1)[0][0] == 5000
    small = VectorIndex(32, ivf_threshold=2000)
    small.rebuild(ids[:100], vectors[:100])
    assert small.kind == "flat" and not small.needs_rebuild()


def test_context_for_a_cursor_has_class_and_implementors_of_a_sent_selector(
    indexed: Path, minilm_embedder
) -> None:
    workspace = indexed
    project = _project(workspace)
    index = RetrievalIndex(workspace, minilm_embedder)
    assert index.sync_project(project).embedded == 0
    path = str(workspace / CORE / "SRRight.class.st")
    text = Path(path).read_text()
    # In SRRight >> isValidOn:, just after `licence isActiveOn: aDate`.
    offset = text.index("^ licence isActiveOn: aDate") + len("^ licence isActiveOn: aDate")
    ctx = build_context(project, path, text, offset, 1024, index, [])
    assert (ctx.class_name, ctx.selector) == ("SRRight", "isValidOn:")
    assert ctx.items[0].source == "class"
    assert "SRRight < Object" in ctx.items[0].text
    assert "instance variables: title territory licence" in ctx.items[0].text
    assert "I am the right to stream one title" in ctx.items[0].text
    implementors = ctx.by_source("implementors")
    assert implementors[0].title == "SRLicence >> isActiveOn: [testing]"
    assert "^ aDate between: startDate and: endDate" in implementors[0].text
    assert ctx.by_source("siblings")  # SRRight's other methods
    assert ctx.by_source("similar")  # retrieved by embedding
    assert len({i.title for i in ctx.items}) == len(ctx.items)
    assert ctx.tokens <= 1024
    index.close()


def test_new_method_query_is_embedded_in_the_background(indexed: Path, minilm_embedder) -> None:
    project = _project(indexed)
    index = RetrievalIndex(indexed, minilm_embedder)
    path = str(indexed / CORE / "SRLicence.class.st")
    text = Path(path).read_text() + (
        "\n{ #category : #accessing }\nSRLicence >> daysLeftOn: aDate [\n"
        "\t\"Answer how many days of the licence remain after aDate\"\n\t^ endDate - ")
    first = build_context(project, path, text, len(text), 1024, index, [])
    assert (first.class_name, first.selector, first.similarity) == (
        "SRLicence", "daysLeftOn:", False)
    assert first.by_source("class") and not first.by_source("similar")
    index.wait_for_queries()
    second = build_context(project, path, text + "aDate", len(text) + 5, 1024, index, [])
    assert second.similarity and second.by_source("similar")
    waited = build_context(project, path, text, len(text), 1024, index, [],
                           wait_for_embedding=True)
    assert waited.similarity
    # The completion provider waits for the query instead (a suggestion waits for its prompt
    # anyway), so its first answer in a new method already has the similarity ranking and the
    # prompt's front stays the same for the next request there.
    from server.completion.cursor import analyse_cursor
    from server.completion.types import CompletionRequest
    from server.retrieval.context import RetrievalContextProvider

    provider = RetrievalContextProvider(lambda: project, lambda: index, lambda: 1024)
    other = text.replace("daysLeftOn:", "daysUsedOn:")
    request = CompletionRequest(uri="file:///x", text=other, offset=len(other), path=path)
    cursor = analyse_cursor(other, len(other), "tonel", path)
    first_answer = provider.snippets(request, cursor)
    assert any(s.origin == "similar" for s in first_answer)
    assert provider.snippets(request, cursor) is first_answer  # stable from now on
    index.close()


def test_index_switches_to_ivf_when_it_grows(workspace: Path, minilm_embedder) -> None:
    project = _project(workspace)
    index = RetrievalIndex(workspace, minilm_embedder, ivf_threshold=40)
    index.sync_project(project)
    assert index.vectors is not None and index.vectors.kind == "ivf"
    assert _nearest(index, _key("SRStore", "addRight:"))[0] == ("SRRegionalStore", "addRight:")
    index.close()
    reopened = RetrievalIndex(workspace, minilm_embedder, ivf_threshold=40)
    assert reopened.repairs == [] and reopened.vectors is not None
    assert reopened.vectors.kind == "ivf" and reopened.vectors.ntotal == 51
    # Shrinking below half the threshold goes back to the exact index.
    gone = [p for p in project.paths() if "SRStore.class" not in p]
    assert reopened.remove_paths(gone).removed == 41
    assert reopened.vectors.kind == "flat" and reopened.vectors.ntotal == 10
    reopened.close()
