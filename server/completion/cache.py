"""Suggestions kept for the user typing through them, and for prompts seen before.

Typing through: after a suggestion "foo: bar" the user types "f"; the new request's text before
the cursor extends the old one by "f", the text after it is unchanged, and "f" starts the
suggestion, so the answer is "oo: bar" with no model call. Keys name the model and the adapter
set: a suggestion made under another adapter set is never served.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

# How much of the text after the cursor must be unchanged for a typed-through suggestion.
_SUFFIX_CHECK = 200


@dataclass(frozen=True)
class CacheKey:
    uri: str
    model_id: str
    adapter_key: str = ""


@dataclass(frozen=True)
class _Shown:
    before: str
    after: str
    suggestion: str


class SuggestionCache:
    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._shown: OrderedDict[CacheKey, _Shown] = OrderedDict()
        self._prompts: OrderedDict[tuple[str, str, str, int], str] = OrderedDict()

    # --- typing through ---------------------------------------------------------------

    def remember(self, key: CacheKey, text: str, offset: int, suggestion: str) -> None:
        self._shown[key] = _Shown(text[:offset], text[offset : offset + _SUFFIX_CHECK], suggestion)
        self._shown.move_to_end(key)
        while len(self._shown) > self.size:
            self._shown.popitem(last=False)

    def typed_through(self, key: CacheKey, text: str, offset: int) -> str | None:
        """The rest of the last suggestion if the user has typed a prefix of it since."""
        shown = self._shown.get(key)
        if shown is None:
            return None
        before = text[:offset]
        if not before.startswith(shown.before):
            return None
        if text[offset : offset + _SUFFIX_CHECK] != shown.after:
            return None
        typed = before[len(shown.before) :]
        if not shown.suggestion.startswith(typed):
            return None
        rest = shown.suggestion[len(typed) :]
        return rest if rest.strip() else None

    # --- prompts ------------------------------------------------------------------------

    def prompt_result(
        self, model_id: str, adapter_key: str, prompt: str, max_tokens: int
    ) -> str | None:
        key = (model_id, adapter_key, prompt, max_tokens)
        found = self._prompts.get(key)
        if found is not None:
            self._prompts.move_to_end(key)
        return found

    def store_prompt_result(
        self, model_id: str, adapter_key: str, prompt: str, max_tokens: int, raw: str
    ) -> None:
        key = (model_id, adapter_key, prompt, max_tokens)
        self._prompts[key] = raw
        self._prompts.move_to_end(key)
        while len(self._prompts) > self.size:
            self._prompts.popitem(last=False)

    def clear(self) -> None:
        self._shown.clear()
        self._prompts.clear()
