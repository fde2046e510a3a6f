"""Typed configuration: one pydantic model, validated at `initialize` and on change.

Sources, later ones winning: defaults, the user config file, `smalltalk-lsp.toml` in the
workspace (without the model and adapter files it names unless the workspace is trusted; see
server.trust), LSP `initializationOptions`, `workspace/didChangeConfiguration`.
A bad key is reported by name and dropped; the rest still applies.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from server.trust import is_trusted, workspace_layer

CONFIG_FILE_NAME = "smalltalk-lsp.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelsConfig(_Section):
    # A GGUF path or the name of an embedded model ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b",
    # "gemma3-270m", "smollm2-135m"); "off" (or "") turns the role off. Both roles naming one
    # file share its weights.
    code_generation: str = "qwen2.5-coder-0.5b"
    reasoning: str = "qwen2.5-coder-1.5b"
    # A sentence-transformers model path or the embedded default name.
    embeddings: str = "all-minilm-l6-v2"
    # Per-role context sizes; None means cpu_settings.context_length.
    coder_n_ctx: int | None = Field(default=None, gt=0)
    reasoner_n_ctx: int | None = Field(default=None, gt=0)
    # A Hugging Face checkpoint folder of the coder's model, for training adapters when
    # transformers cannot load its GGUF; None trains on the GGUF itself.
    coder_training_checkpoint: str | None = None


class CpuSettings(_Section):
    # Threads for prompt processing (batched, compute-bound).
    threads: int = Field(default_factory=lambda: os.cpu_count() or 1, gt=0)
    # Threads for generating tokens one by one (memory-bound). More threads than free cores
    # make llama.cpp's threads wait on each other: on a busy 2-core machine one generation
    # thread was 4-17x faster than two (BENCHMARKS.md), on an idle one two were faster. None:
    # for completions as many as the physical cores other processes leave free (checked
    # before each token), at least half of `threads` (server/engine/cpu.py), and half of
    # `threads` for the other roles; a number: always that many.
    generation_threads: int | None = Field(default=None, gt=0)

    @property
    def token_threads(self) -> int:
        """The fewest threads generation uses: `generation_threads`, else half of `threads`."""
        return self.generation_threads or max(1, self.threads // 2)
    batch_size: int = Field(default=512, gt=0)
    context_length: int = Field(default=4096, gt=0)


ContextSourceName = Literal["class", "siblings", "implementors", "similar", "lexical", "recent"]


def _default_sources() -> list[ContextSourceName]:
    return ["implementors", "similar", "lexical", "recent"]


class CompletionConfig(_Section):
    enabled: bool = True
    # A suggestion always arrives: the wait for its prompt is never cut (only a newer request
    # for the document, $/cancelRequest or closing the document end one early). These cap the
    # generation once the prompt is read, as llama.vscode's t_max_predict_ms does: then it
    # stops, and what is there, trimmed to what parses, is the suggestion.
    # A suggestion is trimmed to what parses, so a short cap on a slow or busy CPU leaves
    # nothing (a comment or statement cut in the middle): 2 s gave empty suggestions at a load
    # of 10 on 2 cores, where 5 s of Qwen2.5-Coder-0.5B writes a line or two.
    max_generate_ms: int = Field(default=5000, gt=0)
    # The same cap when the user asked explicitly (triggerKind Invoked).
    max_generate_ms_invoked: int = Field(default=20000, gt=0)
    # Prompt states (KV caches) of the most recently used documents kept in memory, so coming
    # back to a document re-evaluates only what changed; per adapter set. 0 keeps only the
    # document in use.
    warm_documents: int = Field(default=4, ge=0)
    warm_memory_mb: int = Field(default=256, ge=0)
    # When the cursor comes to rest in a method (the editor asks for its highlights there),
    # compute the suggestion for it in the background, as llama.vim warms its cache; never
    # while a completion or a code action runs.
    warm_on_cursor: bool = True
    max_tokens_line: int = Field(default=48, gt=0)
    max_tokens_block: int = Field(default=128, gt=0)
    temperature: float = Field(default=0.0, ge=0.0)
    # Suggestions kept for typing through and for repeated prompts.
    cache_size: int = Field(default=64, gt=0)
    # The file window around the cursor that the prompt shows, in characters.
    prefix_chars: int = Field(default=3000, gt=0)
    suffix_chars: int = Field(default=600, ge=0)
    # Project context in the prompt (within retrieval.context_tokens), in this order of
    # preference: "class" (definition, variables, comment), "siblings" (other methods of the
    # class and protocol), "implementors" (of the selectors the method sends), "similar"
    # (retrieved by embedding), "lexical" (selectors sharing words), "recent" (edited methods).
    context_sources: list[ContextSourceName] = Field(default_factory=_default_sources)
    # Lay project context out as repository files in the model's own tokens when it has them
    # (Qwen2.5-Coder `<|repo_name|>`/`<|file_sep|>`); otherwise, and when false, as text.
    repository_layout: bool = True


EmbeddingRuntime = Literal["onnx-int8", "torch"]


class RetrievalConfig(_Section):
    enabled: bool = True
    # How units are embedded (bench/bench_indexing.py, BENCHMARKS.md): "onnx-int8" (the model
    # made int8 on onnxruntime, once, in the user cache) at 128 word pieces embeds 2.6x the
    # units per CPU-second of "torch" (sentence-transformers, fp32, 256); top-5 neighbours
    # agree 0.87 with torch's on the Pharo corpus (0.92 at max_tokens 256).
    embedding_runtime: EmbeddingRuntime = "onnx-int8"
    # Word pieces embedded per unit and query (the model reads up to 256): the header,
    # signature, comment and first statements; 82% of the corpus's units fit whole in 128.
    max_tokens: int = Field(default=128, ge=16, le=512)
    # Batches embedded at once by the indexer (one core each) while no completion runs.
    index_workers: int = Field(default=2, ge=1, le=8)
    # Trivial accessors (`^ x`, `x := anX`) keep their structure and lexical entries; their
    # embedding comes after every other unit ("last") or never ("skip").
    accessors: Literal["last", "skip"] = "last"
    # Project context in a prompt; completions take about 4 characters a token of it. Every
    # token costs prompt time (the 0.5B coder reads 80-200 a second on 2 cores); on the holes
    # benchmark 192 scored as 384 did with a quarter fewer prompt tokens, and 96 as 192 with
    # a fifth fewer on small files, where 192 made our prompts longer than llama.vscode's
    # (BENCHMARKS.md).
    context_tokens: int = Field(default=96, gt=0)


class AdaptersConfig(_Section):
    folders: list[str] = Field(default_factory=list)
    active: list[str] = Field(default_factory=list)
    scales: dict[str, float] = Field(default_factory=dict)


class ActionsConfig(_Section):
    """Code actions (explain, design, implement, tests, comment) and hover summaries."""

    # Tokens of an explanation, design or plan (the reasoner).
    max_tokens: int = Field(default=384, gt=0)
    # Tokens of each piece of code the coder writes (a method, a test).
    code_max_tokens: int = Field(default=160, gt=0)
    temperature: float = Field(default=0.6, ge=0.0)
    # Tries for code that must parse before the action gives up.
    attempts: int = Field(default=3, gt=0)
    # Model-written summaries in hover, generated in the background.
    hover_summaries: bool = True
    summary_max_tokens: int = Field(default=96, gt=0)


class RoleBackend(_Section):
    """Where one role's model runs: in this process ("local", the default) or on a shared
    OpenAI-compatible server ("remote": llama.cpp's llama-server, llama-cpp-python's
    llama_cpp.server, vLLM). See server.engine.remote."""

    backend: Literal["local", "remote"] = "local"
    # http(s)://host:port, with or without a trailing /v1.
    base_url: str = ""
    # The model name the server knows ("" lets the server pick its default model).
    model: str = ""
    # The name of an environment variable holding the API key (the key itself is never
    # written to settings or logs); "" sends no key.
    api_key_env: str = ""
    # Or a file whose first line is the key (e.g. ~/.config/smalltalk-lsp/coder.key, mode 600).
    api_key_file: str = ""
    connect_timeout_s: float = Field(default=2.0, gt=0)
    # Longest silence while waiting for the next piece of an answer before the server counts
    # as slow; completions also stop generating at completion.max_generate_ms.
    read_timeout_s: float = Field(default=30.0, gt=0)
    # Longest wait between background retries of an unavailable server.
    retry_max_s: float = Field(default=30.0, gt=0)
    # How LoRA adapters reach the server: "lora-field" (llama-server: ids by name from
    # GET /lora-adapters, per-request `lora`), "models" (vLLM, llama_cpp.server: an adapter is
    # a model named by `adapter_model`), "auto" (the first when the server has
    # /lora-adapters), "off" (no adapters).
    adapters: Literal["auto", "lora-field", "models", "off"] = "auto"
    adapter_model: str = "{name}"
    # The model's FIM token texts (prefix, suffix, middle) when no local copy of the GGUF
    # names them; None reads them from the local file named in `models`, if there is one.
    fim_tokens: list[str] | None = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("fim_tokens")
    @classmethod
    def _fim(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (len(value) != 3 or not all(value)):
            raise ValueError("must be three non-empty token texts: prefix, suffix, middle")
        return value

    @field_validator("adapter_model")
    @classmethod
    def _adapter_model(cls, value: str) -> str:
        if "{name}" not in value:
            raise ValueError("must contain {name}")
        return value

    @model_validator(mode="after")
    def _remote_needs_url(self) -> RoleBackend:
        if self.backend == "remote" and not self.base_url:
            raise ValueError("a remote backend needs base_url")
        return self


class BackendsConfig(_Section):
    coder: RoleBackend = Field(default_factory=RoleBackend)
    reasoner: RoleBackend = Field(default_factory=RoleBackend)


class TrustConfig(_Section):
    """Which workspace roots may choose the model and adapter files loaded (server.trust).
    Read from the user config file and the editor, never from the workspace's own file."""

    # The editor says the workspace is trusted (VS Code's Workspace Trust, Neovim's vim.secure)
    # or `serve --trust-workspace`.
    workspace: bool = False
    # Roots (and the folders below them) trusted whatever the editor says.
    trusted_roots: list[str] = Field(default_factory=list)


