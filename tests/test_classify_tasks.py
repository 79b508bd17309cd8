"""Classify task functions on the tiny bundle: datasets, training, classify, zero-shot, heads."""

import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mmdemo.errors import MMDemoError
from mmdemo.scores import softmax
from mmdemo.tasks import classify as tasks
from tests.helpers.datasets import write_dataset


@pytest.fixture(scope="module")
def qa_report(clip, tmp_path_factory):
    """Heads trained side by side on 2,000 generated scene_qa examples (features cached)."""
    cache = tasks.FeatureCache(tmp_path_factory.mktemp("features"))
    ds = tasks.generated_dataset("scene_qa", 2000, seed=0)
    report = tasks.train_on_dataset(ds, ["bilinear", "gated"], clip, epochs=30, cache=cache)
    return report, cache, ds


# --------------------------------------------------------------------------- CSV and zip datasets


def test_csv_round_trip_with_audio(tmp_path, audio):
    path = write_dataset(tmp_path, "scene_sound_match", n=8)
    ds = tasks.read_csv_dataset(path, audio_rate=audio.sample_rate)
    assert len(ds) == 8 and ds.modalities == ("image", "text", "audio")
    assert sorted(ds.label_names) == sorted({"match", "image mismatch", "sound mismatch", "both mismatch"})
    assert all(e.audio is not None and e.audio.ndim == 1 for e in ds.examples)
    assert [e.row for e in ds.examples] == list(range(2, 10))


def test_csv_missing_columns_are_named(tmp_path):
    path = write_dataset(tmp_path, rows=lambda lines: [[r[0], r[1], r[3]] for r in lines])
    path.write_text(path.read_text().replace("image,text,label", "picture,text,label", 1))
    with pytest.raises(MMDemoError, match="missing column.*image"):
        tasks.read_csv_dataset(path)


def test_csv_missing_media_names_the_row(tmp_path):
    path = write_dataset(tmp_path)
    (tmp_path / "media" / "3.png").unlink()
    with pytest.raises(MMDemoError, match=r"row 5: Image file 'media/3.png' was not found"):
        tasks.read_csv_dataset(path)


def test_csv_unreadable_image_and_empty_text_name_their_rows(tmp_path):
    def broken(lines):
        lines[2][1] = "   "
        return lines
    path = write_dataset(tmp_path, rows=broken)
    (tmp_path / "media" / "5.png").write_bytes(b"not a png at all")
    with pytest.raises(MMDemoError) as err:
        tasks.read_csv_dataset(path)
    assert "row 3: the text is empty" in str(err.value)
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("   ", "is there a red star?")
    path.write_text("\n".join(lines))
    with pytest.raises(MMDemoError, match=r"row 7: Image '5.png' is not a readable image"):
        tasks.read_csv_dataset(path)


def test_csv_path_traversal_is_refused_with_its_row(tmp_path):
    def escape(lines):
        lines[4][0] = "../../etc/passwd.png"
        return lines
    with pytest.raises(MMDemoError, match=r"row 5: .*without '\.\.'"):
        tasks.read_csv_dataset(write_dataset(tmp_path, rows=escape))


def test_csv_not_utf8_names_the_row(tmp_path):
    path = write_dataset(tmp_path)
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"is there", b"is th\xe9re")  # Latin-1, as old spreadsheets save
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(MMDemoError, match="row 4 is not valid UTF-8"):
        tasks.read_csv_dataset(path)


def test_label_with_one_example_is_named_with_its_row(tmp_path):
    def lonely(lines):
        lines[6][3] = "maybe"
        return lines
    with pytest.raises(MMDemoError, match=r"at least 2 examples.*'maybe' \(row 7\)"):
        tasks.read_csv_dataset(write_dataset(tmp_path, rows=lonely))


