"""A device per model: the registry loads an entry where the user chose (moving it when it
is loaded elsewhere), falls back to CPU with a warning when that device is absent, and the
Models tab and its /load_model endpoint (device as a last input, old one-argument calls
still work) show where each entry is."""

import re
import socket
import threading

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from playwright.sync_api import expect

from mmdemo import devices
from mmdemo import registry as registry_mod
from mmdemo.catalog import Catalog, EntrySpec, Profile
from mmdemo.errors import MMDemoError
from mmdemo.registry import LOADED, NOT_LOADED, Registry
from tests.helpers.outputs import predict_with_warnings

LOADS: list[tuple[str, str]] = []
GATE = threading.Event()


class FakeHandle:
    def __init__(self, device, text=None):
        import torch

        self.device = device  # what the backend was asked for; weights stay on CPU here
        self.text = text  # an audio model's text side: the loaded CLIP it was handed
        self.net = torch.nn.Linear(256, 256)

    def modules(self):
        return [self.net]


def recording_loader(spec, device, deps):
    LOADS.append((spec.name, device))
    assert GATE.wait(30), "the test never let the load finish"
    return FakeHandle(device, (deps or {}).get("text"))


@pytest.fixture
def reg(monkeypatch):
    """A registry of fake entries on an app device of cpu, on a machine that has CUDA
    (the fake backend never touches it: it records where it was asked to load)."""
    LOADS.clear()
    GATE.set()
    monkeypatch.setitem(registry_mod.BACKENDS, ("clip", "fake"), f"{__name__}:recording_loader")
    monkeypatch.setitem(registry_mod.BACKENDS, ("audio", "fake"), f"{__name__}:recording_loader")
    monkeypatch.setitem(registry_mod.NEEDS, ("audio", "fake"), ("text",))
    monkeypatch.setattr(devices, "_present", lambda: (True, False))
    entries = {n: EntrySpec(n, "clip", "fake") for n in "ab"}
    entries["snd"] = EntrySpec("snd", "audio", "fake", requires={"text": "a"})  # as tiny-audio on tiny-clip
    cat = Catalog(entries, {"p": Profile("p", clip="a")})
    return Registry(cat, device="cpu", profile="p")


def device_of(registry, name):
    return next(s.device for s in registry.status() if s.name == name)


def test_an_entry_loads_on_the_chosen_device_and_status_says_so(reg):
    handle = reg.get("a", device="cuda")
    assert handle.device == "cuda" and LOADS == [("a", "cuda")]
    assert device_of(reg, "a") == "cuda" and reg.loaded_device("a") == "cuda"
    assert reg.get("b").device == "cpu" and device_of(reg, "b") == "cpu"  # others: the app's device
    assert reg.get("a") is handle and len(LOADS) == 2  # a task's plain get() keeps it where it is


def test_a_loaded_entry_moves_when_another_device_is_chosen_and_auto_brings_it_back(reg):
    reg.get("a")
    assert reg.get("a", device="cuda").device == "cuda"
    assert reg.get("a", device="cuda").device == "cuda"  # already there: no reload
    assert reg.get("a", device="auto").device == "cpu"  # auto = the app's device
    assert LOADS == [("a", "cpu"), ("a", "cuda"), ("a", "cpu")]
    assert reg.warnings == []


def test_moving_a_model_unloads_what_holds_its_old_copy(reg):
    assert reg.get("snd").text.device == "cpu"
    reg.get("a", device="cuda")
    # The audio model held the CPU copy of "a": it goes, and comes back with the moved one.
    assert not reg.is_loaded("snd") and reg.get("snd").text.device == "cuda"
    assert reg.unload("a") and not reg.is_loaded("snd")


