"""One-paragraph summaries of methods for hover, written in the background and cached on disk
by the method's content hash (and the model), so they survive restarts and are shared by
every copy of the same method."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path

from server.actions.prompts import summary_messages
from server.actions.targets import method_name
from server.actions.thinking import UnfinishedThinking, answer_only
from server.actions.types import Run
from smalltalk_grammar.model import MethodDef

log = logging.getLogger(__name__)

CACHE_DIR = Path(".smalltalk-lsp") / "hover"
PROMPT_VERSION = "1"
MAX_CHARS = 600


def summary_key(method: MethodDef, model: str) -> str:
    parts = [PROMPT_VERSION, model, method.class_name, method.side, method.source.strip()]
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


class SummaryCache:
    """`<root>/.smalltalk-lsp/hover/<hash>.json`, one small file per summary."""

    def __init__(self, root: Path) -> None:
        self.folder = root / CACHE_DIR

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        try:
            data = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        text = data.get("summary") if isinstance(data, dict) else None
        return text if isinstance(text, str) and text else None

    def put(self, key: str, summary: str, model: str) -> None:
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"summary": summary, "model": model}, handle)
            os.replace(tmp, path)
        except OSError as err:
            log.warning("cannot cache a hover summary in %s: %s", path, err)


def clean_summary(text: str) -> str:
    """One paragraph, whole sentences, no code fences or headings."""
    text = re.sub(r"```.*?(```|$)", " ", text, flags=re.S)
    paragraph = next((p for p in re.split(r"\n\s*\n", text) if p.strip()), "")
    paragraph = " ".join(re.sub(r"^#+\s*", "", paragraph.strip()).split())
    if len(paragraph) > MAX_CHARS:
        cut = paragraph.rfind(". ", 0, MAX_CHARS)
        paragraph = paragraph[: cut + 1] if cut > 80 else paragraph[:MAX_CHARS].rstrip() + "…"
    return paragraph


def summarize(method: MethodDef, run: Run, max_tokens: int) -> str:
    """The reasoner's summary of a method (answer only), or the coder's when no reasoner is
    configured; "" when the model gave none."""
    code = f'"{method_name(method)}"\n{method.source.strip()}'
    if run.models.configured("reasoner"):
        result = run.reasoner(summary_messages(code), max_tokens, temperature=0.0)
        try:
            return clean_summary(answer_only(result.generation.text))
        except UnfinishedThinking:
            return ""
    prompt = f'{method.source.strip()}\n\n"In short, {method.selector} '
    result = run.coder(prompt, max_tokens, stop=('"',))
    return clean_summary(f"In short, {method.selector} " + result.generation.text)
