import threading
import time

import pytest

from mmdemo import registry as registry_mod
from mmdemo.catalog import Catalog, EntrySpec, Profile, load_catalog
from mmdemo.errors import MMDemoError
from mmdemo.registry import FAILED, LOADED, NOT_LOADED, Registry

CALLS: list[str] = []


class FakeHandle:
    def __init__(self, size):
        import torch

        self.net = torch.nn.Linear(size, size)
        self.net.train()  # the registry must hand it back in eval mode

    def modules(self):
        return [self.net]


def slow_loader(spec, device, registry):
    CALLS.append(spec.name)
    time.sleep(0.2)  # wide window for racing threads
    if spec.options.get("fail"):
        raise OSError("disk on fire")
    return FakeHandle(spec.options.get("size", 4))


@pytest.fixture
def fake_registry(monkeypatch):
    CALLS.clear()
    monkeypatch.setitem(registry_mod.BACKENDS, ("clip", "fake"), f"{__name__}:slow_loader")
    entries = {
        n: EntrySpec(n, "clip", "fake", options=o)
        for n, o in {"a": {"size": 64}, "b": {"size": 64}, "c": {"size": 64}, "bad": {"fail": True}}.items()
    }
    cat = Catalog(entries, {"p": Profile("p", clip="a")})
    return Registry(cat, device="cpu", profile="p")


def test_loads_once_under_eight_concurrent_requests(fake_registry):
    barrier = threading.Barrier(8)
    results = []

    def ask():
        barrier.wait()
        results.append(fake_registry.get("a"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert CALLS == ["a"]
    assert len(results) == 8 and all(r is results[0] for r in results)
    assert not results[0].net.training


def test_status_reports_each_state(fake_registry):
    assert {s.name: s.state for s in fake_registry.status()}["a"] == NOT_LOADED
    seen = []
    t = threading.Thread(target=fake_registry.get, args=("a",))
    t.start()
    time.sleep(0.05)
    seen.append({s.name: s.state for s in fake_registry.status()}["a"])
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
    assert fake_registry.get("a") is not None


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
