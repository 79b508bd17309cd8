"""Tests never touch the user's ~/.cache/mmdemo: conftest gives every test a temp cache."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from mmdemo.index import EmbeddingCache
from mmdemo.paths import default_cache_dir
from mmdemo.settings import Settings, parse_settings

REPO = Path(__file__).resolve().parents[1]


def test_every_way_to_find_the_cache_points_at_this_tests_own_folder(cache_dir, tmp_path_factory):
    assert cache_dir.is_relative_to(tmp_path_factory.getbasetemp())
    assert not cache_dir.exists()  # nothing another test wrote
    assert default_cache_dir() == Settings().cache_dir == parse_settings([]).cache_dir == cache_dir
    # What a gallery does when it indexes a file: cache the embedding on disk.
    cache = EmbeddingCache(Settings().cache_dir, "some-model:0")
    cache.get_or_compute(["a-file-hash"], lambda missing: np.ones((len(missing), 4), np.float32))
    assert cache.path.is_file() and cache.path.is_relative_to(cache_dir)


def test_a_run_writes_nothing_under_the_home_cache(tmp_path):
    """Run the test above in a fresh pytest whose HOME is empty and whose cache variables are unset."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "MMDEMO_CACHE_DIR")}
    env["HOME"] = str(home)
    test = f"{Path(__file__).relative_to(REPO)}::test_every_way_to_find_the_cache_points_at_this_tests_own_folder"
    out = subprocess.run([sys.executable, "-m", "pytest", test, "-q", "-p", "no:cacheprovider",
                          f"--basetemp={tmp_path / 'basetemp'}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "1 passed" in out.stdout, out.stdout + out.stderr
    assert not (home / ".cache").exists(), sorted(str(p.relative_to(home)) for p in home.rglob("*"))
