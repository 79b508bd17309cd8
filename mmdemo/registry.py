"""The shared model registry: named models loaded lazily, once, onto a device.

Every tab asks the registry for models by name (or by profile slot). The first
request loads the entry; concurrent requests for the same entry wait for that one
load instead of starting their own. Entries load on the app's device unless one was
chosen for them (the Models tab's Device: ``get(name, device=...)``). Loading is
delegated to a backend function chosen by the entry's (kind, backend); backends are
imported only when used so that ``import mmdemo`` stays light.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from mmdemo.batching import batched
from mmdemo.catalog import Catalog, EntrySpec, Profile, load_catalog
from mmdemo.errors import MMDemoError
from mmdemo.settings import DEFAULT_BATCH_MAX

if TYPE_CHECKING:  # pragma: no cover
    from mmdemo.settings import Settings

log = logging.getLogger(__name__)

# (kind, backend) -> "module:function". The function takes (spec, device, deps) and
# returns a handle (a protocol of mmdemo.handles) whose ``modules()`` lists its torch
# modules. ``deps`` maps each of the entry's ``requires`` slots that the backend
# loads with (NEEDS) to that entry's loaded handle: backends never see the registry.
BACKENDS: dict[tuple[str, str], str] = {
    ("clip", "open_clip"): "mmdemo.models.open_clip_backend:load_clip",
    ("captioner", "open_clip"): "mmdemo.models.open_clip_backend:load_captioner",
    ("audio", "mmdemo"): "mmdemo.models.audio_backend:load_audio",
    ("audio", "clap"): "mmdemo.models.clap_backend:load_clap",
    ("fusion", "mmdemo"): "mmdemo.models.fusion_backend:load_fusion",
}

# The ``requires`` slots a backend needs loaded before it can load. A fusion head's
# requires only record what it was trained on (its file's encoder ids are checked
# against the profile by check_fits_profile), so loading a head does not load its encoders.
NEEDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("audio", "mmdemo"): ("text",),
}

# Kinds whose encode calls are batched across concurrent requests (mmdemo.batching); a
# fusion head's predict is a few small matmuls, not worth the hand-over.
BATCHED_KINDS = ("clip", "captioner", "audio")

NOT_LOADED, LOADING, LOADED, FAILED = "not loaded", "loading", "loaded", "failed"


@dataclasses.dataclass(frozen=True)
class EntryStatus:
    name: str
    kind: str
    state: str
    source: str
    device: str | None = None
    dtype: str | None = None
    parameters: int | None = None
    memory_bytes: int | None = None
    load_seconds: float | None = None
    error: str | None = None


@dataclasses.dataclass
class _Slot:
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    state: str = NOT_LOADED
    handle: Any = None
    error: str | None = None
    load_seconds: float | None = None
    parameters: int = 0
    memory_bytes: int = 0
    dtype: str | None = None
    last_used: float = 0.0
    device: str | None = None  # where the handle lives (set while loaded)
    pinned: str | None = None  # chosen for it (None = the app's); kept through eviction, for the reload


def _backend(spec: EntrySpec) -> Callable:
    target = BACKENDS.get((spec.kind, spec.backend))
    if target is None:
        known = ", ".join(f"{k}/{b}" for k, b in BACKENDS)
        raise MMDemoError("backend_unknown",
                          f"Model {spec.name!r}: no backend {spec.backend!r} for kind {spec.kind!r} (known: {known}).")
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def _measure(handle: Any) -> tuple[int, int, str | None]:
    """Parameter count, bytes of parameters + buffers, and dtype of a handle's modules."""
    params = memory = 0
    dtype = None
    for module in handle.modules():
        for p in module.parameters():
            params += p.numel()
            memory += p.numel() * p.element_size()
            dtype = dtype or str(p.dtype).replace("torch.", "")
        for b in module.buffers():
            memory += b.numel() * b.element_size()
    return params, memory, dtype


