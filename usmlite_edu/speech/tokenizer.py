"""Word-piece tokenizer for CTC (the paper's output units, section 4.2: "CTC over a
word-piece vocabulary"), a thin wrapper around a sentencepiece model.

Id convention::

    0            CTC blank (never produced by encode)
    1 + i        sentencepiece piece i  (piece 0 is <unk>, so <unk> is id 1)

There are no BOS / EOS / PAD pieces, so ``vocab_size`` (output classes of the CTC softmax,
the ``ConformerConfig.vocab_size`` to use) is ``1 + number of sentencepiece pieces``.

Text is normalised by sentencepiece's ``nmt_nfkc`` rule (NFKC, whitespace collapsed and
stripped; case is kept); ``decode(encode(t)) == normalize(t)`` for any text whose
characters were seen in training. Characters never seen map to ``<unk>``:
:meth:`Tokenizer.can_encode` reports them so the data pipeline can skip such utterances.
"""

from __future__ import annotations

import io
import json
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

__all__ = ["Tokenizer", "BLANK_ID"]

BLANK_ID = 0
_OFFSET = 1  # sentencepiece id i  <->  our id i + 1
_MODEL_FILE = "tokenizer.model"
_JSON_FILE = "tokenizer.json"
_FORMAT = 1
_MODEL_TYPES = ("unigram", "bpe", "char")


