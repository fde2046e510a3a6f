"""Suggestions kept for the user typing through them.

Typing through: after a suggestion "foo: bar" the user types "f"; the new request's text before
the cursor extends the old one by "f", the text after it is unchanged, and "f" starts the
suggestion, so the answer is "oo: bar" with no model call. Keys name the model and the adapter
set: a suggestion made under another adapter set is never served. (A prompt seen before is
answered by the coder's worker, which remembers finished generations: server.engine.worker.)
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

    def clear(self) -> None:
        self._shown.clear()
