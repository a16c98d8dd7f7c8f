"""From CTC logits to words, and how wrong they are: greedy decoding, WER and CER.

USM-Lite reports word error rate (section 4, Tables 1-3); we also report the character
error rate, which moves in smaller steps on a small test set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["greedy_decode", "wer_cer"]


def greedy_decode(logits: np.ndarray, mask: np.ndarray, blank: int = 0) -> list[list[int]]:
    """Best path decoding: argmax per frame, merge repeats, drop blanks.

    ``logits`` is ``(B, T, V)``, ``mask`` ``(B, T)`` marks real frames. Returns one list of
    token ids per utterance. A repeat separated by a blank stays two tokens (``a _ a``).
    """
    best = np.asarray(logits).argmax(-1)
    out = []
    for row, m in zip(best, np.asarray(mask)):
        row = row[m.astype(bool)]
        keep = np.ones(len(row), bool)
        keep[1:] = row[1:] != row[:-1]
        out.append([int(t) for t in row[keep] if t != blank])
    return out


def wer_cer(refs: Sequence[str], hyps: Sequence[str]) -> tuple[float, float]:
    """Corpus WER and CER in percent (jiwer: errors summed over the corpus, divided by the
    reference's words / characters). An empty reference counts as the word ``<empty>``."""
    import jiwer

    refs = [r if r.strip() else "<empty>" for r in refs]
    return 100.0 * jiwer.wer(list(refs), list(hyps)), 100.0 * jiwer.cer(list(refs), list(hyps))
