"""What the Classify sub-tabs share: the registry, where heads and features are kept,
the generated examples, the users' own heads and the running training jobs. Built once
per app by ``build`` and handed to every sub-tab, so no handler reads a global."""

from __future__ import annotations

import logging
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from mmdemo.atomic import atomic_write_bytes
from mmdemo.hashing import content_hash
from mmdemo.tasks import classify as tasks
from mmdemo.tasks.classify.heads import HeadStore, OwnerHeads, owner_of

log = logging.getLogger(__name__)

# Bundled heads of each task, best first: the one picked when a task's example is clicked.
PREFERRED_KINDS = ("attention", "bilinear", "gated", "concat", "weighted_sum")


def _writable_dir(preferred: Path, fallback: Path) -> Path:
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        probe = preferred / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
        return preferred
    except OSError:  # a read-only cache (e.g. a locked-down Space): use the app's temp folder
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


def _remove(temp: Path, session_folders: set[Path]) -> None:
    shutil.rmtree(temp, ignore_errors=True)
    for folder in list(session_folders):
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class ClassifyContext:
    registry: object
    cache_dir: Path
    feature_cache: tasks.FeatureCache
    examples: list[dict]
    # This app's temp folder: head downloads (Gradio serves only files under the temp dir
    # or cwd; the heads themselves live in cache_dir), examples when the cache is read-only.
    temp: Path
    heads: HeadStore
    jobs: tasks.TrainingJobs = field(default_factory=tasks.TrainingJobs)
    # Heads folders of anonymous sessions: nobody can reach them after a restart.
    session_folders: set[Path] = field(default_factory=set)

    def __post_init__(self):
        # Runs once: on close(), when the context is collected, or at interpreter exit.
        self._finalizer = weakref.finalize(self, _remove, self.temp, self.session_folders)

    @classmethod
    def create(cls, registry, settings) -> "ClassifyContext":
        temp = Path(tempfile.mkdtemp(prefix="mmdemo-classify-"))
        cache_dir = _writable_dir(Path(settings.cache_dir), temp / "cache")
        try:  # heads saved in the shared folder by earlier versions (before heads had owners)
            tasks.register_saved_heads(registry, cache_dir)
        except OSError as exc:  # an unreadable heads folder must not stop the app
            log.warning("could not list saved heads in %s: %s", cache_dir, exc)
        examples = tasks.generated_examples(_writable_dir(cache_dir / "examples" / "classify", temp / "examples"))
        return cls(registry, cache_dir, tasks.FeatureCache(cache_dir), examples, temp, HeadStore(registry, cache_dir))

    def close(self) -> None:
        """Remove the temp folder and the anonymous sessions' heads."""
        self._finalizer()

    def heads_of(self, request) -> OwnerHeads:
        """The heads namespace of whoever sent ``request``: their login (kept across restarts)
        or, anonymous, their browser session (removed when the app closes)."""
        owner = owner_of(request)
        heads = self.heads.of(owner)
        if owner.startswith("session:"):  # an anonymous session's heads go when the app closes
            self.session_folders.add(heads.folder)
        return heads

    def fusion_names(self, request=None) -> list[str]:
        """The heads ``request``'s sender can pick (the registry's alone, without one)."""
        return self.heads_of(request).names() if request is not None else self.registry.names(kind="fusion")

    def resolve_head(self, name: str, request):
        return self.heads_of(request).resolve(name)

    def download_copy(self, path: Path) -> Path:
        """A copy of ``path`` for download, written once under a folder named by its content,
        so two sessions saving heads of the same name never overwrite each other's copy.
        The bytes are read once, then named and written: a head saved again meanwhile
        can't put one version's bytes under the other's name."""
        data = path.read_bytes()
        dest = self.temp / "downloads" / content_hash(data)[:32] / path.name
        if not dest.is_file():
            atomic_write_bytes(dest, data)
        return dest

    def audio_for(self, wanted: bool):
        """The profile's audio model where this request needs one (None otherwise)."""
        return self.registry.for_slot("audio", lazy=True) if self.registry.profile.audio and wanted else None


def default_head(names: list[str], task: str) -> str | None:
    for kind in PREFERRED_KINDS:
        if f"tiny-head-{task}-{kind}" in names:
            return f"tiny-head-{task}-{kind}"
    return next((n for n in names if task in n), names[0] if names else None)