def test_one_class_only_is_refused(tmp_path):
    def same(lines):
        return [lines[0]] + [r[:3] + ["yes"] for r in lines[1:]]
    with pytest.raises(MMDemoError, match="only one label"):
        tasks.read_csv_dataset(write_dataset(tmp_path, rows=same))


def test_thousands_of_classes_are_capped(tmp_path):
    def many(lines):
        body = lines[1:]
        return [lines[0]] + [body[i % len(body)][:3] + [f"class {i // 2}"] for i in range(2 * 1500)]
    with pytest.raises(MMDemoError, match="1,500 different labels; at most 100"):
        tasks.read_csv_dataset(write_dataset(tmp_path, rows=many))


def test_more_rows_than_the_cap_is_refused(tmp_path):
    def huge(lines):
        return [lines[0]] + [lines[1 + i % 8] for i in range(tasks.MAX_ROWS + 1)]
    with pytest.raises(MMDemoError, match="more than 20,000 examples"):
        tasks.read_csv_dataset(write_dataset(tmp_path, rows=huge))


def test_loose_upload_matches_media_by_file_name(tmp_path):
    src = tmp_path / "src"
    path = write_dataset(src)
    # Browsers upload files without their folders: every file arrives in its own temp dir.
    uploads = []
    for i, f in enumerate([path, *sorted((src / "media").iterdir())]):
        (tmp_path / "up" / str(i)).mkdir(parents=True)
        uploads.append((tmp_path / "up" / str(i) / f.name))
        uploads[-1].write_bytes(f.read_bytes())
    ds = tasks.load_dataset_upload(uploads, tmp_path / "work")
    assert len(ds) == 8 and ds.modalities == ("image", "text")


def test_zip_dataset_and_zip_path_traversal(tmp_path):
    path = write_dataset(tmp_path / "src")
    good = tmp_path / "data.zip"
    with zipfile.ZipFile(good, "w") as z:
        z.write(path, "mytask/data.csv")
        for f in (tmp_path / "src" / "media").iterdir():
            z.write(f, f"mytask/media/{f.name}")
    assert len(tasks.load_dataset_upload([good], tmp_path / "w1")) == 8
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("data.csv", "image,text,label\n")
        z.writestr("../../escape.png", b"x")
    with pytest.raises(MMDemoError, match="unsafe path"):
        tasks.load_dataset_upload([evil], tmp_path / "w2")
    assert not (tmp_path / "escape.png").exists()


def test_zip_that_expands_too_much_is_refused(tmp_path, monkeypatch):
    path = write_dataset(tmp_path / "src")
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(path, "data.csv")
        z.writestr("media/0.png", b"\0" * 2_000_000)  # compresses to a few KB
    monkeypatch.setattr(tasks.datasets, "MAX_ZIP_BYTES", 1_000_000)  # the module that reads it
    with pytest.raises(MMDemoError, match="(?i)too (large|big|much)|expand|limit"):
        tasks.load_dataset_upload([bomb], tmp_path / "w")


# --------------------------------------------------------------------------- training


def test_fusion_beats_every_single_modality(qa_report):
    report, _, _ = qa_report
    fusion = [r for r in report.leaderboard if not r.baseline]
    base = {r.name: r.accuracy for r in report.leaderboard if r.baseline}
    assert set(base) == {"image only", "text only"}
    assert report.winner in fusion and report.winner.accuracy == max(r.accuracy for r in fusion)
    assert report.winner.accuracy > max(base.values()) + 0.04, report.to_dict()["leaderboard"]
    assert set(report.winner.per_class_recall) == {"no", "yes"}
    assert np.asarray(report.winner.confusion).sum() == report.n_val == 400


def test_features_are_cached_in_memory_and_on_disk(qa_report, clip):
    report, cache, ds = qa_report
    assert not report.features_cached
    again = tasks.train_on_dataset(ds, ["concat"], clip, epochs=1, baselines=False, cache=cache)
    assert again.features_cached
    fresh = tasks.FeatureCache(cache.dir.parent)  # a new process: only the disk copy is there
    fs, hit = tasks.dataset_features(ds, clip, cache=fresh)
    assert hit and len(fs) == 2000 and fs.tokens["image"].dtype.is_floating_point


