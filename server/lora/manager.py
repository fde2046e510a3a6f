"""What the server does with adapters, as plain calls: the catalogue of a workspace, loading
the adapters that may apply into their role's live model, activation and deactivation, and
the adapters of each request.

Which adapters apply to a request (role, file): those activated by command or listed in
`adapters.active`, plus those whose manifest pattern matches the file or its package, minus
those deactivated by command. Scale: the command's, else `adapters.scales`, else the
manifest's, else 1. Adapters that may apply (active or with a pattern) are loaded into their
role's model ahead of time, so a swap at request time costs microseconds; a deactivated one
without a pattern and a removed file are unloaded, which frees their memory. The LSP wiring
is server.features.adapters.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.config import Settings
from server.engine.lora import AdapterLoadError, adapter_key, describe
from server.engine.lora_validation import AdapterError, validate_adapter
from server.lora.catalogue import AdapterEntry, Catalogue, adapter_folders, embedded_folders
from server.trust import is_trusted

if TYPE_CHECKING:
    from server.engine.backend import AdapterPool, EngineModel

log = logging.getLogger(__name__)

ROLES = ("coder", "reasoner")


@dataclass(frozen=True)
class AdapterSelection:
    """The adapters of one request: (name, scale) pairs for GenerateParams, the key naming
    the set (as the context will resolve it), and a label for people."""

    pairs: tuple[tuple[str, float], ...] = ()
    key: str = ""
    label: str = ""


class CommandError(ValueError):
    """A command's argument is wrong (unknown adapter, bad scale); the message says which."""


ModelLookup = Callable[[str], "EngineModel | None"]


