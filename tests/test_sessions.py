"""Users' own heads through gradio_client: each session (anonymous) or login (--auth) has
its own namespace, so nobody sees, replaces or breaks another's head of the same name."""

from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from mmdemo.settings import Settings


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from mmdemo.tasks.classify import generated_examples

    return generated_examples(tmp_path_factory.mktemp("examples"))[0]


def _head_file(path: Path, demo, labels: list[str]) -> str:
    """A head over the app's CLIP that answers one of ``labels``: whose head ran shows in its labels."""
    from mmdemo.models.fusion import create_head, save_head

    registry = demo.mmdemo_registry
    clip_id = registry.catalog.entry(registry.profile.clip).model_id
    head = create_head("concat", modalities=("image", "text"), embed_dim=128, num_classes=len(labels), hidden=8)
    save_head(path, head, {"labels": labels, "modalities": ["image", "text"], "encoder": {"clip": clip_id}})
    return str(path)


def _choices(head_update) -> list[str]:
    return [c[0] for c in head_update["choices"]]


def _labels(client, name, scene) -> set[str]:
    label, info, *_ = client.predict(name, handle_file(scene["image"]), scene["text"], None, api_name="/classify")
    assert name in info
    return {c["label"] for c in label["confidences"]}


def test_two_sessions_keep_their_own_head_of_the_same_name(tiny_app, scene, tmp_path):
    demo, url = tiny_app
    ann, bob = Client(url, verbose=False), Client(url, verbose=False)  # two sessions
    status, head = ann.predict(handle_file(_head_file(tmp_path / "a.safetensors", demo, ["ann-1", "ann-2"])),
                               "shared-name", api_name="/upload_head")
    assert "Added **shared-name**" in status
    status, head_b = bob.predict(handle_file(_head_file(tmp_path / "b.safetensors", demo, ["bob-1", "bob-2", "bob-3"])),
                                 "shared-name", api_name="/upload_head")
    assert "Added **shared-name**" in status and "Replaced" not in status  # ann's is not bob's to replace
    bob.predict(handle_file(_head_file(tmp_path / "c.safetensors", demo, ["x", "y"])), "only-bob",
                api_name="/upload_head")
    bundled = demo.mmdemo_registry.names(kind="fusion")
    assert _choices(head) == bundled + ["shared-name"]
    assert _choices(head_b) == bundled + ["shared-name"]
    assert _labels(ann, "shared-name", scene) == {"ann-1", "ann-2"}
    assert _labels(bob, "shared-name", scene) == {"bob-1", "bob-2", "bob-3"}
    with pytest.raises(AppError, match="No head named 'only-bob'"):
        _labels(ann, "only-bob", scene)
    # A repeat save replaces your own head, and says so; the other session's is untouched.
    status, head = ann.predict(handle_file(_head_file(tmp_path / "a2.safetensors", demo, ["ann-3", "ann-4"])),
                               "shared-name", api_name="/upload_head")
    assert "Replaced your head **shared-name**" in status and _choices(head).count("shared-name") == 1
    assert _labels(ann, "shared-name", scene) == {"ann-3", "ann-4"}
    assert _labels(bob, "shared-name", scene) == {"bob-1", "bob-2", "bob-3"}
    with pytest.raises(AppError, match="already a model name"):  # nobody saves over a head everyone sees
        ann.predict(handle_file(str(tmp_path / "a.safetensors")), bundled[0], api_name="/upload_head")


def test_an_empty_name_does_not_collide_across_sessions(tiny_app, scene, tmp_path):
    demo, url = tiny_app
    ann, bob = Client(url, verbose=False), Client(url, verbose=False)
    status, *_, head = ann.predict("scene_qa", 100, ["concat"], 1, 0.001, "", False, api_name="/train_generated")
    assert "Saved as **my-head**" in status and head["value"] == "my-head"
    # bob's file is called my-head too, and an empty name takes the file's
    status, _ = bob.predict(handle_file(_head_file(tmp_path / "my-head.safetensors", demo, ["b1", "b2", "b3"])), "",
                            api_name="/upload_head")
    assert "Added **my-head**" in status
    assert _labels(ann, "my-head", scene) == {"no", "yes"}
    assert _labels(bob, "my-head", scene) == {"b1", "b2", "b3"}
    status, *_ = ann.predict("scene_qa", 100, ["concat"], 1, 0.001, "", False, api_name="/train_generated")
    assert "Replaced your head **my-head**" in status
    assert _labels(bob, "my-head", scene) == {"b1", "b2", "b3"}


def test_a_login_keeps_its_heads_across_sessions_and_restarts(launch_app, scene, tmp_path):
    settings = Settings(device="cpu", auth=("ann", "pw-1"), cache_dir=tmp_path / "cache")
    demo, url = launch_app(settings)
    first = Client(url, auth=("ann", "pw-1"), verbose=False)
    first.predict(handle_file(_head_file(tmp_path / "a.safetensors", demo, ["ann-1", "ann-2"])), "kept",
                  api_name="/upload_head")
    assert _labels(Client(url, auth=("ann", "pw-1"), verbose=False), "kept", scene) == {"ann-1", "ann-2"}
    demo.close()
    _, url = launch_app(settings)  # the next start, over the same cache
    assert _labels(Client(url, auth=("ann", "pw-1"), verbose=False), "kept", scene) == {"ann-1", "ann-2"}