def test_eight_concurrent_requests_to_move_an_entry_reload_it_once(reg):
    reg.get("a")
    GATE.clear()  # the move stays open until every request is under way
    results, barrier, asking = [], threading.Barrier(8), threading.Semaphore(0)

    def ask():
        barrier.wait()
        asking.release()
        results.append(reg.get("a", device="cuda"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for _ in threads:
        assert asking.acquire(timeout=30)
    GATE.set()
    for t in threads:
        t.join(30)
    assert len(results) == 8
    assert LOADS == [("a", "cpu"), ("a", "cuda")]
    assert len({id(h) for h in results}) == 1 and results[0].device == "cuda"


def test_the_chosen_device_survives_eviction_and_goes_with_unload(reg):
    budget = Registry(reg.catalog, device="cpu", profile="p", memory_budget_bytes=300_000)  # one fake fits
    budget.get("a", device="cuda")
    budget.get("b")  # over budget: a, least recently used, goes
    assert budget.status()[0].state == NOT_LOADED
    assert budget.get("a").device == "cuda"  # reloaded where the user put it
    assert budget.unload("a") and budget.get("a").device == "cpu"  # unload forgets the choice


def test_an_absent_device_falls_back_to_cpu_with_a_warning(reg, monkeypatch):
    monkeypatch.setattr(devices, "_present", lambda: (False, False))
    assert reg.place("cuda") == ("cpu", "CUDA was requested but is not available; running on CPU.")
    assert reg.get("a", device="mps").device == "cpu"
    assert device_of(reg, "a") == "cpu" and [s.state for s in reg.status()][0] == LOADED
    reg.get("b", device="mps")
    # Each shown once in the Models tab's summary, however often it was asked.
    assert reg.warnings == ["CUDA was requested but is not available; running on CPU.",
                            "MPS (Apple GPU) was requested but is not available; running on CPU."]


def test_an_unknown_device_is_a_clear_error_and_loads_nothing(reg):
    with pytest.raises(MMDemoError, match="Unknown device 'tpu'; choose one of auto, cpu, cuda, mps") as err:
        reg.get("a", device="tpu")
    assert err.value.code == "device_unknown" and LOADS == [] and device_of(reg, "a") is None


def test_the_device_choices_list_only_present_accelerators(monkeypatch):
    monkeypatch.setattr(devices, "_present", lambda: (False, False))
    assert devices.available_devices() == ["auto", "cpu"]
    monkeypatch.setattr(devices, "_present", lambda: (True, True))
    assert devices.available_devices() == ["auto", "cpu", "cuda", "mps"]


# ------------------------------------------------------------------------ the served app

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(test_catalog, session_cache):
    """The test profile's app (no CUDA here), of this module's own: the tests change what is loaded."""
    from mmdemo.settings import Settings
    from mmdemo.ui.app import build_demo, launch

    settings = Settings(profile="test", catalog=test_catalog, device="cpu", cache_dir=session_cache)
    demo = build_demo(settings)
    launch(demo, settings, server_port=_free_port(), prevent_thread_lock=True, quiet=True)
    yield demo, demo.local_url
    demo.close()


@pytest.fixture(scope="module")
def client(app):
    return Client(app[1], verbose=False)


def row(result, name):
    table, _ = result
    return next(r for r in table["data"] if r[0] == name)


def test_load_on_cpu_shows_cpu_in_the_table(client):
    got = client.predict("file-clip", "cpu", api_name="/load_model")
    assert row(got, "file-clip")[2:4] == ["loaded", "cpu"]


def absent_accelerator() -> str:
    """cuda where this machine has none (CI, here), else mps where that is absent."""
    missing = [d for d in ("cuda", "mps") if d not in devices.available_devices()]
    if not missing:
        pytest.skip("this machine has every accelerator: none to fall back from")
    return missing[0]


def test_asking_for_an_absent_accelerator_warns_and_loads_on_cpu(client):
    wanted = absent_accelerator()
    (table, info), warnings = predict_with_warnings(client, "file-coca", wanted, api_name="/load_model")
    expected = devices.resolve_device(wanted)[1]
    assert expected.endswith("was requested but is not available; running on CPU.")
    assert warnings == [expected]
    assert row((table, info), "file-coca")[2:4] == ["loaded", "cpu"]
    assert expected in info  # and the page's summary says so


def test_an_old_one_argument_call_still_loads(client):
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/load_model"]["parameters"]
    assert [p["parameter_name"] for p in params] == ["name", "device"] and params[1]["parameter_default"] == "auto"
    assert row(client.predict("rand-clip", api_name="/load_model"), "rand-clip")[2:4] == ["loaded", "cpu"]


def test_bad_names_and_devices_are_clear_errors_and_the_server_keeps_serving(client):
    with pytest.raises(AppError, match="nope is not in the list of choices"):
        client.predict("nope", "cpu", api_name="/load_model")
    with pytest.raises(AppError, match="Unknown device 'tpu'; choose one of auto, cpu, cuda, mps"):
        client.predict("pt-clip", "tpu", api_name="/load_model")
    status = client.predict(api_name="/models_status")
    assert row(status, "pt-clip")[2] == "not loaded"


def test_models_tab_loads_an_entry_on_the_picked_device(app, page):
    page.goto(app[1])
    page.get_by_role("tab", name="Models", exact=True).click()
    page.get_by_label("Model", exact=True).click()
    page.get_by_role("option", name="dir-clip", exact=True).click()
    page.get_by_label("Device", exact=True).click()
    # What this machine offers, no more: auto and cpu here, cuda or mps only where present.
    expect(page.get_by_role("option")).to_have_text([re.compile(rf"\b{d}$") for d in devices.available_devices()])
    page.get_by_role("option", name="cpu", exact=True).click()
    page.get_by_role("button", name="Load", exact=True).click()
    table_row = page.get_by_role("row").filter(has_text="dir-clip")
    expect(table_row).to_contain_text("loaded", timeout=60_000)
    expect(table_row.get_by_role("gridcell").nth(3)).to_have_text("cpu")  # the device column
    expect(page.get_by_text("Loaded dir-clip on cpu.")).to_be_visible()
