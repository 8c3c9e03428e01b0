from __future__ import annotations

import hashlib

import pytest
from cryptography.fernet import Fernet

from l1nda_sync.masking import Secret
from l1nda_sync.registry.crypto import TokenCipher, generate_key
from l1nda_sync.registry.errors import EncryptionKeyError

TOKEN = "9f86d081884c7d659a2feaa0c55ad015"


def test_round_trip_gives_a_secret_and_the_ciphertext_hides_the_token() -> None:
    cipher = TokenCipher([generate_key()])
    ciphertext = cipher.encrypt(Secret(TOKEN))
    assert TOKEN not in ciphertext
    plain = cipher.decrypt(ciphertext)
    assert isinstance(plain, Secret)
    assert plain.reveal() == TOKEN
    assert TOKEN not in repr(plain) + str(plain) + f"{plain}"


def test_no_key_names_the_variable_and_how_to_make_one() -> None:
    with pytest.raises(EncryptionKeyError) as err:
        TokenCipher([])
    assert "L1NDA_FERNET_KEYS" in str(err.value)
    assert "l1nda-sync keys generate" in str(err.value)
    with pytest.raises(EncryptionKeyError):
        TokenCipher(["", "  "])


def test_a_malformed_key_is_named_by_position_never_shown() -> None:
    good = generate_key()
    with pytest.raises(EncryptionKeyError) as err:
        TokenCipher([good, "not-a-key-at-all"])
    assert "key 2 of 2" in str(err.value)
    assert "not-a-key-at-all" not in str(err.value)
    assert good not in str(err.value)


def test_keys_stay_out_of_repr() -> None:
    key = generate_key()
    assert key not in repr(TokenCipher([key]))


def test_from_settings_reads_the_environment(fernet_keys: list[str]) -> None:
    cipher = TokenCipher.from_settings()
    assert Fernet(fernet_keys[0].encode()).decrypt(cipher.encrypt(TOKEN).encode()).decode() == TOKEN


def test_decrypting_without_the_right_key_says_how_to_recover() -> None:
    ciphertext = TokenCipher([generate_key()]).encrypt(TOKEN)
    with pytest.raises(EncryptionKeyError, match="add that key back") as err:
        TokenCipher([generate_key()]).decrypt(ciphertext)
    assert TOKEN not in str(err.value)


def test_older_keys_still_decrypt_and_rotate_moves_to_the_newest() -> None:
    old, new = generate_key(), generate_key()
    ciphertext = TokenCipher([old]).encrypt(TOKEN)
    both = TokenCipher([new, old])
    assert both.key_index(ciphertext) == 1
    rotated = both.rotate(ciphertext)
    assert both.key_index(rotated) == 0
    assert TokenCipher([new]).decrypt(rotated).reveal() == TOKEN


def test_fingerprint_ignores_login_case_and_spaces_but_not_the_token() -> None:
    cipher = TokenCipher([generate_key()])
    fp = cipher.fingerprint("Jan@Example.com", TOKEN)
    assert fp == cipher.fingerprint("  jan@example.COM ", Secret(TOKEN))
    assert fp != cipher.fingerprint("jan@example.com", TOKEN[:-1] + "0")
    assert fp != cipher.fingerprint("piet@example.com", TOKEN)
    # Keyed: not a plain hash anyone could recompute from a guessed token.
    assert fp != hashlib.sha256(f"jan@example.com\n{TOKEN}".encode()).hexdigest()


def test_fingerprints_differ_per_key_and_candidates_cover_every_key() -> None:
    old, new = generate_key(), generate_key()
    under_old = TokenCipher([old]).fingerprint("a@b.nl", TOKEN)
    under_new = TokenCipher([new]).fingerprint("a@b.nl", TOKEN)
    assert under_old != under_new
    assert TokenCipher([new, old]).fingerprint_candidates("a@b.nl", TOKEN) == [under_new, under_old]
    assert TokenCipher([new, old]).fingerprint("a@b.nl", TOKEN) == under_new
