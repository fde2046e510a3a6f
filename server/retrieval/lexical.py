"""Lexical search on selectors: the words of a selector (`rightsFor:` -> rights, for) in an
inverted index, scored by inverse document frequency, so rare shared words count most."""

from __future__ import annotations

import heapq
import math
import re
from collections import defaultdict

# Units scored per query at most (see LexicalIndex.search).
MAX_CANDIDATES = 500

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def selector_words(selector: str) -> list[str]:
    """`rightsFor:` -> ["rights", "for"]; `printOn:` -> ["print", "on"]; `HTTPGet` -> ["http",
    "get"]. Binary selectors have no words."""
    return [w.lower() for w in _WORD.findall(selector)]


class LexicalIndex:
    def __init__(self) -> None:
        self._postings: dict[str, set[str]] = defaultdict(set)
        self._words_of: dict[str, tuple[str, ...]] = {}
        self._selector_of: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._words_of)

    def add(self, key: str, selector: str) -> None:
        self.remove(key)
        words = tuple(dict.fromkeys(selector_words(selector)))
        self._words_of[key] = words
        self._selector_of[key] = selector
        for word in words:
            self._postings[word].add(key)

    def remove(self, key: str) -> None:
        words = self._words_of.pop(key, None)
        self._selector_of.pop(key, None)
        for word in words or ():
            keys = self._postings.get(word)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._postings[word]

    def search(self, selectors: list[str], k: int) -> list[tuple[str, float]]:
        """Units whose selector shares words with `selectors`, best first: (key, score).
        An exact selector match outranks any partial one. Rare words pick the candidates,
        at most MAX_CANDIDATES of them; common words (`at`, `with`) only add to those (or,
        when all words are common, the units sharing most of them are the candidates), so a
        query never scores thousands of units."""
        wanted_words = {w for s in selectors for w in selector_words(s)}
        exact = set(selectors)
        total = max(1, len(self._words_of))
        scores: dict[str, float] = defaultdict(float)
        postings = sorted(
            ((w, keys) for w in wanted_words if (keys := self._postings.get(w))),
            key=lambda pair: (len(pair[1]), pair[0]),
        )
        for n, (_, keys) in enumerate(postings):
            weight = math.log(1.0 + total / len(keys))
            if not scores and len(keys) > MAX_CANDIDATES:
                # Only common words: the units sharing most of them are the candidates.
                candidates: set[str] = keys
                for _, other in postings[n + 1:]:
                    if len(candidates) <= MAX_CANDIDATES:
                        break
                    candidates = (candidates & other) or candidates
                seed = candidates if len(candidates) <= MAX_CANDIDATES else heapq.nsmallest(
                    MAX_CANDIDATES, candidates)
                for key in seed:
                    scores[key] += weight
            elif len(scores) + len(keys) <= MAX_CANDIDATES:
                for key in keys:
                    scores[key] += weight
            else:
                for key in scores:
                    if key in keys:
                        scores[key] += weight
        for key in scores:
            words = self._words_of[key]
            # Normalise by selector length so long selectors do not win by sheer size.
            scores[key] /= math.sqrt(len(words)) if words else 1.0
            if self._selector_of[key] in exact:
                scores[key] += 1000.0
        return heapq.nsmallest(k, scores.items(), key=lambda item: (-item[1], item[0]))
