import threading
import time

import pytest

from mmdemo import registry as registry_mod
from mmdemo.batching import unwrap
from mmdemo.catalog import Catalog, EntrySpec, Profile, load_catalog
from mmdemo.errors import MMDemoError
from mmdemo.registry import FAILED, LOADED, NOT_LOADED, LazyHandle, Registry

CALLS: list[str] = []


class FakeHandle:
    def __init__(self, size):
        import torch

        self.net = torch.nn.Linear(size, size)
        self.net.train()  # the registry must hand it back in eval mode

    def modules(self):
        return [self.net]


class LoadGate:
    """Holds the fake loader open until the test lets it finish, so a test can look at
    the "loading" state, or pile up concurrent requests, without sleeping."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()
        self.release.set()  # unless a test holds it, a load finishes at once

    def hold(self):
        self.entered.clear()
        self.release.clear()


GATE = LoadGate()


def gated_loader(spec, device, registry):
    CALLS.append(spec.name)
    GATE.entered.set()
    assert GATE.release.wait(30), "the test never released the load"
    if spec.options.get("fail"):
        raise OSError("disk on fire")
    return FakeHandle(spec.options.get("size", 4))


@pytest.fixture
def fake_registry(monkeypatch):
    CALLS.clear()
    GATE.__init__()
    monkeypatch.setitem(registry_mod.BACKENDS, ("clip", "fake"), f"{__name__}:gated_loader")
    entries = {
        n: EntrySpec(n, "clip", "fake", options=o)
        for n, o in {"a": {"size": 64}, "b": {"size": 64}, "c": {"size": 64}, "bad": {"fail": True}}.items()
    }
    cat = Catalog(entries, {"p": Profile("p", clip="a")})
    return Registry(cat, device="cpu", profile="p")


def test_loads_once_under_eight_concurrent_requests(fake_registry):
    barrier = threading.Barrier(8)
    asking = threading.Semaphore(0)
    results = []

    def ask():
        barrier.wait()
        asking.release()
        results.append(fake_registry.get("a"))

    GATE.hold()
    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    assert GATE.entered.wait(30)
    for _ in threads:  # the first load stays open until all eight requests are under way
        assert asking.acquire(timeout=30)
    GATE.release.set()
    for t in threads:
        t.join()
    assert CALLS == ["a"]
    assert len(results) == 8 and all(r is results[0] for r in results)
    assert not results[0].net.training


def test_status_reports_each_state(fake_registry):
    assert {s.name: s.state for s in fake_registry.status()}["a"] == NOT_LOADED
    seen = []
    GATE.hold()
    t = threading.Thread(target=fake_registry.get, args=("a",))
    t.start()
    assert GATE.entered.wait(30)  # the loader is running, and stays so until released
    seen.append({s.name: s.state for s in fake_registry.status()}["a"])
    time.sleep(0.2)  # not to catch a state: the load lasts 0.2 s, which load_seconds must report
    GATE.release.set()
    t.join()
    row = {s.name: s for s in fake_registry.status()}["a"]
    assert seen == ["loading"]
    assert row.state == LOADED and row.device == "cpu" and row.dtype == "float32"
    assert row.parameters == 64 * 64 + 64 and row.memory_bytes == 4 * (64 * 64 + 64) and row.load_seconds >= 0.2


def test_failed_load_is_clear_and_leaves_others_usable(fake_registry):
    with pytest.raises(MMDemoError, match="Could not load model 'bad'.*disk on fire"):
        fake_registry.get("bad")
    row = {s.name: s for s in fake_registry.status()}["bad"]
    assert row.state == FAILED and "disk on fire" in row.error
    handle = fake_registry.get("a")
    assert isinstance(unwrap(handle), FakeHandle) and not handle.net.training
    assert {s.name: s.state for s in fake_registry.status()}["a"] == LOADED


def test_unknown_name_lists_available(fake_registry):
    with pytest.raises(MMDemoError, match=r"Unknown model 'nope'\. Available: a, b, bad, c"):
        fake_registry.get("nope")


def test_unload_frees_and_reloads(fake_registry):
    first = fake_registry.get("a")
    assert fake_registry.unload("a") and not fake_registry.is_loaded("a")
    assert fake_registry.unload("a") is False
    assert fake_registry.get("a") is not first and CALLS == ["a", "a"]


def test_memory_budget_evicts_least_recently_used(fake_registry):
    one = 4 * (64 * 64 + 64)
    fake_registry.memory_budget_bytes = 2 * one
    fake_registry.get("a")
    fake_registry.get("b")
    fake_registry.get("a")  # b is now the least recently used
    fake_registry.get("c")
    loaded = {s.name for s in fake_registry.status() if s.state == LOADED}
    assert loaded == {"a", "c"}
    assert any("'b'" in w for w in fake_registry.warnings)


def test_unknown_profile_fails_at_start():
    with pytest.raises(MMDemoError, match="Unknown profile 'nope'.*tiny"):
        Registry(load_catalog(), profile="nope")


def test_builtin_catalog_has_tiny_default_and_a_pretrained_profile():
    cat = load_catalog()
    assert cat.profile("tiny").clip == "tiny-clip"
    b32 = cat.entry(cat.profile("vit-b-32").clip)
    assert (b32.arch, b32.pretrained, b32.weights_source) == ("ViT-B-32", "laion2b_s34b_b79k", "tag:laion2b_s34b_b79k")


@pytest.mark.parametrize("profile,clap", [("vit-b-32", "hf-hub:laion/clap-htsat-unfused"),
                                          ("vit-l-14", "hf-hub:laion/larger_clap_general")])
def test_real_profiles_fill_every_slot_with_a_real_backend(profile, clap):
    """A real profile leaves no tab without a model: CLIP and CoCa through open_clip, audio through CLAP."""
    cat = load_catalog()
    p = cat.profile(profile)
    clip, captioner, audio = (cat.entry(n) for n in (p.clip, p.captioner, p.audio))
    assert (clip.kind, clip.backend, captioner.kind, captioner.backend) == ("clip", "open_clip", "captioner", "open_clip")
    assert captioner.arch.startswith("coca_") and clip.weights_source.startswith("tag:")
    assert (audio.kind, audio.backend, audio.weights_source) == ("audio", "clap", clap)


def test_lazy_handles_load_on_first_use_only(fake_registry):
    """What the UI hands to tasks: nothing loads until a task touches the model, and its
    model_id (which tasks compare first) comes from the catalog."""
    lazy = fake_registry.for_slot("clip", lazy=True)
    assert lazy.model_id == fake_registry.catalog.entry("a").model_id
    assert CALLS == [] and not fake_registry.is_loaded("a")
    assert lazy.modules() == fake_registry.get("a").modules()
    assert CALLS == ["a"]


def test_a_request_under_a_tight_memory_budget_loads_each_model_once(fake_registry):
    """One request using two models with room for one: the budget evicts between them,
    but the request keeps what it got instead of reloading at every use."""
    fake_registry.memory_budget_bytes = 4 * (64 * 64 + 64)  # one model
    a, c = LazyHandle(fake_registry, "a"), LazyHandle(fake_registry, "c")
    for _ in range(3):
        a.modules(), c.modules()
    assert CALLS == ["a", "c"]


def test_bad_catalog_files_are_explained(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[models.x]\nkind = 'vision'\n")
    with pytest.raises(MMDemoError, match="kind must be one of"):
        load_catalog(bad)
    bad.write_text("this is = = not toml")
    with pytest.raises(MMDemoError, match="not valid TOML"):
        load_catalog(bad)
    with pytest.raises(MMDemoError, match="not found"):
        load_catalog(tmp_path / "missing.toml")


def test_device_falls_back_to_cpu_with_warning():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    reg = Registry(load_catalog(), device="cuda")
    assert reg.device == "cpu"
    assert any("CUDA" in w or "cuda" in w for w in reg.warnings)


# -- where weights come from: one decision, in one order ---------------------------------
WEIGHT_CASES = [
    # (EntrySpec fields, expected kind, expected location)
    (dict(arch="hf-hub:org/repo", weights="w.safetensors", pretrained="tag", allow_random=True), "hf-hub", "org/repo"),
    (dict(arch="local-dir:/models/m", weights="w.safetensors", pretrained="tag"), "local-dir", "/models/m"),
    (dict(arch="ViT-B-32", weights="w.safetensors", pretrained="tag", allow_random=True), "file", "w.safetensors"),
    (dict(arch="ViT-B-32", pretrained="tag", allow_random=True), "tag", "tag"),
    (dict(arch="ViT-B-32", allow_random=True), "random", ""),
    (dict(arch="ViT-B-32"), "missing", ""),
]


@pytest.mark.parametrize("fields,kind,location", WEIGHT_CASES)
def test_resolve_weights_order(fields, kind, location):
    from pathlib import Path

    from mmdemo.weights import resolve_weights

    if "weights" in fields:
        fields = {**fields, "weights": Path(fields["weights"])}
    spec = EntrySpec("m", "clip", "open_clip", **fields)
    source = resolve_weights(spec)
    assert (source.kind, source.location) == (kind, location)
    assert spec.weights_source == source.label  # what the Models tab shows is the same decision
    assert spec.model_id.startswith("m:") and spec.model_id != "m:"


def test_model_id_names_the_exact_weights(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    spec = lambda w: EntrySpec("m", "clip", "open_clip", weights=w)  # noqa: E731
    assert spec(a).model_id != spec(b).model_id
    assert EntrySpec("m", "clip", "open_clip", arch="hf-hub:o/r").model_id == "m:hf-hub:o/r"
    assert EntrySpec("m", "clip", "open_clip", arch="ViT-B-32", pretrained="t").model_id == "m:ViT-B-32/t"


class _Asked(Exception):
    pass


BACKEND_SPECS = [
    ("mmdemo.models.open_clip_backend:load_clip", EntrySpec("x", "clip", "open_clip", arch="ViT-B-32")),
    ("mmdemo.models.open_clip_backend:load_captioner", EntrySpec("x", "captioner", "open_clip", arch="coca_ViT-B-32")),
    ("mmdemo.models.audio_backend:load_audio", EntrySpec("x", "audio", "mmdemo", requires={"text": "t"})),
    ("mmdemo.models.fusion_backend:load_fusion", EntrySpec("x", "fusion", "mmdemo")),
    ("mmdemo.models.clap_backend:load_clap", EntrySpec("x", "audio", "clap", arch="hf-hub:laion/clap-htsat-unfused")),
]


@pytest.mark.parametrize("target,spec", BACKEND_SPECS, ids=[t.split(":")[1] for t, _ in BACKEND_SPECS])
def test_every_backend_asks_resolve_weights(monkeypatch, target, spec):
    """No backend decides on its own where weights come from: each asks mmdemo.weights first."""
    import importlib

    import mmdemo.weights as weights

    asked = []

    def spy(s):
        asked.append(s)
        raise _Asked

    monkeypatch.setattr(weights, "resolve_weights", spy)
    module, func = target.split(":")
    with pytest.raises(_Asked):
        getattr(importlib.import_module(module), func)(spec, "cpu", {"text": object()})
    assert asked == [spec]
    assert set(registry_mod.BACKENDS.values()) == {t for t, _ in BACKEND_SPECS}  # a new backend joins this test


def test_a_backend_refuses_a_source_it_cannot_read():
    from mmdemo.models.audio_backend import load_audio

    with pytest.raises(MMDemoError, match="can't load weights from tag:x") as err:
        load_audio(EntrySpec("a", "audio", "mmdemo", pretrained="x"), "cpu", {"text": object()})
    assert err.value.code == "weights_unsupported"
    with pytest.raises(MMDemoError, match="has no weights") as err:
        load_audio(EntrySpec("a", "audio", "mmdemo"), "cpu", {"text": object()})
    assert err.value.code == "weights_missing"


# -- requires: the registry loads what a backend needs and hands it over -------------------
GOT: dict[str, dict] = {}


def deps_loader(spec, device, deps):
    GOT[spec.name] = dict(deps)
    return FakeHandle(2)


@pytest.fixture
def deps_registry(monkeypatch):
    GOT.clear()
    monkeypatch.setitem(registry_mod.BACKENDS, ("clip", "deps"), f"{__name__}:deps_loader")
    monkeypatch.setitem(registry_mod.NEEDS, ("clip", "deps"), ("text",))
    entries = {n: EntrySpec(n, "clip", "deps", requires=r) for n, r in {
        "base": {}, "user": {"text": "base", "other": "loop-a"}, "loop-a": {"text": "loop-b"},
        "loop-b": {"text": "loop-a"}, "ghost": {"text": "nowhere"}}.items()}
    return Registry(Catalog(entries, {"p": Profile("p", clip="base")}), device="cpu", profile="p")


def test_requires_are_loaded_first_and_handed_to_the_backend(deps_registry):
    handle = deps_registry.get("user")
    # only the slots its backend needs ("text"), not every name it mentions
    assert GOT["user"] == {"text": deps_registry.get("base")} and GOT["base"] == {}
    assert deps_registry.is_loaded("base") and not deps_registry.is_loaded("loop-a")
    assert deps_registry.get("user") is handle


def test_a_requires_cycle_is_refused_not_a_deadlock(deps_registry):
    with pytest.raises(MMDemoError, match="loop-a -> loop-b -> loop-a") as err:
        deps_registry.get("loop-a")
    assert err.value.code == "requires_cycle"
    assert {s.name: s.state for s in deps_registry.status()}["loop-a"] == FAILED
    with pytest.raises(MMDemoError, match="Unknown model 'nowhere'"):
        deps_registry.get("ghost")
    # a refused cycle leaves the registry serving its other entries
    base = deps_registry.get("base")
    assert deps_registry.is_loaded("base") and GOT["base"] == {} and deps_registry.get("base") is base


def test_the_app_and_the_cli_build_the_same_registry(tmp_path):
    from argparse import Namespace

    from mmdemo.cli.common import registry_from
    from mmdemo.registry import registry_from_settings
    from mmdemo.settings import Settings

    extra = tmp_path / "extra.toml"
    extra.write_text('[models.mine]\nkind = "clip"\narch = "ViT-B-32"\npretrained = "t"\n')
    app = registry_from_settings(Settings(profile="tiny", device="cpu", catalog=extra, memory_budget_mb=1))
    cli = registry_from(Namespace(profile="tiny", device="cpu", catalog=extra))
    for reg in (app, cli):
        assert reg.profile_name == "tiny" and reg.requested_device == "cpu" and "mine" in reg.catalog.entries
    assert app.memory_budget_bytes == 1024 * 1024 and cli.memory_budget_bytes == 0