def test_cancel_stops_training_and_keeps_the_saved_head(qa_report, clip, tiny_registry, tmp_path):
    report, cache, ds = qa_report
    saved = tasks.save_trained_head(report, tiny_registry, tmp_path, "kept", clip)
    before = saved.read_bytes()
    cancel = threading.Event()
    seen = []

    def stop_after_two(row):
        seen.append(row)
        if row["stage"] == "train" and row["epoch"] == 2:
            cancel.set()
    with pytest.raises(MMDemoError, match="cancelled; previously saved heads are unchanged"):
        tasks.train_on_dataset(ds, ["gated"], clip, epochs=30, cache=cache, progress=stop_after_two, cancel=cancel)
    assert max(r["epoch"] for r in seen if r["stage"] == "train") == 2
    assert saved.read_bytes() == before
    assert tiny_registry.get("kept").labels == ["no", "yes"]


def test_bad_training_options_are_refused(qa_report, clip):
    _, cache, ds = qa_report
    with pytest.raises(MMDemoError, match="Unknown head type"):
        tasks.train_on_dataset(ds, ["transformer"], clip, cache=cache)
    with pytest.raises(MMDemoError, match="at least one head type"):
        tasks.train_on_dataset(ds, [], clip, cache=cache)


def test_saved_head_classifies_and_is_found_again(qa_report, clip, tiny_registry, tmp_path):
    report, _, _ = qa_report
    tasks.save_trained_head(report, tiny_registry, tmp_path, "my-qa", clip)
    from mmdemo.catalog import load_catalog
    from mmdemo.registry import Registry

    later = Registry(load_catalog(), device="cpu", profile="tiny")  # the next app start
    assert "my-qa" in tasks.register_saved_heads(later, tmp_path)
    handle = later.get("my-qa")
    assert handle.kind == report.winner.kind and handle.meta["encoder"] == {"clip": clip.model_id}
    with pytest.raises(MMDemoError, match="built-in"):
        tasks.save_trained_head(report, tiny_registry, tmp_path, "tiny-head-scene_qa-gated", clip)


def test_head_kinds_mirror_the_fusion_module():
    from mmdemo.models.fusion import HEAD_KINDS

    assert tasks.HEAD_KINDS == HEAD_KINDS


# --------------------------------------------------------------------------- classify and zero-shot


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return tasks.generated_examples(tmp_path_factory.mktemp("examples"))


def test_classify_with_ablation_and_attention(tiny_registry, clip, scene):
    row = scene[0]
    res = tasks.classify(tiny_registry.get("tiny-head-scene_qa-attention"), row["image"], row["text"], None, clip,
                         token_tower=tiny_registry.for_slot("tokens"))
    assert {r["label"] for r in res.labels} == {"no", "yes"}
    assert abs(sum(r["score"] for r in res.labels) - 1) < 1e-5
    assert [a["modality"] for a in res.ablation] == ["image", "text"]
    for a in res.ablation:
        assert [x["label"] for x in a["labels"]] == ["no", "yes"]
        assert abs(sum(x["score"] for x in a["labels"]) - 1) < 1e-5
        assert a["top_drop"] != 0  # removing either input changes the answer: it needs both
    e = res.explanation  # the question's attention over the 64 patches (the rest went to "nothing here")
    assert e["type"] == "attention" and e["names"] == ["image"] and 0 < e["values"][0] <= 1 + 1e-6
    grid = np.asarray(e["image_grid"])
    assert grid.shape == (8, 8) and abs(grid.sum() - e["values"][0]) < 1e-4


