"""AI hover: a model-written one-paragraph summary of the method under the cursor, added to
the static hover (through `ls.hover_extras`).

Hover never waits for a model: a summary found in the disk cache (keyed by the method's
content hash and the model) is shown at once; otherwise one is queued on the actions' worker
(behind any running action, pausing for completions) and the hover says it is being written.
The next hover shows it, in this session or any later one.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from server.actions import ActionOptions, Run
from server.actions.summary import SummaryCache, summarize, summary_key
from server.actions.targets import method_name
from server.engine.types import Role
from server.lora.manager import AdapterSelection
from smalltalk_grammar.model import MethodDef

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer
    from server.features.common import Context

log = logging.getLogger(__name__)

PENDING_NOTE = "_Summary: being written by the {label} (hover again in a moment)._"


class AiHover:
    def __init__(self, ls: SmalltalkLanguageServer) -> None:
        self.ls = ls
        self._pending: set[str] = set()
        self._failed: set[str] = set()
        self._lock = threading.Lock()

    def _model(self, path: str) -> tuple[str, str, AdapterSelection] | None:
        """(cache name, label, adapters) of the model that writes summaries of a file's
        methods, or None. The adapters are part of the cache name: a summary written under
        one adapter set is not shown for another."""
        models = self.ls.models
        roles: tuple[tuple[Role, str], ...] = (("reasoner", "reasoning model"),
                                               ("coder", "coder model"))
        for role, label in roles:
            name = models.model_name(role)
            if name is not None:
                adapters = models.select_adapters(role, path)
                cache_name = f"{role}:{name}" + (f"+{adapters.key}" if adapters.key else "")
                if adapters.label:
                    label = f"{label} + {adapters.label}"
                return cache_name, label, adapters
        return None

    def extra(self, ctx: Context) -> str | None:
        """The summary section of a hover, or a note that it is being written; None outside
        methods or with summaries off."""
        method = ctx.method
        if method is None or not self.ls.settings.actions.hover_summaries:
            return None
        model = self._model(ctx.snap.path)
        if model is None:
            return None
        name, label, adapters = model
        key = summary_key(method, name)
        cache = SummaryCache(self.ls.root_for(ctx.snap.path))
        found = cache.get(key)
        if found:
            return f"**Summary** _({label})_: {found}"
        with self._lock:
            if key in self._failed:
                return None
            fresh = key not in self._pending
            self._pending.add(key)
        if fresh:
            self._queue(method, key, name, cache, adapters)
        return PENDING_NOTE.format(label=label)

    def _queue(self, method: MethodDef, key: str, name: str, cache: SummaryCache,
               adapters: AdapterSelection) -> None:
        options = ActionOptions.from_settings(self.ls.settings)

        def work(cancel: Any) -> None:
            try:
                # The adapters the cache key names, whatever changes while this waits.
                run = Run(self.ls.models, cancel, adapters=lambda _role: adapters)
                text = summarize(method, run, options.summary_max_tokens)
                if text:
                    cache.put(key, text, name)
                else:
                    self._give_up(key, "the model gave no summary")
            except Exception as err:  # a failed summary only leaves the hover without one
                self._give_up(key, str(err))
            finally:
                with self._lock:
                    self._pending.discard(key)

        # Keyed by method: hovering again while it waits does not queue it twice.
        self.ls.models.submit(work, key=f"summary:{method_name(method)}:{key[:12]}")

    def _give_up(self, key: str, why: str) -> None:
        log.info("no hover summary: %s", why)
        with self._lock:
            self._failed.add(key)


def setup(ls: SmalltalkLanguageServer) -> None:
    ls.hover_extras.append(AiHover(ls).extra)
