"""The model catalog: named entries and the profiles that group them.

The catalog is a TOML file (``mmdemo/catalog.toml`` built in; a user's own file
can be merged over it with ``--catalog``). Parsing it imports nothing heavy.

An entry names its weights by ``arch = "hf-hub:..."|"local-dir:..."``, ``weights =
"file"`` (relative paths resolved against the catalog file) or ``pretrained = "tag"``;
which of them wins is decided in one place, :func:`mmdemo.weights.resolve_weights`.

``config = "file.json"`` registers a custom open_clip architecture (named by the
file's stem) before the model is created.

Optional facts (``params``, ``download_mb``, ``memory_mb``, ``embed_dim``,
``sample_rate``, ``window_s``; a profile's ``hardware``) feed ``python -m mmdemo
models`` and the README's profiles table, both through :func:`profile_summary`, so
the two cannot disagree. An entry whose weights are local files may leave the sizes
out: :func:`entry_size` counts them from the files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import tomllib
from pathlib import Path
from typing import Any

from mmdemo.errors import MMDemoError
from mmdemo.paths import DEFAULT_CATALOG

KINDS = ("clip", "captioner", "audio", "fusion")
PROFILE_SLOTS = ("clip", "captioner", "audio")
# A profile's `hardware` and the advice the models table gives for it.
HARDWARE = {"cpu": "CPU fine", "gpu": "GPU advised"}


@dataclasses.dataclass(frozen=True)
class EntrySpec:
    name: str
    kind: str
    backend: str
    arch: str = ""
    pretrained: str | None = None
    weights: Path | None = None
    config: Path | None = None
    tokenizer: Path | None = None
    description: str = ""
    allow_random: bool = False
    # Names of other entries this one needs (e.g. the text tower an audio encoder was
    # trained against, the encoders a fusion head was trained on).
    requires: dict[str, str] = dataclasses.field(default_factory=dict)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Facts for the models table, where files can't tell them (see entry_size).
    params: int | None = None
    download_mb: float | None = None  # megabytes (1e6 bytes) fetched on first use
    memory_mb: float | None = None  # fp32 weights and buffers once loaded
    embed_dim: int | None = None
    sample_rate: int | None = None  # audio entries: the rate clips are resampled to
    window_s: float | None = None  # audio entries: the seconds the model hears at once

    @property
    def weights_source(self) -> str:
        """A human-readable answer to 'where do this entry's weights come from?'
        (decided by :func:`mmdemo.weights.resolve_weights`)."""
        from mmdemo.weights import resolve_weights

        return resolve_weights(self).label

    @property
    def model_id(self) -> str:
        """Names the exact weights (see :func:`mmdemo.weights.model_id`)."""
        from mmdemo.weights import model_id

        return model_id(self)


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    clip: str | None = None
    captioner: str | None = None
    audio: str | None = None
    fusion: tuple[str, ...] = ()
    hardware: str | None = None  # a key of HARDWARE
    # The image model whose patch tokens fusion heads read (a clip or captioner entry);
    # None: the clip's own. The tiny profile names its CoCa (mmdemo/head_inputs.py says why).
    tokens: str | None = None


@dataclasses.dataclass
class Catalog:
    entries: dict[str, EntrySpec]
    profiles: dict[str, Profile]

    def entry(self, name: str) -> EntrySpec:
        if name not in self.entries:
            raise MMDemoError("unknown_model", _unknown("model", name, self.entries))
        return self.entries[name]

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise MMDemoError("unknown_profile", _unknown("profile", name, self.profiles))
        return self.profiles[name]

    def add(self, spec: EntrySpec) -> None:
        self.entries[spec.name] = spec

    def merged(self, other: "Catalog") -> "Catalog":
        return Catalog({**self.entries, **other.entries}, {**self.profiles, **other.profiles})


def _unknown(what: str, name: str, table: dict) -> str:
    return f"Unknown {what} {name!r}. Available: {', '.join(sorted(table)) or '(none)'}."


def _path(value: Any, base: Path, field: str, name: str) -> Path | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise MMDemoError("catalog_invalid", f"Catalog entry {name!r}: {field} must be a path string.")
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


# The optional facts and the type each must have.
_FACTS = {"params": int, "embed_dim": int, "sample_rate": int, "download_mb": float, "memory_mb": float,
          "window_s": float}
_ENTRY_KEYS = {"kind", "backend", "arch", "pretrained", "weights", "config", "tokenizer",
               "description", "allow_random", "requires", "options", *_FACTS}


def _fact(raw: dict, key: str, name: str) -> int | float | None:
    value = raw.get(key)
    if value is None:
        return None
    whole = _FACTS[key] is int
    # bool is an int to Python, not to a reader of the catalog.
    if (isinstance(value, bool) or not isinstance(value, int if whole else (int, float))
            or not math.isfinite(value) or value <= 0):
        raise MMDemoError("catalog_invalid", f"Catalog entry {name!r}: {key} must be a positive "
                                             f"{'whole number' if whole else 'number'}, not {value!r}.")
    return _FACTS[key](value)


def parse_entry(name: str, raw: dict, base: Path) -> EntrySpec:
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise MMDemoError("catalog_invalid", f"Catalog entry {name!r} has unknown keys: {', '.join(sorted(unknown))}.")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise MMDemoError("catalog_invalid",
                          f"Catalog entry {name!r}: kind must be one of {', '.join(KINDS)}, not {kind!r}.")
    arch = str(raw.get("arch", ""))
    if arch.startswith("local-dir:"):
        # Relative local-dir paths are relative to the catalog file, like every other path.
        arch = "local-dir:" + str(_path(arch[len("local-dir:"):], base, "arch", name))
    return EntrySpec(
        name=name,
        kind=kind,
        backend=str(raw.get("backend", "open_clip")),
        arch=arch,
        pretrained=raw.get("pretrained") or None,
        weights=_path(raw.get("weights"), base, "weights", name),
        config=_path(raw.get("config"), base, "config", name),
        tokenizer=_path(raw.get("tokenizer"), base, "tokenizer", name),
        description=str(raw.get("description", "")),
        allow_random=bool(raw.get("allow_random", False)),
        requires=dict(raw.get("requires", {})),
        options=dict(raw.get("options", {})),
        **{key: _fact(raw, key, name) for key in _FACTS},
    )


def parse_catalog(data: dict, base: Path) -> Catalog:
    entries = {name: parse_entry(name, raw, base) for name, raw in data.get("models", {}).items()}
    profiles = {}
    for name, raw in data.get("profiles", {}).items():
        fusion = raw.get("fusion", [])
        hardware = raw.get("hardware")
        if hardware is not None and hardware not in HARDWARE:
            raise MMDemoError("catalog_invalid", f"Profile {name!r}: hardware must be one of "
                                                 f"{', '.join(map(repr, HARDWARE))}, not {hardware!r}.")
        profiles[name] = Profile(
            name=name,
            description=str(raw.get("description", "")),
            clip=raw.get("clip"),
            captioner=raw.get("captioner"),
            audio=raw.get("audio"),
            fusion=tuple([fusion] if isinstance(fusion, str) else fusion),
            hardware=hardware,
            tokens=raw.get("tokens"),
        )
    return Catalog(entries, profiles)


def load_catalog(path: Path | None = None) -> Catalog:
    """The built-in catalog, with ``path`` (a user's TOML file) merged over it."""
    catalog = _read(DEFAULT_CATALOG)
    if path is not None:
        catalog = catalog.merged(_read(Path(path)))
    _check_references(catalog)
    return catalog


def _read(path: Path) -> Catalog:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise MMDemoError("catalog_not_found", f"Catalog file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MMDemoError("catalog_invalid", f"Catalog file {path} is not valid TOML: {exc}") from None
    return parse_catalog(data, Path(path).resolve().parent)


def _check_references(catalog: Catalog) -> None:
    for profile in catalog.profiles.values():
        for slot in PROFILE_SLOTS:
            ref = getattr(profile, slot)
            if ref is not None:
                spec = catalog.entry(ref)
                if spec.kind != slot and not (slot == "clip" and spec.kind == "captioner"):
                    raise MMDemoError("catalog_invalid",
                                      f"Profile {profile.name!r}: {slot} = {ref!r} is a {spec.kind} entry.")
        if profile.tokens is not None and catalog.entry(profile.tokens).kind not in ("clip", "captioner"):
            raise MMDemoError("catalog_invalid", f"Profile {profile.name!r}: tokens = {profile.tokens!r} is not an "
                                                 "image model (clip or captioner).")
        for ref in profile.fusion:
            if catalog.entry(ref).kind != "fusion":
                raise MMDemoError("catalog_invalid",
                                  f"Profile {profile.name!r}: fusion entry {ref!r} is not a fusion head.")


# -- sizes and the profiles table ------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EntrySize:
    params: int | None
    download_mb: float | None  # fetched on first use, or (downloads False) the files already on disk
    memory_mb: float | None  # fp32 weights once loaded
    downloads: bool


def _local_files(spec: EntrySpec) -> list[Path]:
    """The files an entry's weights are read from, when they are already on disk."""
    from mmdemo.weights import FILE, LOCAL_DIR, resolve_weights

    source = resolve_weights(spec)
    if source.kind == LOCAL_DIR:
        folder = Path(source.location)
        return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    if source.kind == FILE and spec.weights is not None and spec.weights.is_file():
        return [p for p in (spec.weights, spec.config, spec.tokenizer) if p is not None and p.is_file()]
    return []


def _safetensors_params(path: Path) -> int | None:
    """Parameters stored in a .safetensors file, read from its JSON header (no torch)."""
    try:
        with open(path, "rb") as f:
            header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        return sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None


def entry_size(spec: EntrySpec) -> EntrySize:
    """The catalog's stated sizes, and for weights on disk whatever it leaves out,
    counted from the files (every backend loads in fp32: 4 bytes a parameter)."""
    from mmdemo.weights import HUB, TAG, resolve_weights

    params, download, memory = spec.params, spec.download_mb, spec.memory_mb
    files = _local_files(spec)
    if files:
        counted = [n for n in map(_safetensors_params, (p for p in files if p.suffix == ".safetensors"))
                   if n is not None]
        params = params or (sum(counted) if counted else None)
        download = download or round(sum(p.stat().st_size for p in files) / 1e6, 4)
        memory = memory or (round(params * 4 / 1e6, 4) if params else None)
    return EntrySize(params, download, memory, resolve_weights(spec).kind in (HUB, TAG))


def entry_summary(spec: EntrySpec) -> dict:
    size = entry_size(spec)
    return {"kind": spec.kind, "backend": spec.backend, "weights": spec.weights_source,
            "description": spec.description, "params": size.params, "download_mb": size.download_mb,
            "memory_mb": size.memory_mb, "downloads": size.downloads, "embed_dim": spec.embed_dim,
            "sample_rate": spec.sample_rate, "window_s": spec.window_s}


def _total(values: list) -> float | None:
    return None if not values or None in values else round(sum(values), 2)


def profile_summary(catalog: Catalog, name: str) -> dict:
    """A profile's models, their sizes together and what each tab does with them."""
    p = catalog.profile(name)
    names = list(dict.fromkeys([n for n in (p.clip, p.captioner, p.audio, p.tokens) if n] + list(p.fusion)))
    sizes = [entry_size(catalog.entry(n)) for n in names]
    clip = catalog.entry(p.clip) if p.clip else None
    audio = catalog.entry(p.audio) if p.audio else None
    return {
        "description": p.description, "clip": p.clip, "captioner": p.captioner, "audio": p.audio,
        "fusion": list(p.fusion), "models": names,
        "params": _total([s.params for s in sizes]), "download_mb": _total([s.download_mb for s in sizes]),
        "memory_mb": _total([s.memory_mb for s in sizes]), "downloads": any(s.downloads for s in sizes),
        "hardware": p.hardware, "advice": HARDWARE.get(p.hardware),
        "tabs": {
            "image": {"captions": p.captioner, "ranking_and_search": p.clip,
                      "embed_dim": clip.embed_dim if clip else None},
            "audio": {"model": p.audio, "sample_rate": audio.sample_rate if audio else None,
                      "window_s": audio.window_s if audio else None},
            # Zero-shot and the heads you train both read these features.
            "classify": {"image_text": p.clip, "image_text_dim": clip.embed_dim if clip else None,
                         "audio": p.audio, "audio_dim": audio.embed_dim if audio else None,
                         "bundled_heads": len(p.fusion)},
        },
    }