def test_classify_gated_explains_gates_and_needs_its_inputs(tiny_registry, clip, scene):
    row = scene[1]
    handle = tiny_registry.get("tiny-head-scene_qa-gated")
    res = tasks.classify(handle, row["image"], row["text"], None, clip, token_tower=tiny_registry.for_slot("tokens"))
    assert res.explanation["type"] == "gates" and res.explanation["names"] == ["image", "text"]
    assert all(0 <= v <= 1 for v in res.explanation["values"])
    assert np.asarray(res.explanation["image_grid"]).shape == (8, 8)  # each patch's gate
    with pytest.raises(MMDemoError, match="add the missing text"):
        tasks.classify(handle, row["image"], "", None, clip, token_tower=tiny_registry.for_slot("tokens"))
    with pytest.raises(MMDemoError, match="reads image tokens from"):  # another tower's patches: refused
        tasks.classify(handle, row["image"], row["text"], None, clip)


def test_zero_shot_weights_change_the_result(clip, scene):
    row = scene[0]
    present = row["objects"][0]
    absent = next(label for label in row["zero_shot_labels"] if label not in row["objects"])
    labels = "\n".join(row["zero_shot_labels"])
    by_text = tasks.zero_shot(row["image"], f"a {absent}", None, labels, clip, weights={"image": 0, "text": 1})
    assert by_text.labels[0]["label"] == absent and by_text.weights == {"text": 1.0}
    mixed = tasks.zero_shot(row["image"], f"a {absent}", None, labels, clip, weights={"image": 1, "text": 0.2})
    scores = {r["label"]: r["score"] for r in mixed.labels}
    assert scores[present] > {r["label"]: r["score"] for r in by_text.labels}[present]
    assert set(mixed.per_modality) == {"image", "text"}
    with pytest.raises(MMDemoError, match="weight 0"):
        tasks.zero_shot(row["image"], "", None, labels, clip, weights={"image": 0})
    with pytest.raises(MMDemoError, match=r"\{\} exactly once"):
        tasks.zero_shot(row["image"], "", None, labels, clip, template="a photo")


def test_words_the_tiny_model_does_not_know_are_named_in_classify(tiny_registry, clip, scene):
    row = scene[0]
    labels = "\n".join(row["zero_shot_labels"] + ["golden retriever"])
    z = tasks.zero_shot(row["image"], "a dog", None, labels, clip, template="a photo of {}")
    (notice,) = [n for n in z.notices if n.code == "words_unknown"]
    assert notice.subject == "golden, retriever, dog"
    z = tasks.zero_shot(row["image"], None, None, "\n".join(row["zero_shot_labels"]), clip)
    assert not [n for n in z.notices if n.code == "words_unknown"]
    res = tasks.classify(tiny_registry.get("tiny-head-scene_qa-gated"), row["image"], "is there a puppy?", None, clip,
                         token_tower=tiny_registry.for_slot("tokens"))
    assert [n.subject for n in res.notices if n.code == "words_unknown"] == ["puppy"]


def test_zero_shot_uses_audio_in_the_text_space(clip, audio, scene):
    row = next(r for r in scene if r["audio"])
    labels = "a rising chirp\na falling chirp\na burst of white noise\na low sine tone\na major chord"
    z = tasks.zero_shot(None, None, row["audio"], labels, clip, audio, weights={"audio": 1})
    assert set(z.per_modality) == {"audio"} and len(z.labels) == 5
    # One space: same prompts, fused at the CLIP's scale as ever; the audio alone at its own model's (Audio tab's).
    z = tasks.zero_shot(row["image"], None, row["audio"], labels, clip, audio, weights={"image": 1, "audio": 3})
    inputs = tasks.read_inputs(row["image"], None, row["audio"], audio_rate=audio.sample_rate)
    cos_i = clip.encode_images([inputs.image])[0] @ clip.encode_texts(z.prompts).T
    cos_a = audio.encode_waves([inputs.wave])[0] @ audio.encode_texts(z.prompts).T
    assert z.audio_prompts == z.prompts and [r["score"] for r in z.labels] == pytest.approx(
        sorted(softmax(clip.logit_scale * (cos_i + 3 * cos_a) / 4), reverse=True), abs=1e-6)
    assert [r["score"] for r in z.per_modality["audio"]] == pytest.approx(softmax(audio.logit_scale * cos_a), abs=1e-6)


