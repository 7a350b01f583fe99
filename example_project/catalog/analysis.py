"""The per-row CPU work of the example: keyword extraction and a scoring pass over a description.

Pure Python on purpose, like the formatting, permission and computed fields real serializers
spend their time in (a few hundred microseconds per row).
"""

import hashlib
import re
from collections import Counter

STOPWORDS = frozenset(
    "a an and are as at be by for from has in is it its of on or that the to was were will with this".split()
)
_WORD = re.compile(r"[a-z]+")


def word_counts(text: str) -> Counter[str]:
    """How often each non-stopword of three letters or more occurs in ``text``."""
    return Counter(w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 2)


def keywords(text: str, count: int = 5) -> list[str]:
    """The most frequent non-stopwords of ``text`` (ties broken alphabetically)."""
    words = word_counts(text)
    return [w for w, _ in sorted(words.items(), key=lambda item: (-item[1], item[0]))[:count]]


def quality_score(text: str, rounds: int = 400) -> int:
    """A deterministic 0-999 score mixing readability statistics and a hash chain."""
    sentences = max(1, text.count("."))
    words = text.split()
    syllables = sum(sum(1 for ch in w if ch in "aeiouy") or 1 for w in words)
    digest = text.encode()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    readability = 206.835 - 1.015 * (len(words) / sentences) - 84.6 * (syllables / max(1, len(words)))
    return (int(abs(readability) * 7) + digest[0] * 3) % 1000