class AdapterManager:
    def __init__(
        self,
        models: ModelLookup,
        roots: Sequence[Path] = (),
        settings: Settings | None = None,
        user_dir: Path | None = None,
    ) -> None:
        self.models = models
        self.roots = [Path(r) for r in roots]
        self.user_dir = user_dir
        self.settings = settings or Settings()
        self.catalogue = Catalogue(self._folders())
        # Activation by command: name -> scale (None: the configured or manifest scale).
        self.explicit: dict[str, float | None] = {}
        self.disabled: set[str] = set()
        # Why an adapter could not be loaded into its model (validation against the base).
        self.load_errors: dict[str, str] = {}
        # Names in `adapters.active` already reported as held by no folder.
        self._unknown_warned: set[str] = set()
        self._model_ids: dict[str, int] = {}
        self._checked: dict[str, tuple[str, str, int]] = {}
        self._sync_lock = threading.RLock()
        # Called after a sync that changed what is loaded or listed.
        self.listeners: list[Callable[[], None]] = []

    # --- configuration ---------------------------------------------------------------------

    def _folders(self) -> list[Path]:
        trust = self.settings.trust
        holding = [r for r in self.roots if is_trusted(r, trust.workspace, trust.trusted_roots)]
        shipped = embedded_folders(self.settings.model_for(role) for role in ("coder", "reasoner"))
        return adapter_folders(self.roots, self.settings.adapters.folders, self.user_dir, holding,
                               shipped)

    def settings_changed(self, settings: Settings, sync: bool = True) -> None:
        self.settings = settings
        self.catalogue.folders = self._folders()
        if sync:
            self.sync()

    # --- models ----------------------------------------------------------------------------

    def _model(self, role: str) -> EngineModel | None:
        try:
            return self.models(role)
        except Exception:
            log.exception("looking up the %s model failed", role)
            return None

    def architectures(self) -> dict[str, str]:
        archs = {}
        for role in ROLES:
            model = self._model(role)
            if model is not None:
                archs[role] = model.info.architecture
        return archs

    def _pools(self) -> list[AdapterPool]:
        pools: list[AdapterPool] = []
        for role in ROLES:
            model = self._model(role)
            if model is not None and all(p is not model.adapters for p in pools):
                pools.append(model.adapters)
        return pools

    # --- activation ------------------------------------------------------------------------

    def _warn_unknown_active(self, entries: dict[str, AdapterEntry]) -> None:
        """Say once per name when `adapters.active` names an adapter no folder holds (a typo,
        or an embedded adapter of another base model): it would otherwise do nothing, silently."""
        for name in self.settings.adapters.active:
            if name not in entries and name not in self._unknown_warned:
                self._unknown_warned.add(name)
                folders = ", ".join(str(f) for f in self.catalogue.folders) or "none"
                log.warning("adapters.active names %r, but no adapter folder holds it "
                            "(folders: %s)", name, folders)

    def is_active(self, name: str) -> bool:
        if name in self.disabled:
            return False
        return name in self.explicit or name in self.settings.adapters.active

    def scale_of(self, entry: AdapterEntry) -> float:
        explicit = self.explicit.get(entry.name)
        if explicit is not None:
            return explicit
        return float(self.settings.adapters.scales.get(entry.name, entry.scale))

    def _wanted(self, entry: AdapterEntry) -> bool:
        """Should be loaded: it may apply to some request."""
        if entry.name in self.disabled and not entry.pattern:
            return False
        return self.is_active(entry.name) or bool(entry.pattern)

    def activate(self, name: str, scale: float | None = None) -> dict[str, Any]:
        entry = self._entry(name)
        if scale is not None and not -10.0 <= scale <= 10.0:
            raise CommandError(f"scale {scale} is out of range (-10 to 10)")
        if entry.error is not None:
            raise CommandError(f"adapter '{name}' cannot be used: {entry.error}")
        self.explicit[name] = scale
        self.disabled.discard(name)
        self.load_errors.pop(name, None)  # an explicit request tries again
        self.sync(refresh=False)
        error = self.load_errors.get(name)
        if error is not None:
            self.explicit.pop(name, None)
            raise CommandError(f"adapter '{name}' was refused: {error}")
        return self.describe_entry(self._entry(name))

    def deactivate(self, name: str) -> dict[str, Any]:
        entry = self._entry(name)
        self.explicit.pop(name, None)
        self.disabled.add(name)
        self.sync(refresh=False)
        return self.describe_entry(entry)

    def _entry(self, name: Any) -> AdapterEntry:
        if not isinstance(name, str) or not name:
            raise CommandError(f"expected an adapter name, got {name!r}")
        entry = self.catalogue.get(name)
        if entry is None:
            self.sync()
            entry = self.catalogue.get(name)
        if entry is None:
            known = ", ".join(e.name for e in self.catalogue.entries()) or "none"
            raise CommandError(f"no adapter named '{name}' (known: {known})")
        return entry

    # --- loading ---------------------------------------------------------------------------

    def sync(self, refresh: bool = True) -> bool:
        """Re-read the folders (if `refresh`) and make the models' loaded adapters match the
        catalogue; True if anything changed. Runs llama.cpp loads: call it off the event loop."""
        with self._sync_lock:
            changed = False
            if refresh:
                changes = self.catalogue.refresh()
                for name in changes.changed + changes.removed:
                    self.load_errors.pop(name, None)
                changed = bool(changes)
            changed = self._forget_errors_of_new_models() or changed
            archs = self.architectures()
            entries = {e.name: e for e in self.catalogue.entries()}
            for pool in self._pools():
                for name in pool.names():
                    entry = entries.get(name)
                    target = self._model(entry.role(archs)) if entry is not None else None
                    keep = entry is not None and entry.usable and self._wanted(entry)
                    if not keep or target is None or target.adapters is not pool:
                        pool.unload(name)
                        changed = True
            for entry in entries.values():
                if not entry.usable or entry.name in self.load_errors:
                    continue
                model = self._model(entry.role(archs))
                if model is None:
                    continue
                if not self._wanted(entry):
                    changed = self._check(entry, model) or changed
                    continue
                before = model.adapters.get(entry.name)
                try:
                    loaded = model.adapters.load(entry.name, entry.path)
                except (AdapterError, AdapterLoadError, OSError) as err:
                    self.load_errors[entry.name] = str(err)
                    log.warning("adapter %s refused: %s", entry.name, err)
                    changed = True
                    continue
                changed = changed or loaded is not before
            self._warn_unknown_active(entries)
        if changed:
            for listener in list(self.listeners):
                try:
                    listener()
                except Exception:
                    log.exception("adapter listener failed")
        return changed

    def _check(self, entry: AdapterEntry, model: EngineModel) -> bool:
        """Validate an adapter that is not loaded against its model (once per file version),
        so the listing shows a mismatch before anyone activates it; True if it failed."""
        stamp = (entry.path, entry.version, id(model))
        if self._checked.get(entry.name) == stamp:
            return False
        self._checked[entry.name] = stamp
        if not Path(model.path).is_file():  # a remote model without a local copy
            return False
        try:
            validate_adapter(entry.path, model.path)
        except AdapterError as err:
            self.load_errors[entry.name] = str(err)
            return True
        return False

    def _forget_errors_of_new_models(self) -> bool:
        """A role's model that was (re)loaded gets another try at every adapter."""
        ids = {}
        for role in ROLES:
            model = self._model(role)
            ids[role] = id(model) if model is not None else 0
        if ids != self._model_ids:
            self._model_ids = ids
            self.load_errors.clear()
            return True
        return False

    def loaded(self, entry: AdapterEntry, archs: dict[str, str] | None = None) -> bool:
        model = self._model(entry.role(archs if archs is not None else self.architectures()))
        return model is not None and model.adapters.get(entry.name) is not None

    def close(self) -> None:
        for pool in self._pools():
            for name in pool.names():
                pool.unload(name)

    # --- requests --------------------------------------------------------------------------

    def select(
        self, role: str, file_path: str | None = None, packages: Sequence[str] = ()
    ) -> AdapterSelection:
        """The adapters that apply to a request of `role` on a file (cheap; no file access)."""
        model = self._model(role)
        if model is None:
            return AdapterSelection()
        archs = self.architectures()
        root = self.roots[0] if self.roots else None
        pairs = []
        for entry in self.catalogue.entries():
            if not entry.usable or entry.role(archs) != role or entry.name in self.disabled:
                continue
            applies = self.is_active(entry.name) or any(
                entry.applies_to(file_path, package, root) for package in (*packages, None)
            )
            if applies:
                pairs.append((entry.name, self.scale_of(entry)))
        active = model.adapters.active(pairs)
        chosen = tuple((a.name, a.scale) for a in active)
        return AdapterSelection(chosen, adapter_key(active), describe(active))

    # --- listing ---------------------------------------------------------------------------

    def describe_entry(self, entry: AdapterEntry, archs: dict[str, str] | None = None) -> dict:
        archs = archs if archs is not None else self.architectures()
        return {
            "name": entry.name,
            "path": entry.path,
            "base_architecture": entry.base_architecture,
            "loaded": self.loaded(entry, archs),
            "active": self.is_active(entry.name),
            "scale": self.scale_of(entry),
            "error": entry.error or self.load_errors.get(entry.name),
            "role": entry.role(archs),
            "purpose": entry.purpose,
            "pattern": list(entry.pattern),
            "description": entry.description,
            "rank": entry.rank,
            "size": entry.size,
        }

    def listing(self) -> list[dict[str, Any]]:
        archs = self.architectures()
        return [self.describe_entry(entry, archs) for entry in self.catalogue.entries()]

    def active_names(self) -> list[str]:
        return [e.name for e in self.catalogue.entries() if e.usable and self.is_active(e.name)]