class Tokenizer:
    """Sentencepiece word pieces with the CTC blank at id 0 (ids shifted by +1)."""

    def __init__(self, model_proto: bytes, settings: dict | None = None):
        self._proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
        if self._sp.bos_id() >= 0 or self._sp.eos_id() >= 0 or self._sp.pad_id() >= 0:
            raise ValueError(
                "sentencepiece model must have no BOS/EOS/PAD pieces "
                "(train it with bos_id=eos_id=pad_id=-1)"
            )
        self.settings: dict = dict(settings or {})
        self.settings["vocab_size"] = self.vocab_size

    # ------------------------------------------------------------------ training / IO
    @classmethod
    def train(
        cls,
        texts: Sequence[str],
        vocab_size: int,
        out_dir: str | os.PathLike | None,
        *,
        model_type: str = "unigram",
        seed: int = 0,
        normalization: str = "nmt_nfkc",
    ) -> Tokenizer:
        """Train deterministically on ``texts`` and save to ``out_dir`` (if not None).

        ``vocab_size`` counts the CTC blank, like :attr:`vocab_size`. It is a soft limit:
        a corpus too small for that many pieces gives a smaller vocabulary and a
        ``UserWarning`` naming the actual size (read it back from :attr:`vocab_size`).
        All characters are kept (``character_coverage=1.0``); a ``vocab_size`` too small
        to hold them raises ``ValueError`` with the minimum. ``normalization`` is a
        sentencepiece rule name (``nmt_nfkc``, or ``nmt_nfkc_cf`` to also case-fold).
        ``model_type`` is ``unigram`` (default), ``bpe`` or ``char``.
        """
        if model_type not in _MODEL_TYPES:
            raise ValueError(
                f"model_type={model_type!r}: use one of {_MODEL_TYPES} "
                f"(word pieces or characters; whole words cannot cover OOVs)"
            )
        if vocab_size < 3:
            raise ValueError(
                f"vocab_size={vocab_size} is too small: the CTC blank, <unk> "
                f"and at least one piece need 3"
            )
        clean = [" ".join(t.split()) for t in texts]
        clean = [t for t in clean if t]
        if not clean:
            raise ValueError("no non-empty transcripts to train the tokenizer on")
        model = io.BytesIO()
        spm.set_random_generator_seed(seed)
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(clean),
                model_writer=model,
                vocab_size=vocab_size - _OFFSET,
                model_type=model_type,
                character_coverage=1.0,
                hard_vocab_limit=False,
                normalization_rule_name=normalization,
                unk_id=0,
                bos_id=-1,
                eos_id=-1,
                pad_id=-1,
                num_threads=1,
                input_sentence_size=0,
                shuffle_input_sentence=False,
                minloglevel=2,
            )
        except RuntimeError as e:
            found = re.search(r"required_chars\. (\d+) vs (\d+)", str(e))
            if not found:
                raise
            # required = distinct characters + word-boundary piece + <unk>
            minimum = int(found.group(2)) + _OFFSET
            raise ValueError(
                f"vocab_size={vocab_size} cannot hold the {minimum - 3} distinct characters "
                f"of the transcripts plus the word-boundary piece, <unk> and the CTC blank; "
                f"use vocab_size >= {minimum} (or normalise the text, e.g. lower-case it)"
            ) from None
        settings = dict(
            format=_FORMAT,
            requested_vocab_size=int(vocab_size),
            model_type=model_type,
            seed=int(seed),
            character_coverage=1.0,
            normalization=normalization,
            blank_id=BLANK_ID,
            id_offset=_OFFSET,
            num_train_texts=len(clean),
            sentencepiece_version=getattr(spm, "__version__", "unknown"),
        )
        tok = cls(model.getvalue(), settings)
        if tok.vocab_size < vocab_size:
            warnings.warn(
                f"tokenizer: the {len(clean)} transcripts support only {tok.vocab_size} "
                f"output classes (requested {vocab_size}); using {tok.vocab_size}. Set "
                f"the model's vocab_size to tokenizer.vocab_size.",
                stacklevel=2,
            )
        if out_dir is not None:
            tok.save(out_dir)
        return tok

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``tokenizer.model`` and ``tokenizer.json`` (settings) into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / _MODEL_FILE).write_bytes(self._proto)
        (out / _JSON_FILE).write_text(json.dumps(self.settings, indent=2, sort_keys=True) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Tokenizer:
        """Load a tokenizer written by :meth:`save`."""
        d = Path(directory)
        settings = json.loads((d / _JSON_FILE).read_text())
        if (
            settings.get("blank_id", BLANK_ID) != BLANK_ID
            or settings.get("id_offset", _OFFSET) != _OFFSET
        ):
            raise ValueError(f"{d / _JSON_FILE}: unsupported id convention {settings}")
        tok = cls((d / _MODEL_FILE).read_bytes(), settings)
        if "vocab_size" in settings and settings["vocab_size"] != tok.vocab_size:
            raise ValueError(
                f"{d}: tokenizer.json says vocab_size={settings['vocab_size']} "
                f"but tokenizer.model has {tok.vocab_size} classes"
            )
        return tok

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        """Number of CTC output classes, including the blank (id 0)."""
        return self._sp.get_piece_size() + _OFFSET

    @property
    def blank_id(self) -> int:
        return BLANK_ID

    @property
    def unk_id(self) -> int:
        return self._sp.unk_id() + _OFFSET

    @property
    def pieces(self) -> list[str]:
        """Piece of every id; id 0 is ``"<blank>"``."""
        return ["<blank>"] + [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]

    def id_to_piece(self, i: int) -> str:
        return "<blank>" if i == BLANK_ID else self._sp.id_to_piece(int(i) - _OFFSET)

    # ------------------------------------------------------------------ text <-> ids
    def normalize(self, text: str) -> str:
        """The text as the tokenizer sees it (what ``decode(encode(text))`` returns)."""
        return self._sp.normalize(text).replace("\u2581", " ").strip()

    def encode(self, text: str) -> list[int]:
        """Label ids for CTC (never 0); unseen characters become :attr:`unk_id`."""
        return [i + _OFFSET for i in self._sp.encode(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of label ids. Blanks (0) are dropped; CTC repeats must be collapsed first."""
        sp_ids = []
        for i in ids:
            i = int(i)
            if i == BLANK_ID:
                continue
            if not 0 < i < self.vocab_size:
                raise ValueError(f"id {i} out of range [0, {self.vocab_size})")
            sp_ids.append(i - _OFFSET)
        return self._sp.decode(sp_ids)

    def can_encode(self, text: str) -> tuple[bool, str]:
        """``(True, "")`` if ``text`` encodes without ``<unk>``; else False and why."""
        norm = self.normalize(text)
        if not norm:
            return False, "empty transcript after normalisation"
        if self._sp.unk_id() not in self._sp.encode(text):
            return True, ""
        unk = self._sp.unk_id()
        missing = sorted({c for c in norm if not c.isspace() and unk in self._sp.encode(c)})
        if not missing:
            return False, "part of the text maps to <unk>"
        return False, (
            "characters not in the tokenizer vocabulary (would map to <unk>): "
            + " ".join(repr(c) for c in missing)
        )

    def __repr__(self) -> str:
        return (
            f"Tokenizer(vocab_size={self.vocab_size}, "
            f"model_type={self.settings.get('model_type', '?')!r})"
        )
