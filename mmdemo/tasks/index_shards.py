"""Shards of a large image index: fixed runs of the ordered sources, each encoded into one
Parquet file (id, uri, name, caption, embedding, model_id, error, notices).

A shard's file name holds its number and a hash of what it was made from (its sources'
URIs, sizes, modification times and captions, and the model id), so a run that finds the
file can skip the shard, and a change to any of them gives a new name: a stale shard is
never reused. Files are written atomically: a crash leaves either a whole shard or none.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mmdemo.atomic import atomic_write_with
from mmdemo.errors import MMDemoError, Notice
from mmdemo.media import load_image
from mmdemo.tasks.gallery_files import skipped_notice
from mmdemo.tasks.index_sources import Source, is_remote

SHARD_SIZE = 256  # images a shard holds: a few seconds of work on a CPU, what a re-run can lose
SHARD_NAME = re.compile(r"shard-\d{5,}-[0-9a-f]{12}\.parquet")
MAX_NOTICES = 20  # notices about single images reported; a large gallery can have thousands
STALE_TEMP_SECONDS = 600  # a temp shard older than this is a killed run's, not one being written


@dataclass(frozen=True)
class Shard:
    number: int
    first_id: int  # the position of its first source in the ordered list
    sources: tuple[Source, ...]
    file: Path

    def descriptor(self, model_id: str) -> dict:
        """What a worker needs to encode it (plain values: it travels to another process)."""
        return {"shard": self.number, "file": str(self.file), "first_id": self.first_id, "model_id": model_id,
                "uris": [s.uri for s in self.sources], "names": [s.name for s in self.sources],
                "captions": [s.caption for s in self.sources]}

    def done(self) -> bool:
        """Whether its file is there, whole; a file that isn't is removed (it is encoded again)."""
        import pyarrow.parquet as pq

        if not self.file.exists():
            return False
        try:
            if pq.read_metadata(self.file).num_rows == len(self.sources):
                return True
        except Exception:  # noqa: BLE001 - pyarrow raises several kinds on a damaged file
            pass
        self.file.unlink(missing_ok=True)
        return False


def plan_shards(sources: Sequence[Source], model_id: str, folder: Path, size: int = SHARD_SIZE) -> list[Shard]:
    shards = []
    for number, start in enumerate(range(0, len(sources), size)):
        chunk = tuple(sources[start:start + size])
        h = hashlib.sha256(model_id.encode())
        for s in chunk:
            h.update(f"\n{s.uri}\0{s.stamp()}\0{s.caption}".encode())
        shards.append(Shard(number, start, chunk, Path(folder) / f"shard-{number:05d}-{h.hexdigest()[:12]}.parquet"))
    return shards


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")  # gone already


