"""One settings object, from command-line flags over ``MMDEMO_*`` environment variables.

Flags win over environment variables, which win over defaults. This module
imports nothing heavy so ``python app.py --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import Mapping, Sequence

from mmdemo.errors import MMDemoError
from mmdemo.paths import default_cache_dir

DEVICES = ("auto", "cpu", "cuda", "mps")

# Model-bound events running at once, when --concurrency is not given. With batching
# (mmdemo.batching) concurrency is what lets requests meet in one model call: requests
# that wait for the running pass form the next batch. On CPU the batch does the work
# (torch's intra-op threads stay as they are, so more events than cores only queue up
# in the batcher); 8 keeps batches full on 2 cores without holding many requests' inputs
# in memory. A GPU pass over 16 inputs costs about what one costs, so cuda takes 16.
DEFAULT_CONCURRENCY = {"cuda": 16}
DEFAULT_CPU_CONCURRENCY = 8
# Most inputs (images, texts, clips) merged into one batched encode call: the handles'
# own image batch; a request with this many inputs or more runs on its own.
DEFAULT_BATCH_MAX = 64


@dataclasses.dataclass(frozen=True)
class Settings:
    profile: str = "tiny"
    device: str = "auto"
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    auth: tuple[str, str] | None = None
    max_upload_mb: float = 50.0
    cache_dir: Path = dataclasses.field(default_factory=default_cache_dir)
    memory_budget_mb: float = 0.0  # 0 = no budget, never evict
    catalog: Path | None = None  # an extra catalog merged over the built-in one
    queue_size: int = 64
    concurrency: int | None = None  # model-bound events at once; None = sized for the device
    batch_max: int = DEFAULT_BATCH_MAX  # inputs per batched encode call; 1 = no batching
    mcp: bool = False  # also serve the named endpoints as MCP tools (needs gradio[mcp])
    # Saved indexes (`python -m mmdemo index build`) the Image/Audio tabs search instead of
    # their examples; opened (memory-mapped) when the app is built, never at import.
    gallery_indexes: tuple[Path, ...] = ()

    def __post_init__(self):
        # A str, a list or a tuple of paths given in code: always a tuple of Paths.
        given = (self.gallery_indexes,) if isinstance(self.gallery_indexes, (str, Path)) else self.gallery_indexes
        object.__setattr__(self, "gallery_indexes", tuple(Path(p) for p in given or ()))
        if self.mcp and self.auth:
            # Gradio mounts its MCP server beside the app, outside the login: tools would answer anyone.
            raise MMDemoError("settings_invalid", "--mcp cannot be combined with --auth: Gradio's MCP server "
                                                  "does not ask for the login. Run one or the other.")
        if self.mcp and importlib.util.find_spec("mcp") is None:
            raise MMDemoError("settings_invalid", "--mcp needs the mcp package: pip install 'gradio[mcp]==6.31.0'.")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def memory_budget_bytes(self) -> int:
        return int(self.memory_budget_mb * 1024 * 1024)

    def model_concurrency(self, device: str) -> int:
        """How many model-bound events run at once on ``device`` (the resolved one)."""
        if self.concurrency is not None:
            return self.concurrency
        return DEFAULT_CONCURRENCY.get(device, DEFAULT_CPU_CONCURRENCY)


def _parse_auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise MMDemoError("settings_invalid", "--auth / MMDEMO_AUTH must look like 'user:password'.")
    return user, password


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def build_parser() -> argparse.ArgumentParser:
    env = "environment variable"
    p = argparse.ArgumentParser(
        prog="app.py",
        description="mmdemo: try multimodal models (image, audio, classification) in the browser.",
        epilog="Every flag can also be set by an MMDEMO_* environment variable "
        "(e.g. MMDEMO_DEVICE=cuda, MMDEMO_AUTH=user:pass); flags win.",
    )
    p.add_argument("--profile", help=f"model profile to use (default: tiny, the embedded bundle; {env} MMDEMO_PROFILE)")
    p.add_argument("--device", choices=DEVICES, help=f"where models run; auto = cuda, else mps, else cpu ({env} MMDEMO_DEVICE)")
    p.add_argument("--host", help=f"address to listen on (default 127.0.0.1; use 0.0.0.0 in containers; {env} MMDEMO_HOST)")
    p.add_argument("--port", type=int, help=f"port to listen on (default 7860; {env} MMDEMO_PORT)")
    p.add_argument("--share", action="store_true", default=None, help=f"create a public Gradio share link ({env} MMDEMO_SHARE=1)")
    p.add_argument("--auth", metavar="USER:PASS", help=f"require this login ({env} MMDEMO_AUTH)")
    p.add_argument("--max-upload-mb", type=float, help=f"largest accepted upload in MB (default 50; {env} MMDEMO_MAX_UPLOAD_MB)")
    p.add_argument("--cache-dir", type=Path, help=f"where indexes, trained heads and caches are kept (default ~/.cache/mmdemo; {env} MMDEMO_CACHE_DIR)")
    p.add_argument("--memory-budget-mb", type=float, help=f"unload least recently used models above this many MB of weights (default 0 = no limit; {env} MMDEMO_MEMORY_BUDGET_MB)")
    p.add_argument("--catalog", type=Path, help=f"an extra model catalog (TOML) merged over the built-in one ({env} MMDEMO_CATALOG)")
    p.add_argument("--queue-size", type=int, help=f"most requests waiting in the queue (default 64; {env} MMDEMO_QUEUE_SIZE)")
    p.add_argument("--concurrency", help="model-bound requests run at once, batched together (default "
                   f"{DEFAULT_CPU_CONCURRENCY} on CPU, {DEFAULT_CONCURRENCY['cuda']} on CUDA; {env} MMDEMO_CONCURRENCY)")
    p.add_argument("--batch-max", help=f"most inputs merged into one model call (default {DEFAULT_BATCH_MAX}; "
                   f"1 = no batching; {env} MMDEMO_BATCH_MAX)")
    p.add_argument("--mcp", action="store_true", default=None, help="also serve the API as MCP tools for LLM "
                   f"clients at /gradio_api/mcp/ (needs gradio[mcp]; {env} MMDEMO_MCP=1)")
    p.add_argument("--gallery-index", action="append", type=Path, metavar="PATH",
                   help="a saved index (`python -m mmdemo index build`) that the Image or Audio tab searches "
                   "when no files are uploaded, by its kind; repeat for one of each (memory-mapped, never loaded "
                   f"whole; {env} MMDEMO_GALLERY_INDEX, several paths separated by {os.pathsep!r})")
    return p


_ENV = {
    "profile": ("MMDEMO_PROFILE", str),
    "device": ("MMDEMO_DEVICE", str),
    "host": ("MMDEMO_HOST", str),
    "port": ("MMDEMO_PORT", int),
    "share": ("MMDEMO_SHARE", _truthy),
    "auth": ("MMDEMO_AUTH", str),
    "max_upload_mb": ("MMDEMO_MAX_UPLOAD_MB", float),
    "cache_dir": ("MMDEMO_CACHE_DIR", Path),
    "memory_budget_mb": ("MMDEMO_MEMORY_BUDGET_MB", float),
    "catalog": ("MMDEMO_CATALOG", Path),
    "queue_size": ("MMDEMO_QUEUE_SIZE", int),
    "concurrency": ("MMDEMO_CONCURRENCY", str),
    "batch_max": ("MMDEMO_BATCH_MAX", str),
    "mcp": ("MMDEMO_MCP", _truthy),
}
# Counts given as text by flag or environment: whole numbers >= 1, or a settings_invalid error.
_COUNTS = {"concurrency": "--concurrency / MMDEMO_CONCURRENCY", "batch_max": "--batch-max / MMDEMO_BATCH_MAX"}


def _parse_count(value: str, what: str) -> int:
    try:
        count = int(str(value).strip())
    except ValueError:
        count = 0
    if count < 1:
        raise MMDemoError("settings_invalid", f"{what} must be a whole number of at least 1, not {value!r}.")
    return count


def parse_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from flags (``argv``) over environment (``environ``) over defaults."""
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(list(argv or []))
    values: dict = {}
    for field, (var, convert) in _ENV.items():
        flag = getattr(args, field, None)
        if flag is not None:
            values[field] = flag
        elif environ.get(var):
            try:
                values[field] = convert(environ[var])
            except ValueError as exc:
                raise MMDemoError("settings_invalid", f"{var}={environ[var]!r} is not valid: {exc}") from None
    for field, what in _COUNTS.items():
        if field in values:
            values[field] = _parse_count(values[field], what)
    if "auth" in values:
        values["auth"] = _parse_auth(values["auth"])
    if args.gallery_index:
        values["gallery_indexes"] = tuple(args.gallery_index)
    elif environ.get("MMDEMO_GALLERY_INDEX"):
        values["gallery_indexes"] = tuple(Path(p) for p in environ["MMDEMO_GALLERY_INDEX"].split(os.pathsep) if p)
    device = values.get("device", "auto")
    if device not in DEVICES:
        raise MMDemoError("settings_invalid", f"Unknown device {device!r}; choose one of {', '.join(DEVICES)}.")
    if values.get("max_upload_mb", 1) <= 0:
        raise MMDemoError("settings_invalid", "The max upload size must be positive.")
    return Settings(**values)
