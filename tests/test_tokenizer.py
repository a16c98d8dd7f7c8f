"""Sentencepiece word pieces for CTC: blank = 0, sentencepiece ids shifted by +1."""

from __future__ import annotations

import json
import random
import time
import warnings

import pytest

from usmlite_edu.speech.tokenizer import BLANK_ID, Tokenizer

DIGITS = "zero one two three four five six seven eight nine oh".split()
SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "speech recognition with a conformer and ctc",
    "please call stella and ask her to bring these things",
    "quantization and sparsity make the model smaller",
]


def _corpus(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(DIGITS) for _ in range(rng.randint(1, 9))) for _ in range(n)]
    return texts + SENTENCES * 5


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Tokenizer:
    return Tokenizer.train(_corpus(), 48, tmp_path_factory.mktemp("tok"))


def test_vocab_and_blank(tok: Tokenizer):
    assert 3 <= tok.vocab_size <= 48
    assert tok.blank_id == BLANK_ID == 0
    assert tok.pieces[0] == "<blank>" and len(tok.pieces) == tok.vocab_size
    assert tok.unk_id == 1
    for text in _corpus(50, seed=1) + SENTENCES:
        ids = tok.encode(text)
        assert ids and 0 not in ids and max(ids) < tok.vocab_size
        assert tok.unk_id not in ids


def test_round_trip(tok: Tokenizer):
    for text in ["  three   four\tnine ", "oh oh seven", *SENTENCES, "the lazy fox calls nine"]:
        ids = tok.encode(text)
        assert tok.decode(ids) == tok.normalize(text) == " ".join(text.split())
    assert tok.decode([0, *tok.encode("two"), 0]) == "two"  # blanks are ignored
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([tok.vocab_size])


def test_deterministic():
    corpus = _corpus()
    a = Tokenizer.train(corpus, 48, None)
    b = Tokenizer.train(corpus, 48, None)
    assert a.pieces == b.pieces
    assert a.encode(SENTENCES[0]) == b.encode(SENTENCES[0])


def test_save_load(tok: Tokenizer, tmp_path):
    tok.save(tmp_path)
    settings = json.loads((tmp_path / "tokenizer.json").read_text())
    assert settings["vocab_size"] == tok.vocab_size and settings["blank_id"] == 0
    again = Tokenizer.load(tmp_path)
    assert again.pieces == tok.pieces
    for text in SENTENCES:
        assert again.encode(text) == tok.encode(text)


def test_can_encode(tok: Tokenizer):
    assert tok.can_encode("seven eight nine") == (True, "")
    ok, why = tok.can_encode("nine ×2 café")
    assert not ok and "'×'" in why and "'é'" in why
    assert tok.unk_id in tok.encode("café")
    ok, why = tok.can_encode("   ")
    assert not ok and "empty" in why


def test_small_corpus_large_vocab_does_not_crash(tmp_path):
    digits_only = [
        "".join(random.Random(i).choice("0123456789") for _ in range(6)) for i in range(30)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = Tokenizer.train(digits_only, 5000, tmp_path)
    assert 12 <= small.vocab_size < 5000
    assert Tokenizer.load(tmp_path).vocab_size == small.vocab_size
    assert small.decode(small.encode("123 456")) == "123 456"
    with pytest.warns(UserWarning, match="support only"):
        Tokenizer.train(DIGITS, 5000, None)


def test_vocab_too_small_for_characters():
    with pytest.raises(ValueError, match="vocab_size >= "):
        Tokenizer.train(SENTENCES, 8, None)


@pytest.mark.filterwarnings("ignore:tokenizer:UserWarning")
@pytest.mark.parametrize("model_type", ["bpe", "char"])
def test_other_model_types(model_type: str):
    t = Tokenizer.train(_corpus(100), 40, None, model_type=model_type)
    assert t.decode(t.encode(SENTENCES[1])) == SENTENCES[1]
    assert 0 not in t.encode(SENTENCES[1])


@pytest.mark.filterwarnings("ignore:tokenizer:UserWarning")
def test_training_speed():
    rng = random.Random(3)
    corpus = [
        " ".join(rng.choice(DIGITS + SENTENCES[0].split()) for _ in range(12)) for _ in range(1000)
    ]
    start = time.perf_counter()
    Tokenizer.train(corpus, 256, None)
    assert time.perf_counter() - start < 5.0