def remove_stale(folder: Path, shards: Sequence[Shard]) -> int:
    """Remove shard files of earlier inputs (and temp files of killed runs); returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    keep = {s.file.name for s in shards}
    # A temp file is a killed run's only when it is old: a young one may be another run's, mid-write.
    old = time.time() - STALE_TEMP_SECONDS
    stale = [f for f in folder.iterdir() if (SHARD_NAME.fullmatch(f.name) and f.name not in keep)
             or (f.name.startswith(".shard-") and f.name.endswith(".tmp") and _mtime(f) < old)]
    for f in stale:
        f.unlink(missing_ok=True)
    return sum(1 for f in stale if not f.name.endswith(".tmp"))


def _load(uri: str, name: str):
    if is_remote(uri):  # read through pyarrow's file systems (s3://, gs://, hdfs://...)
        import pyarrow.fs

        fs, path = pyarrow.fs.FileSystem.from_uri(uri)
        with fs.open_input_stream(path) as f:
            return load_image(f.read(), name=name)
    return load_image(uri)


def encode_shard(clip, desc: dict, batch_size: int = 32) -> dict:
    """Encode one shard's images (``desc`` from :meth:`Shard.descriptor`) and write its file.

    Unreadable images get a row with an empty embedding and the reason; only ``batch_size``
    decoded images are held at a time. Returns a small summary row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if clip.model_id != desc["model_id"]:
        raise MMDemoError("shard_model_mismatch", f"This worker's model is {clip.model_id!r}, not "
                                                  f"{desc['model_id']!r}: give every node the same catalog.")
    started = time.perf_counter()
    uris, names = list(desc["uris"]), list(desc["names"])
    n = len(uris)
    vectors: list[np.ndarray | None] = [None] * n
    errors, notices = [""] * n, [[] for _ in range(n)]
    for lo in range(0, n, batch_size):
        loaded = []
        for i in range(lo, min(n, lo + batch_size)):
            try:
                im = _load(uris[i], names[i])
            except MMDemoError as exc:
                errors[i] = str(exc)
            except (OSError, ValueError) as exc:  # a remote read; pyarrow's ArrowInvalid (an unknown scheme) is a ValueError
                errors[i] = f"{names[i]} could not be read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})."
            else:
                notices[i] = [str(x) for x in im.notices]
                loaded.append((i, im.image))
        if loaded:
            emb = np.asarray(clip.encode_images([im for _, im in loaded], batch_size=batch_size), np.float32)
            for (i, _), e in zip(loaded, emb):
                vectors[i] = e
    lengths = [0 if v is None else len(v) for v in vectors]
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate([v for v in vectors if v is not None] or [np.zeros(0, np.float32)])
    table = pa.table({
        "id": pa.array(np.arange(desc["first_id"], desc["first_id"] + n), pa.int64()),
        "uri": uris, "name": names, "caption": list(desc["captions"]),
        "embedding": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float32())),
        "model_id": [clip.model_id] * n, "error": errors,
        "notices": pa.array(notices, pa.list_(pa.string())),
    })
    atomic_write_with(desc["file"], lambda f: pq.write_table(table, f))
    return {"shard": int(desc["shard"]), "images": n - sum(1 for e in errors if e),
            "errors": sum(1 for e in errors if e), "seconds": time.perf_counter() - started}


def read_shards(shards: Sequence[Shard], model_id: str) -> tuple[np.ndarray, list[dict], list[str]]:
    """The readable images' embeddings [N, D] and items, in order, and notices (one for the
    unreadable images, then at most MAX_NOTICES about single images)."""
    import pyarrow.parquet as pq

    chunks: list[np.ndarray] = []
    items: list[dict] = []
    skipped: list[str] = []
    about_images: list[str] = []
    for shard in shards:
        try:
            t = pq.read_table(shard.file, columns=["id", "embedding", "model_id", "error", "notices"])
        except Exception as exc:  # noqa: BLE001 - damaged since it was checked: say which file
            raise MMDemoError("shard_unreadable", f"Shard {shard.file} could not be read ({exc}). Delete it and "
                                                  "run again: only that shard is encoded again.") from None
        errors = t.column("error").to_pylist()
        ids = t.column("id").to_pylist()
        if set(t.column("model_id").to_pylist()) - {model_id}:
            raise MMDemoError("shard_model_mismatch", f"Shard {shard.file} holds embeddings of another model; "
                                                      "delete the shards folder and run again.")
        ok = [i for i, e in enumerate(errors) if not e]
        skipped += [e for e in errors if e]
        for row in t.column("notices").to_pylist():
            about_images += row or []
        if ok:
            flat = t.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
            chunks.append(np.asarray(flat, np.float32).reshape(len(ok), -1))
            items += [shard.sources[ids[i] - shard.first_id].item() for i in ok]
    notices: list[str] = about_images[:MAX_NOTICES]
    if len(about_images) > MAX_NOTICES:
        notices.append(Notice("notices_truncated", f"... and {len(about_images) - MAX_NOTICES} more notices about "
                                                   "single images (the shards' 'notices' column lists them all)."))
    if skipped:
        notices.append(skipped_notice(skipped, "image(s)"))
    if not items:
        raise MMDemoError("gallery_unreadable", "None of the images could be read. " + (
            skipped[0] if skipped else "Give PNG, JPEG, GIF, WebP, BMP or TIFF files."))
    dims = {c.shape[1] for c in chunks}
    if len(dims) != 1:
        raise MMDemoError("shard_model_mismatch", f"The shards hold embeddings of different sizes {sorted(dims)}; "
                                                  "delete the shards folder and run again.")
    return np.concatenate(chunks), items, notices