class Settings(_Section):
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    cpu_settings: CpuSettings = Field(default_factory=CpuSettings)
    completion: CompletionConfig = Field(default_factory=CompletionConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    adapters: AdaptersConfig = Field(default_factory=AdaptersConfig)
    actions: ActionsConfig = Field(default_factory=ActionsConfig)
    backends: BackendsConfig = Field(default_factory=BackendsConfig)
    trust: TrustConfig = Field(default_factory=TrustConfig)
    mlock: bool = False
    mmap: bool = True

    def model_for(self, role: str) -> str | None:
        """The configured model of a role ("coder" or "reasoner"); None when it is off."""
        name = self.models.code_generation if role == "coder" else self.models.reasoning
        name = name.strip()
        return None if name.lower() in ("", "off", "none") else name

    def backend_for(self, role: str) -> RoleBackend:
        """Where a role's model runs ("coder" or "reasoner")."""
        return self.backends.coder if role == "coder" else self.backends.reasoner

    def n_ctx_for(self, role: str) -> int:
        per_role = self.models.coder_n_ctx if role == "coder" else self.models.reasoner_n_ctx
        return per_role or self.cpu_settings.context_length


# Keys that existed once: a user who still sets one is told what replaced it.
REMOVED_SETTINGS = {
    "completion.budget_ms": (
        "was removed: a suggestion is no longer cut while its prompt is read; "
        "'completion.max_generate_ms' (and 'max_generate_ms_invoked') cap the generation"
    ),
}


class LoadedSettings(BaseModel):
    settings: Settings
    # One human-readable message per rejected key, e.g. "cpu_settings.threads: ...".
    problems: list[str] = Field(default_factory=list)
    # Whether the workspace may choose model and adapter files (server.trust), and what its
    # own file chose that was ignored because it may not.
    trusted: bool = True
    ignored: list[str] = Field(default_factory=list)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _drop(data: dict[str, Any], loc: tuple[int | str, ...]) -> bool:
    """Remove the value at `loc` from nested dicts; True if something was removed."""
    node: Any = data
    for part in loc[:-1]:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    if isinstance(node, dict) and loc and loc[-1] in node:
        del node[loc[-1]]
        return True
    return False


def validate_settings(data: dict[str, Any]) -> LoadedSettings:
    """Validate raw settings; every bad key is named in `problems` and the rest applies."""
    problems: list[str] = []
    work = _deep_merge({}, data)
    for _ in range(50):
        try:
            return LoadedSettings(settings=Settings.model_validate(work), problems=problems)
        except ValidationError as err:
            removed = False
            for error in err.errors():
                loc = tuple(error["loc"])
                key = ".".join(str(p) for p in loc)
                if key in REMOVED_SETTINGS:
                    problems.append(f"setting '{key}' {REMOVED_SETTINGS[key]}")
                elif error["type"] == "extra_forbidden":
                    problems.append(f"unknown setting '{key}'")
                else:
                    problems.append(f"bad value for '{key}': {error['msg']}")
                # A list item error drops the whole list.
                while loc and isinstance(loc[-1], int):
                    loc = loc[:-1]
                removed = _drop(work, loc) or removed
            if not removed:
                break
    return LoadedSettings(settings=Settings(), problems=problems or ["invalid settings"])


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "smalltalk-lsp" / CONFIG_FILE_NAME


def read_toml(path: Path) -> tuple[dict[str, Any], list[str]]:
    """Read a TOML file; a missing file is empty, a broken one is reported."""
    if not path.is_file():
        return {}, []
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")), []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        return {}, [f"{path}: cannot read configuration: {err}"]


def load_settings(
    workspace: Path | None = None,
    overrides: list[dict[str, Any]] | None = None,
    trusted: bool | None = None,
) -> LoadedSettings:
    """Merge the config files and the LSP-provided overrides, then validate. `trusted`: may the
    workspace's own file choose model and adapter files; None decides by the `trust` settings
    of the user file and the overrides (untrusted by default; see server.trust)."""
    problems: list[str] = []
    user, errs = read_toml(user_config_path())
    problems += errs
    extras: list[dict[str, Any]] = []
    for extra in overrides or []:
        if isinstance(extra, dict):
            extras.append(extra)
        elif extra is not None:
            problems.append(f"settings must be an object, got {type(extra).__name__}")
    ignored: list[str] = []
    layers = [user]
    if workspace is not None:
        if trusted is None:
            outside = _merge_all([user, *extras])
            trust = validate_settings({"trust": outside.get("trust", {})}).settings.trust
            trusted = is_trusted(workspace, trust.workspace, trust.trusted_roots)
        source = workspace / CONFIG_FILE_NAME
        data, errs = read_toml(source)
        problems += errs
        data, errs, ignored = workspace_layer(data, source, workspace, trusted)
        problems += errs
        layers.append(data)
    loaded = validate_settings(_merge_all(layers + extras))
    loaded.problems[:0] = problems
    loaded.trusted = trusted is not False
    loaded.ignored = ignored
    return loaded


def _merge_all(layers: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _deep_merge(merged, layer)
    return merged
