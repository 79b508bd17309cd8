"""Shared test setup: no network, few threads (CI machines have 2 cores), a temp cache, tiny models.

Shared state lives here as fixtures; shared functions live in tests/helpers/ (test modules
never import each other or this file). Markers: ``slow`` (a test or its fixture takes more
than ~5 s here, browser tests included) and ``browser`` (tests/*browser*.py); see
pytest_collection_modifyitems below. ``python -m pytest -m "not slow"`` is the inner loop.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Tiny models gain nothing from threads, and 2-core machines run other work beside the tests.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.helpers.tiny_models import TINY_CLIP_CFG, TINY_COCA_CFG, save_tiny_clap, write_config  # noqa: E402

HUB_REPO = "mmdemo-test/tiny-clip"
HUB_CLAP_REPO = "mmdemo-test/tiny-clap"

# -------------------------------------------------------------------------- markers

# Tests that take more than ~5 s on a 2-core machine, and enough of the 1.5-4 s ones to
# keep `-m "not slow"` under a minute (seconds measured with --durations). Marked here by
# name so the files' owners need no decorators; a listed name that no longer exists is an error.
SLOW_TESTS = {
    "test_build_tiny.py": {"test_smoke_build_runs_every_stage_and_losses_fall"},  # 37 s: every stage
    "test_classify_client.py": {
        "test_cancel_training_keeps_the_saved_head",  # 8-12 s: 3,000 generated examples
        "test_bad_training_data_gets_a_clear_message",  # 4 x 1.5 s
        "test_train_on_an_uploaded_csv_then_classify_with_it",  # 2 s
    },
    "test_settings.py": {"test_cli_unknown_build_stage_is_an_error_not_a_traceback"},  # 6.5 s: a CLI process
    "test_open_clip_backend.py": {"test_builtin_pretrained_tag_resolves_from_the_hugging_face_cache"},  # 4-5 s
    "test_image_tasks.py": {"test_blank_candidates_use_the_caption_bank"},  # 3.5 s
    "test_image_client.py": {
        "test_search_images_by_text_finds_the_scene",  # 3.4 s
        "test_captions_of_examples_name_their_colour_and_shape",  # 2.4-2.8 s
        "test_text_limits", "test_ranking_puts_the_true_caption_first",  # 1.8 s each
        "test_search_texts_ranks_the_true_caption_high", "test_bad_zips_are_refused_and_nothing_indexed_is_lost",
        "test_unreadable_images_are_clear_errors_on_every_endpoint",  # 7 x 0.75 s
    },
    "test_audio_client.py": {"test_example_clip_is_eight_seconds_of_two_sounds"},  # 2.9 s
    "test_models_cli.py": {"test_tiny_entries_facts_match_the_loaded_models",  # ~9 s: loads the tiny models
                           "test_real_entries_facts_match_their_architectures_built_with_random_weights"},  # 3-6 s
    "test_load.py": {"test_eight_clients_for_twenty_seconds_get_every_answer_whole"},  # ~60 s: 8 clients x 20 s
    "test_batching.py": {"test_wrapped_handles_keep_their_protocols"},  # 4-12 s: the tiny profile loads
    "test_serving_files.py": {"test_overlapping_identical_searches_serve_complete_thumbnails",  # 8-10 s
                              "test_sound_players_and_the_example_clip_are_written_once"},  # 4-6 s
    "test_sessions.py": {"test_two_sessions_keep_their_own_head_of_the_same_name",  # ~10 s
                         "test_a_login_keeps_its_heads_across_sessions_and_restarts"},  # ~8 s
    "test_cleanup.py": {"test_a_served_app_removes_its_files_and_anonymous_heads_on_close",  # 8-12 s
                        "test_building_and_closing_leaves_no_temp_folder",  # ~6 s
                        "test_a_server_stopped_with_sigterm_cleans_up_like_ctrl_c"},  # ~8 s: a real server process
    "test_clap_backend.py": {"test_import_and_building_the_app_on_real_profiles_import_no_transformers"},  # 9-17 s
    "test_saved_index.py": {"test_build_demo_stops_on_a_bad_index_and_app_py_exits_with_the_message"},  # 7-12 s: app.py
    "test_ray_indexing.py": {"test_cli_builds_on_ray_then_search_finds_the_red_images"},  # ~23 s: Ray in a CLI process
}
# Fixtures that cost more than ~5 s once: every test that uses one is slow.
SLOW_FIXTURES = {
    "test_tiny_bundle.py": {"metrics"},  # ~15 s: the bundle's evaluation on a fresh sample
    "test_classify_tasks.py": {"qa_report"},  # ~13 s: heads trained on 2,000 examples
    "test_fusion_spaces.py": {"trained"},  # ~6 s: five heads trained
    "test_auth.py": {"auth_app"},  # 4-20 s: an app launched with --auth
    "test_real_profile_client.py": {"real_app"},  # 12-23 s: random real backends built and served
    "test_saved_index.py": {"built"},  # 15-20 s: `index build` twice, each a CLI process
    "test_ray_indexing.py": {"ray_cluster"},  # 2-3 s to start Ray, 7-20 s a run: actors load the tiny CLIP
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        file = item.path.name
        if "browser" in file:  # a real chromium per test: a few seconds each
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)
        missing = [n for n in SLOW_TESTS.get(file, ()) if not hasattr(item.module, n)]
        if missing:
            raise pytest.UsageError(f"conftest.SLOW_TESTS names tests {file} no longer has: {missing}")
        name = getattr(item, "originalname", item.name)
        # Tests parametrised over the apps reach real_app through getfixturevalue, by param.
        on_real_app = getattr(getattr(item, "callspec", None), "params", {}).get("app") == "real"
        if (name in SLOW_TESTS.get(file, ()) or SLOW_FIXTURES.get(file, set()) & set(item.fixturenames)
                or on_real_app):
            item.add_marker(pytest.mark.slow)


# -------------------------------------------------------------------------- a temp cache

def _point_cache_at(mp: pytest.MonkeyPatch, root: Path) -> Path:
    """Both ways the app finds its cache: MMDEMO_CACHE_DIR (parse_settings) and
    XDG_CACHE_HOME (paths.default_cache_dir, used by a bare Settings())."""
    cache = root / "mmdemo"
    mp.setenv("XDG_CACHE_HOME", str(root))
    mp.setenv("MMDEMO_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """The cache of the session-wide apps (tiny_app, test_app), never the user's ~/.cache/mmdemo."""
    with pytest.MonkeyPatch.context() as mp:
        yield _point_cache_at(mp, tmp_path_factory.mktemp("session-cache"))


