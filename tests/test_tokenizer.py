import json

import pytest
import torch

from mmdemo.errors import MMDemoError
from mmdemo.models.tokenizer import WordTokenizer

TEXTS = ["A red star above a blue circle.", "Is there a red star?", "two green squares, one big"]


@pytest.fixture
def tok():
    return WordTokenizer.from_texts(TEXTS, context_length=8)


def test_layout_and_words_of(tok):
    assert tok.words_of("Is there a red star?") == ["is", "there", "a", "red", "star", "?"]
    assert tok.pad_token_id == 0
    assert tok.words == sorted(tok.words)
    assert tok.sot_token_id == tok.vocab_size - 2 and tok.eot_token_id == tok.vocab_size - 1
    assert WordTokenizer(["B", "a", "b"]).words == ["b", "a"]  # lowercased, order kept, duplicates dropped


def test_round_trip(tok):
    for text in ["a red star above a blue circle.", "is there a red star?", "two green squares, one big"]:
        assert tok.decode(tok.encode(text)) == text
        row = tok(text, context_length=16)[0]
        assert tok.decode(row.tolist()) == text  # sot and padding are skipped


def test_eot_is_max_id_and_argmax_pools_there(tok):
    ids = tok(["a red star", "blue"])
    assert ids.dtype == torch.long and ids.shape == (2, 8)
    eot_pos = ids.argmax(dim=-1)
    assert ids[0, eot_pos[0]] == tok.eot_token_id and eot_pos.tolist() == [4, 2]
    assert ids[0, 0] == tok.sot_token_id and ids[0, 5:].eq(0).all()


def test_truncation_keeps_sot_and_eot(tok):
    long = "a red star above a blue circle and a green square"
    ids = tok(long)[0]
    assert ids[0] == tok.sot_token_id and ids[-1] == tok.eot_token_id
    assert tok.decode(ids.tolist()) == "a red star above a blue"
    assert tok.truncated([long, "a red star"]) == [True, False]
    assert tok.truncated("a red star above a blue") == [False]  # exactly fills 8 slots
    assert tok(long, context_length=16)[0].argmax() == 12


def test_unknown_words(tok):
    ids = tok.encode("a purple star")
    assert ids[1] == 1
    assert tok.decode(ids) == "a <unk> star"


def test_unknown_words_are_named_once_in_order_without_punctuation(tok):
    assert tok.unknown_words(["a purple dog!", "A DOG and a purple cat?"]) == ["purple", "dog", "and", "cat"]
    assert tok.unknown_words("is there a red star?") == []
    assert tok.unknown_words([]) == []
    assert tok.unknown_words("a café 東京 star") == ["café", "東京"]  # whole words, in any script


def test_decode_stops_at_eot(tok):
    ids = tok.encode("a red star") + [tok.eot_token_id] + tok.encode("blue")
    assert tok.decode(ids) == "a red star"


def test_save_load_round_trip(tok, tmp_path):
    path = tmp_path / "tok.json"
    tok.save(path)
    data = json.loads(path.read_text())
    assert data["type"] == "mmdemo-word" and data["context_length"] == 8
    back = WordTokenizer.load(path)
    assert back.words == tok.words and back.context_length == 8
    assert torch.equal(back(TEXTS), tok(TEXTS))
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]  # no temp file left behind


@pytest.mark.parametrize("content", [
    "not json {",
    json.dumps({"type": "bpe", "words": ["a"]}),
    json.dumps({"type": "mmdemo-word", "words": "a b"}),
    json.dumps({"type": "mmdemo-word", "words": ["a", 3]}),
    json.dumps({"type": "mmdemo-word", "words": ["a"], "context_length": "x"}),
    json.dumps([1, 2]),
])
def test_bad_file(tmp_path, content):
    path = tmp_path / "tok.json"
    path.write_text(content)
    with pytest.raises(MMDemoError, match="tok.json"):
        WordTokenizer.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(MMDemoError, match="not found"):
        WordTokenizer.load(tmp_path / "nope.json")
