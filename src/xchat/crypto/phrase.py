"""BIP-39 recovery phrases: generation, validation with precise errors, and seeds.

The word list, checksum and PBKDF2 seed come from Trezor's reference ``mnemonic``
package; this module adds what a person needs when typing a phrase back in: the
position and text of a word that is not in the list (with close matches), or a
plain statement that the checksum failed.

Spec: https://github.com/bitcoin/bips/blob/master/bip-0039.mediawiki
"""

from __future__ import annotations

import difflib
import unicodedata
from functools import cache
from typing import Final

from mnemonic import Mnemonic

from xchat.crypto.keys import Rng
from xchat.errors import InvalidInput

__all__ = ["WORD_COUNTS", "generate_phrase", "normalize_phrase", "phrase_to_seed"]

#: Phrase lengths BIP-39 defines; X Chat creates 12 (default) or 24.
WORD_COUNTS: Final = (12, 15, 18, 21, 24)


@cache
def _english() -> Mnemonic:
    return Mnemonic("english")


def generate_phrase(rng: Rng, words: int = 12) -> str:
    """A new English phrase of ``words`` words from ``words * 32 / 3`` bits of ``rng``."""
    if words not in WORD_COUNTS:
        raise InvalidInput(f"a recovery phrase has 12, 15, 18, 21 or 24 words, not {words}")
    return str(_english().to_mnemonic(rng(words * 4 // 3)))


def normalize_phrase(text: str) -> str:
    """Check a typed phrase and return it in canonical form (lowercase, single spaces).

    Raises :class:`InvalidInput` naming the first word that is not in the BIP-39
    English list (with suggestions), a wrong word count, or a failed checksum.
    """
    words = unicodedata.normalize("NFKD", text).lower().split()
    wordlist = _english().wordlist
    known = set(wordlist)
    for index, word in enumerate(words, start=1):
        if word not in known:
            close = difflib.get_close_matches(word, wordlist, n=3, cutoff=0.75)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise InvalidInput(
                f"word {index} of the recovery phrase, {word!r}, is not in the BIP-39 "
                f"English word list{hint}"
            )
    if len(words) not in WORD_COUNTS:
        raise InvalidInput(
            f"a recovery phrase has 12, 15, 18, 21 or 24 words; this one has {len(words)}"
        )
    phrase = " ".join(words)
    if not _english().check(phrase):
        raise InvalidInput(
            "every word is in the BIP-39 list, but the phrase's checksum does not match: "
            "a word is wrong or two are swapped"
        )
    return phrase


def phrase_to_seed(phrase: str, passphrase: str = "") -> bytes:
    """The 64-byte BIP-39 seed (PBKDF2-HMAC-SHA512, 2048 rounds) of a checked phrase."""
    return bytes(Mnemonic.to_seed(normalize_phrase(phrase), passphrase))