# Client and browser tests drive the session-wide app and look for what it wrote in its cache.
_SHARES_THE_APP = ("_client.py", "_browser.py")


@pytest.fixture(autouse=True)
def cache_dir(request, session_cache, tmp_path_factory, monkeypatch) -> Path:
    """This test's mmdemo cache dir (empty at start), or the session app's for client/browser tests."""
    if request.node.path.name.endswith(_SHARES_THE_APP):
        return session_cache
    return _point_cache_at(monkeypatch, tmp_path_factory.mktemp("cache"))


def _save_random(arch_cfg_path: Path, seed: int):
    import open_clip
    import torch
    from safetensors.torch import save_file

    open_clip.add_model_config(arch_cfg_path)
    torch.manual_seed(seed)
    model = open_clip.create_model(arch_cfg_path.stem)
    if hasattr(model, "text_decoder"):  # open_clip leaves this projection uninitialised
        torch.nn.init.normal_(model.text_decoder.text_projection, std=0.02)
    return model, {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, save_file


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory):
    """Random tiny CLIP/CoCa saved every way a user can point at weights."""
    import torch

    root = tmp_path_factory.mktemp("tiny")
    clip_cfg = write_config(root / "configs", "mmdemo-test-clip", TINY_CLIP_CFG)
    coca_cfg = write_config(root / "configs", "mmdemo-test-coca", TINY_COCA_CFG)
    _, clip_sd, save_file = _save_random(clip_cfg, 0)
    _, coca_sd, _ = _save_random(coca_cfg, 1)
    save_file(clip_sd, root / "clip.safetensors")
    torch.save(clip_sd, root / "clip.pt")
    save_file(coca_sd, root / "coca.safetensors")
    (root / "corrupt.safetensors").write_bytes(b"\x00garbage, not weights" * 10)
    # local-dir: open_clip's own folder schema
    local = root / "local-clip"
    local.mkdir()
    (local / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CFG, "preprocess_cfg": {}}))
    shutil.copy(root / "clip.safetensors", local / "open_clip_model.safetensors")
    # A hand-made Hugging Face cache holding hf-hub:mmdemo-test/tiny-clip
    snap = _hub_snapshot(root / "hf" / "hub", HUB_REPO)
    shutil.copy(local / "open_clip_config.json", snap)
    shutil.copy(local / "open_clip_model.safetensors", snap)
    # A tiny CLAP as save_pretrained writes it (local-dir:), the same files in the hand-made
    # cache (hf-hub:mmdemo-test/tiny-clap), and a folder whose weights are garbage.
    clap_dir = root / "local-clap"
    save_tiny_clap(clap_dir, seed=2)
    shutil.copytree(clap_dir, _hub_snapshot(root / "hf" / "hub", HUB_CLAP_REPO), dirs_exist_ok=True)
    corrupt_clap = root / "corrupt-clap"
    shutil.copytree(clap_dir, corrupt_clap)
    (corrupt_clap / "model.safetensors").write_bytes(b"\x00garbage, not weights" * 10)
    return {"root": root, "clip_cfg": clip_cfg, "coca_cfg": coca_cfg, "local": local,
            "hub_cache": root / "hf" / "hub", "clip_sd": clip_sd, "clap_dir": clap_dir,
            "corrupt_clap": corrupt_clap}


