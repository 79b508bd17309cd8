"""`index build --engine ray`: a large image index built on Ray Data.

The driver lists the sources (:mod:`.index_sources`) and cuts the ordered list into
shards (:mod:`.index_shards`); shards whose file is already there are skipped (a re-run
resumes). The others go to a pool of actors (GPU actors when the cluster has GPUs), each
building the registry once and encoding whole shards into Parquet files. The driver then
reads every shard in order and saves one index, the same as the in-process path would
(same items in the same order). Ray is imported only here, only when asked for: the app
and the in-process path never need it (``pip install -r requirements-ray.txt``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

from mmdemo.errors import MMDemoError
from mmdemo.tasks.index_shards import SHARD_SIZE, Shard, encode_shard, plan_shards, read_shards, remove_stale
from mmdemo.tasks.index_sources import list_sources

LOCAL_OBJECT_STORE_BYTES = 300 * 1024 * 1024  # shards travel as file names: the object store holds little
DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class EncoderSettings:
    """What a worker builds its registry from (plain values: it travels to other machines)."""

    profile: str = "tiny"
    device: str = "auto"
    catalog: str | None = None

    def registry(self):
        from mmdemo.registry import registry_from_settings
        from mmdemo.settings import Settings

        return registry_from_settings(Settings(profile=self.profile, device=self.device,
                                               catalog=Path(self.catalog) if self.catalog else None))


def import_ray():
    try:
        import pyarrow  # noqa: F401 - Ray Data's, and the shards'
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MMDemoError("ray_not_installed", "--engine ray needs Ray Data, which is not installed here: "
                                               "pip install -r requirements-ray.txt (or leave out --engine ray "
                                               "to index in this process).") from None
    return ray


def default_shards_dir(out: Path) -> Path:
    out = Path(out)
    return out.parent / f"{out.stem}-shards"


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator:
    """Ray, started on this machine (``address`` None) or connected to (``auto``, ``ray://host:port``);
    stopped again afterwards. A session the caller already started is used and left running."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if address:
        kwargs = {"address": address, "logging_level": logging.WARNING}
    else:  # "local": a new one-machine cluster, even if another one runs here
        kwargs = {"address": "local", "num_cpus": os.cpu_count(), "include_dashboard": False,
                  "object_store_memory": LOCAL_OBJECT_STORE_BYTES, "logging_level": logging.ERROR}
    try:
        ray.init(log_to_driver=False, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        said = str(exc).strip().rstrip(".")
        if not address:
            raise MMDemoError("ray_failed", f"Could not start Ray on this machine: {said}.") from None
        raise MMDemoError("ray_unreachable", f"Could not connect to Ray at {address!r}: {said}. Start the cluster "
                                             "(`ray start --head`), check the address, or leave out --address "
                                             "to run Ray on this machine.") from None
    try:
        yield ray
    finally:
        ray.shutdown()


class ShardEncoder:
    """A Ray Data actor: builds the registry and loads the CLIP once, then encodes shards.

    A problem the user can fix (weights missing on a node, another model there) comes back
    as a row, not raised: Ray would keep only its text, inside a page of its own traceback."""

    def __init__(self, settings: dict, batch_size: int):
        self.batch_size, self.failure = batch_size, None
        self.clip, self.device = None, ""
        try:
            registry = EncoderSettings(**settings).registry()
            self.clip = registry.for_slot("clip")
            self.device = registry.device
        except MMDemoError as exc:
            self.failure = exc

    def __call__(self, batch):  # a pyarrow Table of shard descriptors (usually one)
        import pyarrow as pa

        rows = []
        for desc in batch.to_pylist():
            row = {"shard": desc["shard"], "images": 0, "errors": 0, "seconds": 0.0, "device": self.device,
                   "failure": b""}
            try:
                if self.failure is not None:
                    raise self.failure
                row.update(encode_shard(self.clip, desc, self.batch_size))
            except MMDemoError as exc:
                row["failure"] = pickle.dumps(exc)  # code and message, for the driver to raise
            rows.append(row)
        return pa.Table.from_pylist(rows)


def _pool(ray, workers: int | None, device: str, pending: int) -> tuple[int, dict]:
    """How many actors, and what each asks for: a GPU each when the cluster has GPUs (and
    the device allows), else a share of the CPUs."""
    cluster = ray.cluster_resources()
    gpus, cpus = cluster.get("GPU", 0.0), cluster.get("CPU", 1.0)
    if device != "cpu" and gpus >= 1:
        n = max(1, min(workers or int(gpus), pending))
        return n, {"num_gpus": 1 / math.ceil(n / int(gpus)), "num_cpus": 1}  # more actors than GPUs share them
    n = max(1, min(workers or int(cpus), pending))
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    # One machine: the actors split its CPUs (one actor gets all of them, for torch's threads).
    # Several: one CPU each, so that every actor fits on some node.
    return n, {"num_cpus": cpus / n if nodes <= 1 else 1}


def _encode(ray, pending: Sequence[Shard], model_id: str, settings: EncoderSettings, *, workers: int | None,
            batch_size: int) -> tuple[int, list[dict]]:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its INFO lines, and a warning that bars are off
    n, resources = _pool(ray, workers, settings.device, len(pending))
    ds = ray.data.from_items([s.descriptor(model_id) for s in pending], override_num_blocks=len(pending))
    ds = ds.map_batches(ShardEncoder, batch_size=1, batch_format="pyarrow",
                        compute=ray.data.ActorPoolStrategy(size=n),
                        fn_constructor_kwargs={"settings": asdict(settings), "batch_size": batch_size}, **resources)
    try:
        rows = ds.take_all()
    except Exception as exc:  # noqa: BLE001 - a worker or node lost: Ray says which in its log
        last = (str(exc).strip().splitlines() or [""])[-1][:300]
        raise MMDemoError("ray_failed", f"Indexing on Ray failed ({type(exc).__name__}: {last}). The shards written "
                                        "so far are kept: run the same command again to resume.") from exc
    failed = next((r["failure"] for r in rows if r["failure"]), None)
    if failed is not None:
        raise pickle.loads(failed)
    return n, rows


def build_index_ray(sources: Sequence[str | Path], out: str | Path, *, settings: EncoderSettings | None = None,
                    address: str | None = None, shards_dir: str | Path | None = None, workers: int | None = None,
                    batch_size: int = DEFAULT_BATCH_SIZE, max_files: int | None = None,
                    extract_dir: Path | None = None, shard_size: int = SHARD_SIZE,
                    target_recall: float | None = None) -> dict:
    """Index images on Ray into ``out`` (an ``EmbeddingIndex`` file); returns a report like
    ``index build --json``'s, with the engine's figures. ``max_files`` None: no limit."""
    from mmdemo.index import EmbeddingIndex

    started = time.perf_counter()
    settings = settings or EncoderSettings()
    if workers is not None and workers < 1 or batch_size < 1:
        raise MMDemoError("ray_option_invalid", "--workers and --batch-size must be at least 1.")
    import_ray()  # before any work: a missing Ray is said at once
    out = Path(out)
    model_id = settings.registry().for_slot("clip", lazy=True).model_id  # the catalog's; loads nothing here
    listed, notices = list_sources(sources, max_files=max_files, extract_dir=extract_dir)
    folder = Path(shards_dir) if shards_dir else default_shards_dir(out)
    shards = plan_shards(listed, model_id, folder, shard_size)
    removed = remove_stale(folder, shards)
    pending = [s for s in shards if not s.done()]
    n_workers, rows = 0, []
    if pending:
        with ray_session(address) as ray:
            n_workers, rows = _encode(ray, pending, model_id, settings, workers=workers, batch_size=batch_size)
    embeddings, items, found = read_shards(shards, model_id)
    # Handed over, not added: add() would copy every vector once more.
    index = EmbeddingIndex(model_id=model_id, dim=int(embeddings.shape[1]), embeddings=embeddings, items=items,
                           modality="image")
    if target_recall is not None:
        index.target_recall = target_recall
    index.save(out)  # builds and tunes the search its size calls for (mmdemo.index.ann)
    seconds = time.perf_counter() - started
    encoded = sum(r["images"] for r in rows)
    return {"index": str(out), "model_id": model_id, "images": len(index), "encoded": encoded,
            "cached": len(index) - encoded, "captioned": sum(1 for it in items if it.get("caption")),
            "notices": notices + found, "engine": "ray", "workers": n_workers,
            "devices": sorted({r["device"] for r in rows}), "shards": len(shards),
            "shards_skipped": len(shards) - len(pending), "shards_removed": removed, "shards_dir": str(folder),
            "seconds": round(seconds, 3), "images_per_s": round(encoded / seconds, 2) if encoded else 0.0,
            "search": index.info()}