# --------------------------------------------------------------------------- head files


def _head_file(path: Path, encoder: dict) -> Path:
    from mmdemo.models.fusion import create_head, save_head

    head = create_head("concat", modalities=("image", "text"), embed_dim=128, num_classes=2, hidden=16)
    return save_head(path, head, {"labels": ["no", "yes"], "modalities": ["image", "text"], "encoder": encoder})


def test_head_trained_on_another_encoder_is_refused(tiny_registry, tmp_path):
    other = _head_file(tmp_path / "other.safetensors", {"clip": "ViT-B-32/laion2b:ViT-B-32/laion2b_s34b_b79k"})
    with pytest.raises(MMDemoError, match="trained on clip encoder 'ViT-B-32.*retrain"):
        tasks.import_head(other, tiny_registry, tmp_path / "cache")
    with pytest.raises(MMDemoError, match="trained on clip encoder"):
        tasks.resolve_head(tiny_registry, str(other), allow_paths=True)
    # A web request names heads only: it must not make the server read a path it chose.
    with pytest.raises(MMDemoError, match="No head named"):
        tasks.resolve_head(tiny_registry, str(other))
    assert not (tmp_path / "cache" / "heads").exists()


def test_not_a_head_is_refused_and_a_good_one_imported(tiny_registry, clip, tmp_path):
    fake = tmp_path / "weights.safetensors"
    fake.write_bytes(b"\x00garbage" * 64)
    with pytest.raises(MMDemoError, match="not an mmdemo fusion head"):
        tasks.import_head(fake, tiny_registry, tmp_path / "cache")
    good = _head_file(tmp_path / "mine.safetensors", {"clip": clip.model_id})
    name = tasks.import_head(good, tiny_registry, tmp_path / "cache", "My Head!")
    assert name == "my-head" and tiny_registry.get(name).labels == ["no", "yes"]


def test_classify_with_an_audio_head(tiny_registry, clip, audio, scene, tmp_path):
    from mmdemo.models.fusion import create_head, save_head

    head = create_head("gated", modalities=("image", "text", "audio"), embed_dim=128, num_classes=4, hidden=16)
    labels = ["match", "image mismatch", "sound mismatch", "both mismatch"]
    path = save_head(tmp_path / "sound.safetensors", head, {
        "labels": labels, "modalities": ["image", "text", "audio"],
        "encoder": {"clip": clip.model_id, "audio": audio.model_id}})
    handle = tiny_registry.get(tasks.import_head(path, tiny_registry, tmp_path, "sound-head"))
    row = next(r for r in scene if r["audio"])
    res = tasks.classify(handle, row["image"], row["text"], row["audio"], clip, audio)
    assert [a["modality"] for a in res.ablation] == ["image", "text", "audio"]
    assert sorted(r["label"] for r in res.labels) == sorted(labels)
    assert res.explanation["names"] == ["image", "text", "audio"] and len(res.explanation["values"]) == 3
    with pytest.raises(MMDemoError, match="add the missing audio"):
        tasks.classify(handle, row["image"], row["text"], None, clip, audio)


# --------------------------------------------------------------------------- handles and jobs


