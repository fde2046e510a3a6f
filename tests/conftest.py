"""Shared fixtures. Models load once per test session; add fixtures here additively."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def minilm_embedder():
    """The embedded default embedding model (all-MiniLM-L6-v2), loaded once, one torch thread."""
    from server.retrieval.embedder import load_embedder

    return load_embedder("all-minilm-l6-v2", threads=1)


@pytest.fixture(scope="session")
def gemma_model_path():
    """The embedded coder's GGUF file (Gemma 3 270M, assembled from its package once)."""
    from server.engine.embedded import resolve_model_path

    return resolve_model_path("gemma3-270m")


@pytest.fixture(scope="session")
def gemma_model(gemma_model_path):
    """The embedded coder loaded once into llama.cpp (a LoadedModel; contexts are per test)."""
    from server.engine.llama_model import load_model

    model = load_model(gemma_model_path)
    yield model
    model.close()


@pytest.fixture(scope="session")
def hf_gemma():
    """The embedded coder's weights in PyTorch (transformers, float32) for LoRA training, loaded
    once: the first run converts the GGUF (minutes) and caches it under ~/.cache/smalltalk-lsp.
    One torch thread: on cores shared with parallel jobs two threads are several times slower."""
    from adapters.hf_base import load_base

    return load_base("gemma3-270m", threads=1)


@pytest.fixture(scope="session")
def team_server(gemma_model_path, tmp_path_factory):
    """A real `llama_cpp.server` on loopback, started once, as a team would share it: the
    embedded coder as model "gemma3-270m" and, as a second model "house", the same weights with
    a LoRA adapter (adapters as models, as vLLM serves them), behind an API key
    (remote_support.TEAM_KEY). `.adapter` is the adapter file."""
    from remote_support import TEAM_KEY, LlamaServer, model_entry

    from adapters import testing

    folder = tmp_path_factory.mktemp("team-server")
    house = testing.write_lora(folder / "house.gguf", gemma_model_path, seed=1, strength=0.1)
    models = [
        model_entry(gemma_model_path, "gemma3-270m"),
        model_entry(gemma_model_path, "house", lora_path=str(house)),
    ]
    server = LlamaServer(folder, models, api_key=TEAM_KEY).start()
    server.adapter = house  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smollm_reasoner():
    """The embedded reasoner (SmolLM2-135M-Instruct) loaded once on two threads, as a
    context of its own (the registry's "reasoner" role; no coder)."""
    from server.config import Settings
    from server.engine.registry import ModelRegistry

    settings = Settings.model_validate(
        {
            "models": {"code_generation": "off", "reasoner_n_ctx": 2048},
            "cpu_settings": {"threads": 2},
        }
    )
    registry = ModelRegistry(settings)
    engine = registry.load("reasoner")
    assert engine is not None, registry.errors
    yield engine
    registry.close()


@pytest.fixture(scope="session")
def qwen_model_path():
    """The default coder's GGUF file (Qwen2.5-Coder-0.5B, assembled from its parts once)."""
    from server.engine.embedded import resolve_model_path

    return resolve_model_path("qwen2.5-coder-0.5b")


@pytest.fixture(scope="session")
def qwen_model(qwen_model_path):
    """The default coder loaded once into llama.cpp (a LoadedModel; contexts are per test)."""
    from server.engine.llama_model import load_model

    model = load_model(qwen_model_path)
    yield model
    model.close()


@pytest.fixture(scope="session")
def hf_qwen():
    """The default coder's weights in PyTorch for LoRA training, loaded once (the first run
    converts the GGUF, about two minutes, and caches it under ~/.cache/smalltalk-lsp)."""
    from adapters.hf_base import load_base

    return load_base("qwen2.5-coder-0.5b", threads=1)