def _hub_snapshot(hub: Path, repo_id: str) -> Path:
    """The snapshot folder of ``repo_id`` in a hand-made Hugging Face cache (refs/main -> sha)."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(sha)
    snap = repo / "snapshots" / sha
    snap.mkdir(parents=True, exist_ok=True)
    return snap


@pytest.fixture
def hf_cache(tiny_files, monkeypatch):
    """Point huggingface_hub at the hand-made cache (read at call time)."""
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tiny_files["hub_cache"]))
    return tiny_files["hub_cache"]


@pytest.fixture(scope="session")
def test_catalog(tiny_files):
    r = tiny_files["root"]
    text = f"""
[models.rand-clip]
kind = "clip"
config = "{tiny_files['clip_cfg']}"
allow_random = true

[models.file-clip]
kind = "clip"
config = "{tiny_files['clip_cfg']}"
weights = "{r / 'clip.safetensors'}"

[models.pt-clip]
kind = "clip"
config = "{tiny_files['clip_cfg']}"
weights = "{r / 'clip.pt'}"

[models.dir-clip]
kind = "clip"
arch = "local-dir:{tiny_files['local']}"

[models.hub-clip]
kind = "clip"
arch = "hf-hub:{HUB_REPO}"

[models.file-coca]
kind = "captioner"
config = "{tiny_files['coca_cfg']}"
weights = "{r / 'coca.safetensors'}"

[models.corrupt-clip]
kind = "clip"
config = "{tiny_files['clip_cfg']}"
weights = "{r / 'corrupt.safetensors'}"

[models.missing-clip]
kind = "clip"
config = "{tiny_files['clip_cfg']}"
weights = "{r / 'nope.safetensors'}"

[models.dir-clap]
kind = "audio"
backend = "clap"
arch = "local-dir:{tiny_files['clap_dir']}"

[models.hub-clap]
kind = "audio"
backend = "clap"
arch = "hf-hub:{HUB_CLAP_REPO}"

[models.corrupt-clap]
kind = "audio"
backend = "clap"
arch = "local-dir:{tiny_files['corrupt_clap']}"