class Registry:
    def __init__(self, catalog: Catalog | None = None, *, device: str = "auto",
                 memory_budget_bytes: int = 0, profile: str | None = None, batch_max: int = DEFAULT_BATCH_MAX):
        self.catalog = catalog if catalog is not None else load_catalog()
        self.batch_max = batch_max  # inputs per batched encode call; 1 = no batching
        self.requested_device = device
        self.memory_budget_bytes = memory_budget_bytes
        self._device: str | None = None
        self.warnings: list[str] = []
        self._slots: dict[str, _Slot] = {}
        self._slots_lock = threading.Lock()
        self.profile_name = profile or next(iter(self.catalog.profiles), "")
        if profile is not None:
            self.catalog.profile(profile)  # unknown profile: fail at start-up, clearly

    # -- device -------------------------------------------------------------------
    @property
    def device(self) -> str:
        """The device models load onto; resolving it imports torch, so it's lazy."""
        if self._device is None:
            from mmdemo.devices import resolve_device

            self._device, warning = resolve_device(self.requested_device)
            if warning:
                self.warnings.append(warning)
                log.warning(warning)
        return self._device

    def place(self, device: str | None) -> tuple[str | None, str | None]:
        """(device, warning) for a device asked for one entry (mmdemo.devices.entry_device:
        None = follow the app's); the warning also goes to the Models tab's summary."""
        from mmdemo.devices import entry_device

        resolved, warning = entry_device(device)
        if warning and warning not in self.warnings:  # once, however often it's asked
            self.warnings.append(warning)
            log.warning(warning)
        return resolved, warning

    # -- lookup ---------------------------------------------------------------------
    @property
    def profile(self) -> Profile:
        return self.catalog.profile(self.profile_name)

    def for_slot(self, slot: str, *, lazy: bool = False) -> Any:
        """The loaded model the active profile uses for ``slot`` (clip/captioner/audio/tokens).

        ``lazy=True`` returns a :class:`LazyHandle` that loads on first use instead: the UI
        hands those to tasks, which check their inputs before touching the model, so an
        empty or unreadable input never starts a load (a download, on a real profile)."""
        name = getattr(self.profile, slot)
        if name is None and slot != "tokens":
            raise MMDemoError("profile_slot_empty",
                              f"Profile {self.profile_name!r} has no {slot} model; pick another profile.")
        # A profile without a tokens entry: None, and heads read the clip's own patches.
        return None if name is None else LazyHandle(self, name) if lazy else self.get(name)

    def names(self, kind: str | None = None) -> list[str]:
        return [n for n, s in self.catalog.entries.items() if kind is None or s.kind == kind]

    def register(self, spec: EntrySpec) -> None:
        """Add (or replace) an entry at run time, e.g. a fusion head the user trained."""
        with self._slots_lock:
            old = self._slots.pop(spec.name, None)
            self.catalog.add(spec)
        if old is not None and old.handle is not None:
            self._release(old)

    def _slot(self, name: str) -> _Slot:
        self.catalog.entry(name)  # raises the friendly "unknown model" error
        with self._slots_lock:
            return self._slots.setdefault(name, _Slot())

    # -- loading ----------------------------------------------------------------------
    def get(self, name: str, device: str | None = None) -> Any:
        """The loaded handle for ``name``, loading it on first use (exactly once). ``device``
        (auto = the app's, cpu, cuda, mps) also puts it there from now on: loaded elsewhere,
        it moves (once; requests holding the old handle finish on it). None keeps it where it is."""
        slot = self._slot(name)
        pin_now = device is not None
        target = self.place(device)[0] if pin_now else None
        # Fast path, no lock: a loaded handle never changes (a reload or unload swaps it out,
        # handle first: one read here before that is still a whole, usable handle).
        handle = slot.handle
        if handle is not None and slot.state == LOADED and (
                not pin_now or (slot.pinned == target and slot.device == (target or self.device))):
            slot.last_used = time.monotonic()
            return handle
        with slot.lock:
            if pin_now:
                slot.pinned = target
            wanted = slot.pinned or self.device
            moved = slot.state == LOADED and slot.device != wanted
            if moved:
                log.info("moving %s from %s to %s", name, slot.device, wanted)
                self._release(slot)
            if slot.state != LOADED:
                self._load(name, slot, wanted)
            slot.last_used = time.monotonic()
            handle = slot.handle
        if moved:
            self._release_dependents(name)
        self._evict_over_budget(keep=name)
        return handle

    def _load(self, name: str, slot: _Slot, device: str) -> None:
        spec = self.catalog.entry(name)
        slot.state, slot.error = LOADING, None
        started = time.perf_counter()
        try:
            backend = _backend(spec)
            deps = {key: self.get(dep) for key, dep in self._dependencies(spec).items()}
            handle = backend(spec, device, deps)
            # A head trained on other encoders would give meaningless numbers, and
            # silently so: it fails here, visibly on the Models tab too.
            self.check_fits_profile(getattr(handle, "encoder", None) or {}, f"Head {name!r}")
        except MMDemoError as exc:
            slot.state, slot.error = FAILED, str(exc)
            raise
        except Exception as exc:  # a backend's own error: wrap it, keep the cause for logs
            log.exception("loading %s failed", name)
            slot.state = FAILED
            slot.error = f"Could not load model {name!r} ({spec.weights_source}): {type(exc).__name__}: {exc}"
            raise MMDemoError("model_load_failed", slot.error) from exc
        for module in handle.modules():
            module.eval()  # inference only: dropout off, norms frozen, whatever the backend did
        slot.parameters, slot.memory_bytes, slot.dtype = _measure(handle)
        slot.load_seconds = time.perf_counter() - started
        if spec.kind in BATCHED_KINDS:
            handle = batched(handle, self.batch_max)
        # State last: the unlocked fast path in get() trusts a LOADED slot's handle and device.
        slot.device, slot.handle, slot.state = device, handle, LOADED
        log.info("loaded %s on %s in %.2fs", name, device, slot.load_seconds)

    def check_fits_profile(self, encoder: dict[str, str], what: str) -> None:
        """Refuse ``what`` (a head) when the encoders it records ({slot: model_id}) are
        not the active profile's."""
        profile = self.profile
        for slot, trained_on in dict(encoder).items():
            active_name = getattr(profile, slot, None)
            active = self.catalog.entry(active_name).model_id if active_name else None
            if active != trained_on:
                raise MMDemoError(
                    "head_encoder_mismatch",
                    f"{what} was trained on {slot} encoder {trained_on!r}, but profile {profile.name!r} uses "
                    f"{active or 'none'}; switch to the profile it was trained on or retrain it.")

    def _dependencies(self, spec: EntrySpec, _path: tuple[str, ...] = ()) -> dict[str, str]:
        """{slot: entry name} of what ``spec``'s backend needs loaded first (the backend
        explains a missing one); refuses a cycle, which would wait on its own lock forever."""
        path = (*_path, spec.name)
        deps = {slot: spec.requires[slot] for slot in NEEDS.get((spec.kind, spec.backend), ())
                if spec.requires.get(slot)}
        for name in deps.values():
            if name in path:
                raise MMDemoError("requires_cycle", f"Models {' -> '.join([*path, name])} require each other in a "
                                                    "cycle; fix their requires = {...} in the catalog.")
            self._dependencies(self.catalog.entry(name), path)
        return deps

    def load_profile(self) -> list[str]:
        """Load everything the active profile names; returns the names loaded."""
        p = self.profile
        names = list(dict.fromkeys([n for n in (p.clip, p.captioner, p.audio, p.tokens) if n] + list(p.fusion)))
        for n in names:
            self.get(n)
        return names

    # -- unloading ----------------------------------------------------------------------
    def unload(self, name: str) -> bool:
        """Unload ``name``; its device choice goes too (its next use loads on the app's)."""
        slot = self._slot(name)
        with slot.lock:
            slot.pinned = None
            if slot.state not in (LOADED, FAILED):
                return False
            self._release(slot)
        self._release_dependents(name)
        return True

    def _release_dependents(self, name: str) -> None:
        """Unload what holds ``name``'s old handle (tiny-audio keeps its CLIP as text side), or that
        copy stays in memory; they reload with the new one on next use. Without ``name``'s lock held."""
        with self._slots_lock:
            loaded = [(n, s) for n, s in self._slots.items() if s.state == LOADED and n != name]
        for other, slot in loaded:
            if name in self._dependencies(self.catalog.entry(other)).values():
                with slot.lock:
                    if slot.state == LOADED:
                        log.info("unloading %s: it holds %s's old copy", other, name)
                        self._release(slot)
                self._release_dependents(other)

    def _release(self, slot: _Slot) -> None:
        was_loaded, device = slot.handle is not None, slot.device
        slot.handle, slot.state, slot.error, slot.device = None, NOT_LOADED, None, None
        slot.parameters = slot.memory_bytes = 0
        if was_loaded:
            gc.collect()
            if device == "cuda":
                import torch

                torch.cuda.empty_cache()

    def _evict_over_budget(self, keep: str) -> None:
        if self.memory_budget_bytes <= 0:
            return
        while True:
            with self._slots_lock:
                loaded = [(s.last_used, n, s) for n, s in self._slots.items() if s.state == LOADED]
            total = sum(s.memory_bytes for _, _, s in loaded)
            victims = sorted((t, n, s) for t, n, s in loaded if n != keep)
            if total <= self.memory_budget_bytes or not victims:
                return
            _, victim, slot = victims[0]
            # Don't wait on a slot another thread is loading or using right now.
            if not slot.lock.acquire(blocking=False):
                return
            try:
                if slot.state == LOADED:
                    log.info("memory budget: unloading least recently used %s", victim)
                    self.warnings.append(f"Unloaded {victim!r} to stay within the memory budget.")
                    self._release(slot)
            finally:
                slot.lock.release()

    # -- reporting ----------------------------------------------------------------------
    def status(self) -> list[EntryStatus]:
        rows = []
        for name, spec in self.catalog.entries.items():
            with self._slots_lock:
                slot = self._slots.get(name)
            if slot is None:
                rows.append(EntryStatus(name, spec.kind, NOT_LOADED, spec.weights_source))
                continue
            loaded = slot.state == LOADED
            rows.append(EntryStatus(
                name=name, kind=spec.kind, state=slot.state, source=spec.weights_source,
                device=slot.device if loaded else None,
                dtype=slot.dtype if loaded else None,
                parameters=slot.parameters if loaded else None,
                memory_bytes=slot.memory_bytes if loaded else None,
                load_seconds=slot.load_seconds if loaded else None,
                error=slot.error,
            ))
        return rows

    def loaded_device(self, name: str) -> str | None:
        """Where ``name`` is loaded now (None: not loaded)."""
        with self._slots_lock:
            slot = self._slots.get(name)
        return slot.device if slot is not None and slot.state == LOADED else None

    def is_loaded(self, name: str) -> bool:
        with self._slots_lock:
            slot = self._slots.get(name)
        return slot is not None and slot.state == LOADED

    def loaded_memory_bytes(self) -> int:
        with self._slots_lock:
            return sum(s.memory_bytes for s in self._slots.values() if s.state == LOADED)


class LazyHandle:
    """Stands for a registry entry's handle for one request: the first attribute read
    loads it (once, as :meth:`Registry.get` does) and keeps it, so a memory budget that
    evicts it meanwhile can't make one request load it twice. ``model_id`` is the
    catalog's and loads nothing (tasks compare it before they need the model)."""

    __slots__ = ("_registry", "_name", "_handle")

    def __init__(self, registry: Registry, name: str):
        self._registry, self._name, self._handle = registry, name, None

    def __getattr__(self, attr: str) -> Any:
        if attr == "model_id" and self._handle is None:
            return self._registry.catalog.entry(self._name).model_id
        if self._handle is None:
            self._handle = self._registry.get(self._name)
        return getattr(self._handle, attr)

    def __repr__(self) -> str:
        return f"LazyHandle({self._name!r})"


def registry_from_settings(settings: "Settings") -> Registry:
    """The registry the app and the CLI run on: the built-in catalog with the settings'
    own merged over it, on their device and profile, within their memory budget."""
    return Registry(load_catalog(settings.catalog), device=settings.device,
                    memory_budget_bytes=settings.memory_budget_bytes, profile=settings.profile,
                    batch_max=settings.batch_max)
