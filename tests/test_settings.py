import subprocess
import sys
from pathlib import Path

import pytest

from mmdemo.errors import MMDemoError
from mmdemo.settings import parse_settings

REPO = Path(__file__).resolve().parents[1]


def test_defaults():
    s = parse_settings([], {})
    assert (s.profile, s.device, s.host, s.port, s.share, s.auth) == ("tiny", "auto", "127.0.0.1", 7860, False, None)
    assert s.max_upload_bytes == 50 * 1024 * 1024 and s.queue_size == 64


def test_flags_win_over_environment():
    env = {"MMDEMO_PORT": "9000", "MMDEMO_DEVICE": "cpu", "MMDEMO_AUTH": "ann:secret", "MMDEMO_SHARE": "1"}
    s = parse_settings(["--port", "9001"], env)
    assert s.port == 9001 and s.device == "cpu" and s.auth == ("ann", "secret") and s.share


@pytest.mark.parametrize("argv,env,message", [
    ([], {"MMDEMO_PORT": "eighty"}, "MMDEMO_PORT"),
    (["--auth", "nopassword"], {}, "user:password"),
    ([], {"MMDEMO_DEVICE": "tpu"}, "Unknown device"),
    (["--max-upload-mb", "0"], {}, "positive"),
    (["--concurrency", "0"], {}, "--concurrency / MMDEMO_CONCURRENCY must be a whole number of at least 1, not '0'"),
    (["--concurrency", "many"], {}, "--concurrency / MMDEMO_CONCURRENCY must be a whole number .* not 'many'"),
    ([], {"MMDEMO_CONCURRENCY": "2.5"}, "MMDEMO_CONCURRENCY must be a whole number"),
    (["--batch-max", "-3"], {}, "--batch-max / MMDEMO_BATCH_MAX must be a whole number of at least 1"),
])
def test_bad_settings_are_explained(argv, env, message):
    with pytest.raises(MMDemoError, match=message) as caught:
        parse_settings(argv, env)
    assert caught.value.code == "settings_invalid"


def test_concurrency_is_sized_for_the_device_unless_given():
    s = parse_settings([], {})
    assert (s.model_concurrency("cpu"), s.model_concurrency("mps"), s.model_concurrency("cuda")) == (8, 8, 16)
    assert s.batch_max == 64
    given = parse_settings(["--concurrency", "3"], {"MMDEMO_CONCURRENCY": "5", "MMDEMO_BATCH_MAX": "1"})
    assert given.model_concurrency("cuda") == 3 and given.batch_max == 1
    assert parse_settings([], {"MMDEMO_CONCURRENCY": " 5 "}).model_concurrency("cpu") == 5


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import runpy, sys; sys.argv = ['app.py', '--help']\n"
            "try:\n    runpy.run_path('app.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'gradio', 'open_clip', 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--memory-budget-mb" in out.stdout and "MMDEMO_AUTH" in out.stdout
    assert "--concurrency" in out.stdout and "MMDEMO_BATCH_MAX" in out.stdout


def test_import_mmdemo_does_not_import_torch():
    code = "import mmdemo, sys; assert not {'torch', 'gradio', 'transformers'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_bad_flag_exits_with_message_not_traceback():
    out = subprocess.run([sys.executable, "app.py", "--auth", "x"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "user:password" in out.stderr and "Traceback" not in out.stderr


def test_cli_unknown_build_stage_is_an_error_not_a_traceback(tmp_path):
    argv = ["-m", "mmdemo", "build-tiny", "--stages", "clip,x", "--out", str(tmp_path / "b")]
    out = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: ") and "'x'" in out.stderr and "clip, audio, coca, heads" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "b").exists()


def test_cli_user_error_exits_2_and_a_bug_keeps_its_traceback(monkeypatch, capsys):
    from mmdemo import cli
    from mmdemo.cli import bundle

    def user_error(args):
        raise MMDemoError("catalog_not_found", "Catalog file not found: nowhere.toml")

    monkeypatch.setattr(bundle, "cmd_models", user_error)
    assert cli.main(["models"]) == 2
    assert capsys.readouterr().err == "error: Catalog file not found: nowhere.toml\n"

    def bug(args):
        raise KeyError("oops")

    monkeypatch.setattr(bundle, "cmd_models", bug)
    with pytest.raises(KeyError):
        cli.main(["models"])


def test_malloc_arenas_are_capped_on_glibc_and_left_alone_elsewhere(monkeypatch):
    import sys

    from mmdemo import malloc

    if sys.platform.startswith("linux"):
        assert malloc.limit_arenas() is True  # glibc took the cap (mallopt returned 1)
    monkeypatch.setattr(malloc.sys, "platform", "darwin")
    assert malloc.limit_arenas() is False
