"""What the Classify sub-tabs share: the registry, where heads and features are kept,
the generated examples, and the running training jobs. Built once per app by ``build``
and handed to every sub-tab, so no handler reads a global."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mmdemo.tasks import classify as tasks

log = logging.getLogger(__name__)

# Bundled heads of each task, best first: the one picked when a task's example is clicked.
PREFERRED_KINDS = ("bilinear", "gated", "attention", "concat", "weighted_sum")


def _writable_dir(preferred: Path, prefix: str) -> Path:
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        probe = preferred / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
        return preferred
    except OSError:  # a read-only cache (e.g. a locked-down Space): examples go to a temp folder
        return Path(tempfile.mkdtemp(prefix=prefix))


@dataclass
class ClassifyContext:
    registry: object
    cache_dir: Path
    feature_cache: tasks.FeatureCache
    examples: list[dict]
    # Gradio serves only files under the temp dir or cwd; the head itself lives in cache_dir.
    downloads: Path
    jobs: tasks.TrainingJobs = field(default_factory=tasks.TrainingJobs)

    @classmethod
    def create(cls, registry, settings) -> "ClassifyContext":
        cache_dir = _writable_dir(Path(settings.cache_dir), "mmdemo-cache-")
        try:
            tasks.register_saved_heads(registry, cache_dir)
        except OSError as exc:  # an unreadable heads folder must not stop the app
            log.warning("could not list saved heads in %s: %s", cache_dir, exc)
        examples = tasks.generated_examples(_writable_dir(cache_dir / "examples" / "classify", "mmdemo-classify-"))
        return cls(registry, cache_dir, tasks.FeatureCache(cache_dir), examples,
                   Path(tempfile.mkdtemp(prefix="mmdemo-heads-")))

    def fusion_names(self) -> list[str]:
        return self.registry.names(kind="fusion")

    def audio_for(self, wanted: bool):
        """The profile's audio model where this request needs one (None otherwise)."""
        return self.registry.for_slot("audio", lazy=True) if self.registry.profile.audio and wanted else None


def default_head(names: list[str], task: str) -> str | None:
    for kind in PREFERRED_KINDS:
        if f"tiny-head-{task}-{kind}" in names:
            return f"tiny-head-{task}-{kind}"
    return next((n for n in names if task in n), names[0] if names else None)


def session_of(request) -> str:
    return getattr(request, "session_hash", None) or "local"