def test_fusion_handle_takes_and_gives_numpy(tiny_registry, clip, scene):
    from mmdemo.handles import FusionHandle

    handle = tiny_registry.get("tiny-head-scene_qa-attention")
    assert isinstance(handle, FusionHandle) and handle.device == "cpu"
    row = scene[0]
    inputs = tasks.read_inputs(row["image"], row["text"], None)
    pooled, patches = clip.encode_image_tokens([inputs.image, inputs.image])
    feats = {"image": pooled, "text": clip.encode_texts([inputs.text, inputs.text])}
    probs = handle.predict(feats, {"image": patches})
    assert isinstance(probs, np.ndarray) and probs.shape == (2, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    raw = handle.explain(feats, {"image": patches})
    assert isinstance(raw["attention"], np.ndarray) and list(raw["key_modalities"]) == ["image"] * 64


def test_a_registered_head_for_other_encoders_is_refused_where_tasks_get_it(tmp_path):
    from mmdemo.catalog import EntrySpec, load_catalog
    from mmdemo.registry import Registry

    registry = Registry(load_catalog(), device="cpu", profile="tiny")  # not the shared one: it gains an entry
    other = _head_file(tmp_path / "elsewhere.safetensors", {"clip": "other-clip:0123"})
    registry.register(EntrySpec("elsewhere", "fusion", "mmdemo", weights=other))
    with pytest.raises(MMDemoError, match="trained on clip encoder 'other-clip:0123'") as err:
        tasks.resolve_head(registry, "elsewhere")
    assert err.value.code == "head_encoder_mismatch"
    # The Models tab loads through the registry: it shows the misfit as failed, with the reason.
    with pytest.raises(MMDemoError, match="trained on clip encoder"):
        registry.get("elsewhere")
    row = next(r for r in registry.status() if r.name == "elsewhere")
    assert row.state == "failed" and "other-clip:0123" in row.error


def test_training_job_streams_saves_and_frees_its_session(tiny_registry, tmp_path):
    jobs = tasks.TrainingJobs()
    job = tasks.TrainingJob.from_generated(tiny_registry, "scene_qa", 60, ["concat"], epochs=2, lr=1e-3,
                                           baselines=False, save_as="Job Head", cache_dir=tmp_path)
    with jobs.running("page", job):
        with pytest.raises(MMDemoError, match="already running") as err:
            with jobs.running("page", job):
                pass
        assert err.value.code == "training_running"
        events = list(job.events())
    report = job.result()
    assert [e["epoch"] for e in events if e["stage"] == "train"] == [1, 2]
    assert report.saved_as == "job-head" and (tmp_path / "heads" / "job-head.safetensors").is_file()
    assert not jobs.cancel("page")  # the session is free again


def test_cancelled_training_job_reports_its_code(tiny_registry, tmp_path):
    job = tasks.TrainingJob.from_generated(tiny_registry, "scene_qa", 200, ["gated"], epochs=50, lr=1e-3,
                                           baselines=False, save_as="never", cache_dir=tmp_path)
    job.start()
    for ev in job.events():
        if ev["stage"] == "train":
            job.cancel()
    with pytest.raises(MMDemoError, match="cancelled; previously saved heads are unchanged") as err:
        job.result()
    assert err.value.code == "training_cancelled" and not (tmp_path / "heads").exists()


def test_patience_decides_how_long_training_goes_on_without_improving(qa_report, clip):
    _, cache, ds = qa_report
    short = tasks.train_on_dataset(ds, ["concat"], clip, epochs=60, patience=1, baselines=False, cache=cache)
    long = tasks.train_on_dataset(ds, ["concat"], clip, epochs=60, patience=20, baselines=False, cache=cache)
    for report, patience in ((short, 1), (long, 20)):
        epochs_run = max(row["epoch"] for row in report.history)
        best = report.leaderboard[0].best_epoch
        assert epochs_run == 60 or epochs_run == best + patience, (epochs_run, best, patience)
    assert max(r["epoch"] for r in long.history) > max(r["epoch"] for r in short.history)
    for bad in (0, 101, None):
        with pytest.raises(MMDemoError, match="Patience must be between 1 and 100"):
            tasks.check_training_options(["concat"], 10, 1e-3, bad)
