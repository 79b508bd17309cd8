"""A word-level tokenizer for the embedded tiny models (a closed vocabulary).

Id layout mirrors open_clip's BPE tokenizer: pad = 0, and end-of-text is the
largest id, because open_clip's text tower pools the features at
``text.argmax(dim=-1)``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Sequence

import torch

from mmdemo.errors import MMDemoError

PAD, UNK, SOT, EOT = "<pad>", "<unk>", "<start_of_text>", "<end_of_text>"
_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
_ATTACH = {"?", ",", ".", "!", ";", ":"}


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class WordTokenizer:
    def __init__(self, words: Sequence[str], context_length: int = 32):
        seen = dict.fromkeys(w.lower() for w in words if w and w not in (PAD, UNK, SOT, EOT))
        self.words = list(seen)
        self.itos = [PAD, UNK, *self.words, SOT, EOT]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.vocab_size = len(self.itos)
        self.pad_token_id, self.unk_token_id = 0, 1
        self.sot_token_id, self.eot_token_id = self.vocab_size - 2, self.vocab_size - 1
        if int(context_length) < 2:
            raise MMDemoError("tokenizer_context_invalid",
                              f"context_length must be at least 2 (start and end of text), got {context_length}.")
        self.context_length = int(context_length)

    words_of = staticmethod(words_of)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(w, self.unk_token_id) for w in words_of(text)]

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.LongTensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        n = int(context_length or self.context_length)
        out = torch.zeros(len(texts), n, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(ids) > n:  # keep sot, cut the words, always end with eot
                ids = ids[: n - 1] + [self.eot_token_id]
            out[row, : len(ids)] = torch.tensor(ids)
        return out

    def unknown_words(self, texts: str | Iterable[str]) -> list[str]:
        """The words of ``texts`` with a part outside the vocabulary (read as ``<unk>``),
        once each, in order, whole ("café", not "caf" and "é"). Punctuation is not a word
        here: a stray '!' is worth no notice."""
        texts = [texts] if isinstance(texts, str) else texts
        return list(dict.fromkeys(w for t in texts for w in re.findall(r"\w+", t.lower())
                                  if any(p not in self.stoi for p in words_of(w))))

    def truncated(self, texts: str | Iterable[str]) -> list[bool]:
        texts = [texts] if isinstance(texts, str) else texts
        return [len(self.encode(t)) + 2 > self.context_length for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        out: list[str] = []
        for i in ids:
            i = int(i)
            if i == self.eot_token_id:
                break
            if i in (self.pad_token_id, self.sot_token_id) or not 0 <= i < self.vocab_size:
                continue
            w = self.itos[i]
            if w in _ATTACH and out:
                out[-1] += w
            else:
                out.append(w)
        return " ".join(out)

    def save(self, path: str | Path) -> None:
        from mmdemo.atomic import atomic_write_json

        atomic_write_json(path, {"type": "mmdemo-word", "words": self.words, "context_length": self.context_length})

    @classmethod
    def load(cls, path: str | Path) -> "WordTokenizer":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MMDemoError("tokenizer_not_found", f"Tokenizer file not found: {path}") from None
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise MMDemoError("tokenizer_invalid", f"Tokenizer file {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("type") != "mmdemo-word" or not isinstance(data.get("words"), list):
            raise MMDemoError("tokenizer_invalid", f"{path} is not an mmdemo word tokenizer file.")
        words, n = data["words"], data.get("context_length", 32)
        if not all(isinstance(w, str) for w in words):
            raise MMDemoError("tokenizer_invalid", f"Tokenizer file {path}: 'words' must be a list of strings.")
        # bool is an int subclass; a JSON true would silently become 1
        if not isinstance(n, int) or isinstance(n, bool) or n < 2:
            raise MMDemoError("tokenizer_invalid",
                              f"Tokenizer file {path}: 'context_length' must be an integer >= 2, got {n!r}.")
        return cls(words, n)

    @classmethod
    def from_texts(cls, texts: Iterable[str], context_length: int = 32) -> "WordTokenizer":
        return cls(sorted({w for t in texts for w in words_of(t)}), context_length)
