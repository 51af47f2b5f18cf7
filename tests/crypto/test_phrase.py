"""BIP-39 recovery phrases: Trezor's reference vectors, the errors a person sees, generation."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mnemonic import Mnemonic

from xchat.crypto import phrase
from xchat.errors import InvalidInput

VECTORS_PATH = Path(__file__).parent.parent / "vectors" / "bip39.json"
BIP39: dict[str, Any] = json.loads(VECTORS_PATH.read_bytes())
VECTORS: list[dict[str, str]] = BIP39["vectors"]
WORDLIST: list[str] = Mnemonic("english").wordlist

ABANDON = " ".join(["abandon"] * 11 + ["about"])  # entropy 00…00
LEGAL = "legal winner thank year wave sausage worth useful legal winner thank yellow"


def vector_id(vector: dict[str, str]) -> str:
    return f"{vector['entropy'][:8]}-{len(vector['mnemonic'].split())}w"


def test_vectors_file() -> None:
    assert "trezor/python-mnemonic" in BIP39["source"]
    assert BIP39["passphrase"] == "TREZOR"
    assert len(VECTORS) == 24
    # The two rows this project trusted before the file was imported.
    assert VECTORS[0]["mnemonic"] == ABANDON
    assert VECTORS[0]["seed"].startswith("c55257c360c07c72029aebc1b53c05ed")
    assert VECTORS[1]["mnemonic"] == LEGAL
    assert VECTORS[1]["seed"].startswith("2e8905819b8723fe2c1d161860e5ee18")


@pytest.mark.parametrize("vector", VECTORS, ids=vector_id)
def test_trezor_vectors(vector: dict[str, str]) -> None:
    entropy = bytes.fromhex(vector["entropy"])
    assert Mnemonic("english").to_mnemonic(entropy) == vector["mnemonic"]
    assert phrase.normalize_phrase(vector["mnemonic"]) == vector["mnemonic"]
    seed = phrase.phrase_to_seed(vector["mnemonic"], BIP39["passphrase"])
    assert seed.hex() == vector["seed"]
    # The same phrase as a person might type it gives the same seed.
    typed = "\t" + "  ".join(vector["mnemonic"].upper().split()) + " \n"
    assert phrase.phrase_to_seed(typed, "TREZOR") == seed


def test_passphrase_changes_the_seed() -> None:
    assert phrase.phrase_to_seed(ABANDON, "TREZOR").hex() == VECTORS[0]["seed"]
    assert phrase.phrase_to_seed(ABANDON) != phrase.phrase_to_seed(ABANDON, "TREZOR")
    # BIP-39's empty-passphrase seed of the all-zero entropy phrase.
    assert (
        phrase.phrase_to_seed(ABANDON).hex().startswith("5eb00bbddcf069084889a8ab9155568165f5c453")
    )


def test_phrase_to_seed_checks_the_phrase() -> None:
    with pytest.raises(InvalidInput, match="checksum"):
        phrase.phrase_to_seed(" ".join(["abandon"] * 12))


# --- normalization ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        ABANDON.upper(),
        ABANDON.title(),
        "  " + ABANDON + "  ",
        ABANDON.replace(" ", "   "),
        ABANDON.replace(" ", "\n"),
        ABANDON.replace(" ", "\t "),
        ABANDON.replace(" ", "\u00a0"),  # no-break space, as pasted from a web page
        ABANDON.replace(
            "abandon", "\uff41\uff42\uff41\uff4e\uff44\uff4f\uff4e"
        ),  # fullwidth letters, NFKD-folded
    ],
    ids=["upper", "title", "padded", "spaces", "newlines", "tabs", "nbsp", "fullwidth"],
)
def test_normalize_phrase(typed: str) -> None:
    assert phrase.normalize_phrase(typed) == ABANDON


# --- errors a person sees -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "position", "word", "suggestion"),
    [
        (ABANDON.replace("about", "abuot"), 12, "abuot", "about"),
        ("abandn" + ABANDON[len("abandon") :], 1, "abandn", "abandon"),
        (LEGAL.replace("sausage", "sausag"), 6, "sausag", "sausage"),
        (LEGAL.replace("thank", "thnak", 1), 3, "thnak", "thank"),
    ],
)
def test_misspelled_word_is_named_with_suggestions(
    typed: str, position: int, word: str, suggestion: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        phrase.normalize_phrase(typed)
    message = str(info.value)
    assert f"word {position} " in message
    assert repr(word) in message
    assert "did you mean" in message
    assert repr(suggestion) in message
    assert typed not in message


def test_unknown_word_without_close_matches() -> None:
    with pytest.raises(InvalidInput) as info:
        phrase.normalize_phrase(ABANDON.replace("about", "xyzzy"))
    assert "word 12 " in str(info.value)
    assert "'xyzzy'" in str(info.value)
    assert "did you mean" not in str(info.value)


def test_first_unknown_word_is_reported() -> None:
    words = ABANDON.split()
    words[3], words[7] = "abandoon", "qqqq"
    with pytest.raises(InvalidInput, match=r"word 4 .*'abandoon'"):
        phrase.normalize_phrase(" ".join(words))


def test_unknown_word_is_reported_before_the_word_count() -> None:
    # A person who mistyped a word in a short phrase learns about the word first.
    with pytest.raises(InvalidInput, match="word 2 "):
        phrase.normalize_phrase("abandon abandn about")


@pytest.mark.parametrize("count", [0, 1, 11, 13, 14, 23, 25, 48])
def test_wrong_word_count(count: int) -> None:
    with pytest.raises(InvalidInput, match=f"12, 15, 18, 21 or 24 words; this one has {count}$"):
        phrase.normalize_phrase(" ".join(["abandon"] * count))


@pytest.mark.parametrize(
    "typed",
    [
        " ".join(["abandon"] * 12),
        ABANDON.replace("about", "zoo"),
        # Two words swapped.
        "legal winner thank year wave sausage worth useful legal winner yellow thank",
        " ".join(["zoo"] * 24),
    ],
)
def test_bad_checksum(typed: str) -> None:
    with pytest.raises(InvalidInput) as info:
        phrase.normalize_phrase(typed)
    assert "checksum" in str(info.value)
    assert "every word is in the BIP-39 list" in str(info.value)


@given(entropy=st.binary(min_size=16, max_size=16), data=st.data())
def test_any_single_word_change_is_caught_or_valid(entropy: bytes, data: st.DataObject) -> None:
    """Replacing one word gives InvalidInput unless the checksum happens to match (1 in 16)."""
    words = Mnemonic("english").to_mnemonic(entropy).split()
    index = data.draw(st.integers(min_value=0, max_value=11), label="index")
    words[index] = data.draw(st.sampled_from(WORDLIST).filter(lambda w: w != words[index]))
    changed = " ".join(words)
    if Mnemonic("english").check(changed):
        assert phrase.normalize_phrase(changed) == changed
    else:
        with pytest.raises(InvalidInput):
            phrase.normalize_phrase(changed)


@given(text=st.text(max_size=200))
def test_arbitrary_text_raises_only_invalid_input(text: str) -> None:
    try:
        result = phrase.normalize_phrase(text)
    except InvalidInput:
        return
    assert Mnemonic("english").check(result)


# --- generation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("words", [12, 24])
def test_generate_phrase_is_deterministic_and_valid(words: int) -> None:
    first = phrase.generate_phrase(random.Random(2024).randbytes, words)
    second = phrase.generate_phrase(random.Random(2024).randbytes, words)
    assert first == second
    assert len(first.split()) == words
    assert phrase.normalize_phrase(first) == first
    assert first != phrase.generate_phrase(random.Random(2025).randbytes, words)


def test_generate_phrase_uses_the_rng_bytes_as_entropy() -> None:
    requests: list[int] = []

    def rng(n: int) -> bytes:
        requests.append(n)
        return bytes(n)

    assert phrase.generate_phrase(rng) == ABANDON
    assert phrase.generate_phrase(rng, 24).split()[-1] == "art"
    assert requests == [16, 32]


@pytest.mark.parametrize("words", phrase.WORD_COUNTS)
def test_generate_every_bip39_length(words: int) -> None:
    text = phrase.generate_phrase(random.Random(words).randbytes, words)
    assert len(text.split()) == words
    assert phrase.normalize_phrase(text) == text


@pytest.mark.parametrize("words", [0, 1, 11, 13, 25, -12])
def test_generate_rejects_other_lengths(words: int) -> None:
    with pytest.raises(InvalidInput, match=f"not {words}$"):
        phrase.generate_phrase(random.Random(0).randbytes, words)


@settings(max_examples=30)
@given(seed=st.integers(min_value=0, max_value=2**64), words=st.sampled_from([12, 24]))
def test_generated_phrases_round_trip(seed: int, words: int) -> None:
    text = phrase.generate_phrase(random.Random(seed).randbytes, words)
    assert phrase.normalize_phrase(text.upper()) == text
