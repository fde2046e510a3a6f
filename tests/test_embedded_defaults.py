"""The embedded defaults: which models the roles run when nothing is configured, and the
reasoner's prompts rendered with the chat template stored in its GGUF (read from the header;
no model is loaded here)."""

from __future__ import annotations

from server.actions.chat import Message, render_chat
from server.actions.prompts import explain_messages
from server.config import Settings
from server.engine.embedded import QWEN_CODER_05B, QWEN_CODER_15B, resolve_model_path
from server.engine.gguf_info import read_gguf
from server.engine.registry import role_spec


def test_the_roles_default_to_the_qwen_coders() -> None:
    settings = Settings()
    assert settings.model_for("coder") == "qwen2.5-coder-0.5b"
    assert settings.model_for("reasoner") == "qwen2.5-coder-1.5b"
    coder, reasoner = role_spec(settings, "coder"), role_spec(settings, "reasoner")
    assert coder is not None and coder.path.name == QWEN_CODER_05B.file_name
    assert reasoner is not None and reasoner.path.name == QWEN_CODER_15B.file_name


def test_the_small_models_stay_available_by_name() -> None:
    assert resolve_model_path("gemma3-270m").name == "gemma-3-270m-q4_k_m.gguf"
    assert resolve_model_path("smollm2-135m").name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_both_roles_on_one_model_share_its_weights() -> None:
    settings = Settings.model_validate(
        {"models": {"code_generation": "qwen2.5-coder-0.5b", "reasoning": "qwen2.5-coder-0.5b"}}
    )
    coder, reasoner = role_spec(settings, "coder"), role_spec(settings, "reasoner")
    assert coder is not None and reasoner is not None
    # The registry keeps one llama_model per weights key.
    assert coder.weights_key == reasoner.weights_key


def test_the_reasoners_prompt_is_chatml_from_its_own_template() -> None:
    info = read_gguf(resolve_model_path("qwen2.5-coder-1.5b"))
    template = info.metadata["tokenizer.chat_template"]
    messages = explain_messages("method", "rightsCount\n\t^ rights size", "")
    prompt = render_chat(template, messages)
    assert prompt.startswith("<|im_start|>system\nYou are an experienced Smalltalk programmer.")
    assert "<|im_end|>\n<|im_start|>user\nExplain what this Smalltalk method does" in prompt
    assert prompt.endswith("```<|im_end|>\n<|im_start|>assistant\n")
    # Without a system message the template adds Qwen's own: the prompt came from the
    # GGUF's template, not from the ChatML fallback (which adds none).
    bare = render_chat(template, [Message("user", "hi")])
    assert bare.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")
