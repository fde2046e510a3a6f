"""Semantic tokens (full document): written below; registered only when complete."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.lsp import SmalltalkLanguageServer


def setup(ls: SmalltalkLanguageServer) -> None:
    return None