[models.missing-clap]
kind = "audio"
backend = "clap"
arch = "local-dir:{r / 'no-such-clap'}"

[profiles.test]
description = "random tiny models for tests"
clip = "file-clip"
captioner = "file-coca"

[profiles.real]
description = "every real backend, random tiny weights, each saved the way users point at theirs"
clip = "dir-clip"
captioner = "file-coca"
audio = "hub-clap"
"""
    path = r / "catalog.toml"
    path.write_text(text)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_app(settings, registry=None):
    """Launch the real app in-process on a free port; returns (demo, url)."""
    from mmdemo.ui.app import build_demo, launch

    demo = build_demo(settings, registry)
    launch(demo, settings, server_port=free_port(), prevent_thread_lock=True, quiet=True)
    return demo, demo.local_url


@pytest.fixture
def launch_app():
    """``launch_app(settings, registry=None) -> (demo, url)``: an extra app, closed after the test."""
    demos = []

    def launch(settings, registry=None):
        demo, url = _launch_app(settings, registry)
        demos.append(demo)
        return demo, url

    yield launch
    for demo in demos:
        demo.close()


@pytest.fixture(scope="session")
def test_app(test_catalog, session_cache):
    """The app on the random tiny test profile (Models tab tests)."""
    from mmdemo.settings import Settings

    settings = Settings(profile="test", catalog=test_catalog, device="cpu", max_upload_mb=1, cache_dir=session_cache)
    demo, url = _launch_app(settings)
    yield demo, url
    demo.close()


@pytest.fixture(scope="session")
def real_app(test_catalog, tiny_files, session_cache):
    """The app on the ``real`` test profile: every real backend with random tiny weights,
    saved the ways users point at theirs (open_clip CLIP in a local-dir:, CoCa in a file
    with open_clip's BPE tokenizer, CLAP in a hand-made Hugging Face cache, offline)."""
    import huggingface_hub.constants as c

    from mmdemo.settings import Settings

    with pytest.MonkeyPatch.context() as mp:
        # Read when the CLAP first loads (lazily, on a request): patched for the app's lifetime.
        mp.setattr(c, "HF_HUB_CACHE", str(tiny_files["hub_cache"]))
        settings = Settings(profile="real", catalog=test_catalog, device="cpu", max_upload_mb=5,
                            cache_dir=session_cache)
        demo, url = _launch_app(settings)
        yield demo, url
        demo.close()


@pytest.fixture(scope="session")
def chromium_path():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Browser tests need Debian's chromium (apt-get install -y chromium); .ci/run installs it.")
    return path


@pytest.fixture
def page(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=["--no-sandbox"])
        page = browser.new_page()
        page.set_default_timeout(30_000)
        yield page
        browser.close()


@pytest.fixture(scope="session")
def tiny_app(session_cache):
    """The app on the shipped tiny bundle (the default profile), as users run it."""
    from mmdemo.paths import TINY_BUNDLE_DIR
    from mmdemo.settings import Settings

    if not (TINY_BUNDLE_DIR / "tiny-clip.safetensors").is_file():
        pytest.fail("The tiny bundle is missing: run `python -m mmdemo build-tiny`.")
    settings = Settings(device="cpu", max_upload_mb=5, cache_dir=session_cache)
    demo, url = _launch_app(settings)
    yield demo, url
    demo.close()


@pytest.fixture(scope="session")
def tiny_registry():
    from mmdemo.catalog import load_catalog
    from mmdemo.registry import Registry

    return Registry(load_catalog(), device="cpu", profile="tiny")


# The tiny profile's encoders, shared by the task tests (loaded once per session).
@pytest.fixture(scope="session")
def clip(tiny_registry):
    return tiny_registry.for_slot("clip")


@pytest.fixture(scope="session")
def captioner(tiny_registry):
    return tiny_registry.for_slot("captioner")


@pytest.fixture(scope="session")
def audio(tiny_registry):
    return tiny_registry.for_slot("audio")
