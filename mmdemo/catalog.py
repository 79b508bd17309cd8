"""The model catalog: named entries and the profiles that group them.

The catalog is a TOML file (``mmdemo/catalog.toml`` built in; a user's own file
can be merged over it with ``--catalog``). Parsing it imports nothing heavy.

An entry names its weights by ``arch = "hf-hub:..."|"local-dir:..."``, ``weights =
"file"`` (relative paths resolved against the catalog file) or ``pretrained = "tag"``;
which of them wins is decided in one place, :func:`mmdemo.weights.resolve_weights`.

``config = "file.json"`` registers a custom open_clip architecture (named by the
file's stem) before the model is created.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from mmdemo.errors import MMDemoError
from mmdemo.paths import DEFAULT_CATALOG

KINDS = ("clip", "captioner", "audio", "fusion")
PROFILE_SLOTS = ("clip", "captioner", "audio")


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


_ENTRY_KEYS = {"kind", "backend", "arch", "pretrained", "weights", "config", "tokenizer",
               "description", "allow_random", "requires", "options"}


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
    )


def parse_catalog(data: dict, base: Path) -> Catalog:
    entries = {name: parse_entry(name, raw, base) for name, raw in data.get("models", {}).items()}
    profiles = {}
    for name, raw in data.get("profiles", {}).items():
        fusion = raw.get("fusion", [])
        profiles[name] = Profile(
            name=name,
            description=str(raw.get("description", "")),
            clip=raw.get("clip"),
            captioner=raw.get("captioner"),
            audio=raw.get("audio"),
            fusion=tuple([fusion] if isinstance(fusion, str) else fusion),
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
        for ref in profile.fusion:
            if catalog.entry(ref).kind != "fusion":
                raise MMDemoError("catalog_invalid",
                                  f"Profile {profile.name!r}: fusion entry {ref!r} is not a fusion head.")
