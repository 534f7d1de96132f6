"""The key hierarchy of DESIGN §3: AES-GCM with associated data, HPKE key wraps, the server's
KEKs, Argon2id, recovery codes, and what the account services keep in the database."""

from __future__ import annotations

import base64
import re

import pytest
from conftest import PASSWORD, TEST_KDF
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlmodel import Session

from kapjournal import config, crypto, db
from kapjournal.models import User
from kapjournal.services import accounts

KEY = b"k" * 32
AD = {"p": "entry/body", "entry": "e-1", "v": 1, "author": "u-1", "patient": "u-1"}
# Hypothesis keeps no example database, so running the tests leaves nothing in the repo.
PROPERTY = settings(max_examples=30, deadline=None, database=None)


def _kek(byte: bytes) -> bytes:
    return byte * 32


def _kek_text(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()


# --- seal / open_sealed ---------------------------------------------------------------------


def test_sealed_blob_opens_with_its_key_and_context():
    blob = crypto.seal(KEY, b"what I noticed today", AD)
    assert b"what I noticed today" not in blob
    assert crypto.open_sealed(KEY, blob, dict(AD)) == b"what I noticed today"


def test_sealing_twice_gives_different_blobs():
    assert crypto.seal(KEY, b"same words", AD) != crypto.seal(KEY, b"same words", AD)


@pytest.mark.parametrize(
    "field, value", [("p", "annotation/note"), ("entry", "e-2"), ("v", 2), ("author", "u-2")]
)
def test_changed_associated_data_field_does_not_open(field, value):
    blob = crypto.seal(KEY, b"private words", AD)
    with pytest.raises(crypto.CryptoError) as caught:
        crypto.open_sealed(KEY, blob, {**AD, field: value})
    assert "private words" not in str(caught.value)


def test_extra_or_missing_associated_data_field_does_not_open():
    blob = crypto.seal(KEY, b"private words", AD)
    with pytest.raises(crypto.CryptoError):
        crypto.open_sealed(KEY, blob, {**AD, "reader": "u-3"})
    with pytest.raises(crypto.CryptoError):
        crypto.open_sealed(KEY, blob, {k: v for k, v in AD.items() if k != "patient"})


@pytest.mark.parametrize("position", [0, 11, 12, 20, -17, -1], ids=lambda p: f"byte{p}")
def test_flipped_bit_anywhere_in_blob_does_not_open(position):
    blob = bytearray(crypto.seal(KEY, b"private words, a little longer", AD))
    blob[position] ^= 0x01
    with pytest.raises(crypto.CryptoError):
        crypto.open_sealed(KEY, bytes(blob), AD)


def test_blob_moved_to_another_row_does_not_open():
    mine = crypto.seal(KEY, b"patient one's words", {**AD, "entry": "e-1"})
    theirs_ad = {**AD, "entry": "e-2"}
    crypto.seal(KEY, b"patient two's words", theirs_ad)
    with pytest.raises(crypto.CryptoError):
        crypto.open_sealed(KEY, mine, theirs_ad)


def test_wrong_key_does_not_open():
    blob = crypto.seal(KEY, b"private words", AD)
    with pytest.raises(crypto.CryptoError):
        crypto.open_sealed(b"j" * 32, blob, AD)


@pytest.mark.parametrize("cut", [1, 16, 27, 28, 1000], ids=lambda c: f"keep_len_minus_{c}")
def test_truncated_blob_does_not_open(cut):
    blob = crypto.seal(KEY, b"private words", AD)
    with pytest.raises(crypto.CryptoError):
        crypto.open_sealed(KEY, blob[: max(0, len(blob) - cut)], AD)


def test_empty_blob_does_not_open():
    with pytest.raises(crypto.CryptoError):
        crypto.open_sealed(KEY, b"", AD)


# --- property tests -------------------------------------------------------------------------


@PROPERTY
@given(plaintext=st.binary(min_size=0, max_size=64 * 1024))
def test_any_bytes_round_trip_through_seal(plaintext):
    assert crypto.open_sealed(KEY, crypto.seal(KEY, plaintext, AD), AD) == plaintext


@PROPERTY
@given(ad=st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=6))
def test_any_associated_data_round_trips_and_binds(ad):
    blob = crypto.seal(KEY, b"words", ad)
    assert crypto.open_sealed(KEY, blob, dict(ad)) == b"words"
    other = {**ad, "reader": "someone else"}
    assume(crypto.canonical_ad(other) != crypto.canonical_ad(ad))
    with pytest.raises(crypto.CryptoError):
        crypto.open_sealed(KEY, blob, other)


@PROPERTY
@given(words=st.text())
def test_any_unicode_text_round_trips_byte_for_byte(words):
    raw = words.encode("utf-8")
    opened = crypto.open_sealed(KEY, crypto.seal(KEY, raw, AD), AD)
    assert opened == raw
    assert opened.decode("utf-8") == words


# --- HPKE key wraps (ML-KEM-768 + X25519) ----------------------------------------------------

WRAP_AD = {"p": "grant", "entry": "e-1", "v": 1, "reader": "r-1"}


@pytest.fixture(scope="module")
def reader_keys():
    return crypto.generate_keypair()


def test_wrapped_data_key_unwraps_with_the_readers_private_key(reader_keys):
    private, public = reader_keys
    dek = crypto.random_key()
    wrapped = crypto.wrap_key(dek, public, WRAP_AD)
    assert len(wrapped) == 1168
    assert dek not in wrapped
    assert crypto.unwrap_key(wrapped, private, dict(WRAP_AD)) == dek


def test_two_wraps_of_the_same_key_differ(reader_keys):
    _, public = reader_keys
    dek = crypto.random_key()
    assert crypto.wrap_key(dek, public, WRAP_AD) != crypto.wrap_key(dek, public, WRAP_AD)


def test_another_users_private_key_cannot_unwrap(reader_keys):
    _, public = reader_keys
    other_private, _ = crypto.generate_keypair()
    wrapped = crypto.wrap_key(crypto.random_key(), public, WRAP_AD)
    with pytest.raises(crypto.CryptoError):
        crypto.unwrap_key(wrapped, other_private, WRAP_AD)


@pytest.mark.parametrize("field, value", [("reader", "r-2"), ("entry", "e-2"), ("v", 2)])
def test_wrap_does_not_unwrap_for_another_reader_entry_or_version(reader_keys, field, value):
    private, public = reader_keys
    wrapped = crypto.wrap_key(crypto.random_key(), public, WRAP_AD)
    with pytest.raises(crypto.CryptoError):
        crypto.unwrap_key(wrapped, private, {**WRAP_AD, field: value})


def test_tampered_or_truncated_wrap_does_not_unwrap(reader_keys):
    private, public = reader_keys
    wrapped = bytearray(crypto.wrap_key(crypto.random_key(), public, WRAP_AD))
    with pytest.raises(crypto.CryptoError):
        crypto.unwrap_key(bytes(wrapped[:-1]), private, WRAP_AD)
    wrapped[-1] ^= 0x01
    with pytest.raises(crypto.CryptoError):
        crypto.unwrap_key(bytes(wrapped), private, WRAP_AD)


def test_private_key_is_96_bytes_and_gives_back_its_public_key(reader_keys):
    private, public = reader_keys
    assert len(private) == 96
    assert len(public.mlkem) == 1184
    assert len(public.x25519) == 32
    assert crypto.public_key_of(private) == public


def test_private_key_of_the_wrong_length_is_refused(reader_keys):
    private, public = reader_keys
    wrapped = crypto.wrap_key(crypto.random_key(), public, WRAP_AD)
    with pytest.raises(crypto.CryptoError):
        crypto.unwrap_key(wrapped, private[:-1], WRAP_AD)


# --- the server's KEKs ----------------------------------------------------------------------


def test_keyring_seals_and_opens():
    ring = crypto.Keyring({"a": _kek(b"a")}, "a")
    blob = ring.seal(b"someone@example.org", {"p": "user/email", "user": "u-1"})
    assert b"someone@example.org" not in blob
    assert ring.kek_id_of(blob) == "a"
    assert ring.open(blob, {"p": "user/email", "user": "u-1"}) == b"someone@example.org"
    with pytest.raises(crypto.CryptoError):
        ring.open(blob, {"p": "user/email", "user": "u-2"})


def test_keyring_without_that_kek_cannot_open():
    blob = crypto.Keyring({"a": _kek(b"a")}, "a").seal(b"secret", {"p": "x"})
    with pytest.raises(crypto.CryptoError):
        crypto.Keyring({"b": _kek(b"b")}, "b").open(blob, {"p": "x"})


def test_keyring_with_the_same_id_but_another_key_cannot_open():
    blob = crypto.Keyring({"a": _kek(b"a")}, "a").seal(b"secret", {"p": "x"})
    with pytest.raises(crypto.CryptoError):
        crypto.Keyring({"a": _kek(b"z")}, "a").open(blob, {"p": "x"})


def test_reseal_moves_a_blob_to_the_active_kek():
    old = crypto.Keyring({"a": _kek(b"a")}, "a")
    blob = old.seal(b"secret", {"p": "x"})
    both = crypto.Keyring({"a": _kek(b"a"), "b": _kek(b"b")}, "b")
    moved = both.reseal(blob, {"p": "x"})
    assert both.kek_id_of(moved) == "b"
    assert both.reseal(moved, {"p": "x"}) == moved  # already there: unchanged
    only_new = crypto.Keyring({"b": _kek(b"b")}, "b")
    assert only_new.open(moved, {"p": "x"}) == b"secret"
    with pytest.raises(crypto.CryptoError):
        only_new.open(blob, {"p": "x"})


def test_reseal_with_the_wrong_context_fails():
    blob = crypto.Keyring({"a": _kek(b"a")}, "a").seal(b"secret", {"p": "x"})
    both = crypto.Keyring({"a": _kek(b"a"), "b": _kek(b"b")}, "b")
    with pytest.raises(crypto.CryptoError):
        both.reseal(blob, {"p": "y"})


def test_lookup_is_deterministic_and_depends_on_the_active_kek():
    a = crypto.Keyring({"a": _kek(b"a")}, "a")
    b = crypto.Keyring({"b": _kek(b"b")}, "b")
    assert a.lookup("pat@example.org") == a.lookup("pat@example.org")
    assert a.lookup("pat@example.org") == crypto.Keyring({"a": _kek(b"a")}, "a").lookup(
        "pat@example.org"
    )
    assert a.lookup("pat@example.org") != a.lookup("sam@example.org")
    assert a.lookup("pat@example.org") != b.lookup("pat@example.org")
    assert b"pat@example.org" not in a.lookup("pat@example.org")
    both = crypto.Keyring({"a": _kek(b"a"), "b": _kek(b"b")}, "b")
    assert both.lookup("pat@example.org") == b.lookup("pat@example.org")


def test_parse_keks_reads_ids_and_base64_keys():
    a, b = _kek(b"a"), _kek(b"b")
    unpadded = _kek_text(b).rstrip("=")
    keks = crypto.parse_keks(f"a:{_kek_text(a)}, b:{unpadded},")
    assert keks == {"a": a, "b": b}
    assert list(keks) == ["a", "b"]


def test_parse_keks_accepts_what_new_kek_text_makes():
    keks = crypto.parse_keks(f"k1:{crypto.new_kek_text()}")
    assert len(keks["k1"]) == 32


def test_keyring_rejects_a_16_byte_key():
    with pytest.raises(ValueError, match="32 bytes"):
        crypto.Keyring({"a": b"a" * 16}, "a")


def test_keyring_rejects_an_unknown_active_id():
    with pytest.raises(ValueError, match="active"):
        crypto.Keyring({"a": _kek(b"a")}, "b")


# --- Argon2id -------------------------------------------------------------------------------


def test_production_argon2id_parameters_match_the_design():
    # DESIGN §3: Argon2id, 16-byte salt, 64 MiB, t=3, lanes=1. The only test that pins them.
    assert crypto.PRODUCTION_KDF.memory_kib == 65536
    assert crypto.PRODUCTION_KDF.iterations == 3
    assert crypto.PRODUCTION_KDF.lanes == 1
    assert crypto.PRODUCTION_KDF.as_dict() == {"m": 65536, "t": 3, "p": 1}
    assert crypto.SALT_BYTES == 16
    assert len(crypto.new_salt()) == 16
    assert crypto.new_salt() != crypto.new_salt()


def test_production_config_uses_production_argon2id(tmp_path):
    assert config.defaults(tmp_path)["KDF_PARAMS"] == crypto.PRODUCTION_KDF


def test_kdf_params_round_trip_through_their_stored_form():
    assert crypto.KdfParams.from_dict(TEST_KDF.as_dict()) == TEST_KDF


def test_password_keys_are_deterministic_and_distinct():
    salt = b"s" * 16
    first = crypto.derive_password_keys(PASSWORD, salt, TEST_KDF)
    again = crypto.derive_password_keys(PASSWORD, salt, TEST_KDF)
    assert first == again
    assert first.wrap != first.auth
    assert len(first.wrap) == len(first.auth) == 32


def test_password_keys_differ_with_salt_password_or_cost():
    salt = b"s" * 16
    base = crypto.derive_password_keys(PASSWORD, salt, TEST_KDF)
    assert crypto.derive_password_keys(PASSWORD, b"t" * 16, TEST_KDF).wrap != base.wrap
    assert crypto.derive_password_keys(PASSWORD + "!", salt, TEST_KDF).wrap != base.wrap
    costlier = crypto.KdfParams(memory_kib=2048, iterations=1, lanes=1)
    assert crypto.derive_password_keys(PASSWORD, salt, costlier).wrap != base.wrap


def test_verifier_matches_only_the_auth_key():
    keys = crypto.derive_password_keys(PASSWORD, b"s" * 16, TEST_KDF)
    stored = crypto.auth_verifier(keys.auth)
    assert stored != keys.auth
    assert crypto.verifier_matches(keys.auth, stored)
    assert not crypto.verifier_matches(keys.wrap, stored)
    wrong = crypto.derive_password_keys("not the password at all", b"s" * 16, TEST_KDF)
    assert not crypto.verifier_matches(wrong.auth, stored)


# --- recovery codes -------------------------------------------------------------------------

_CODE = re.compile(r"^[A-Z2-7]{4}(-[A-Z2-7]{4}){7}$")


def test_recovery_code_is_eight_groups_of_four_base32_characters():
    code = crypto.new_recovery_code()
    assert _CODE.match(code), code
    assert len(base64.b32decode(code.replace("-", ""))) * 8 == 160
    assert crypto.new_recovery_code() != code


def test_recovery_key_forgives_case_spaces_and_missing_dashes():
    code = crypto.new_recovery_code()
    key = crypto.recovery_key(code)
    assert len(key) == 32
    assert crypto.recovery_key(code.lower()) == key
    assert crypto.recovery_key(code.replace("-", "")) == key
    assert crypto.recovery_key(" " + code.replace("-", " ") + "\n") == key
    assert crypto.recovery_key(code.lower().replace("-", " ")) == key


def test_different_recovery_codes_give_different_keys():
    assert crypto.recovery_key(crypto.new_recovery_code()) != crypto.recovery_key(
        crypto.new_recovery_code()
    )


@pytest.mark.parametrize(
    "code",
    [
        "",
        "----",
        "ABCD-EFGH",  # too short
        "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ23-4567-ABCD",  # a group too many
        "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ23-4569",  # 9 is not base32
        "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ23-456",  # a character short
    ],
)
def test_malformed_recovery_code_is_refused(code):
    with pytest.raises(crypto.CryptoError):
        crypto.recovery_key(code)


# --- the key hierarchy through the account services -------------------------------------------

ALICE = {"email": "Alice.Marlow@example.org", "name": "Alice Quintessa Marlow"}
BOB = {"email": "bob.tennant@example.org", "name": "Bob Tennant"}
ALICE_PASSWORD = "ferns under the quiet bridge"
_SECRET_COLUMNS = ("email_enc", "name_enc", "private_wrapped", "recovery_wrapped", "verifier_enc")


def _register(dbs, who: dict, password: str = PASSWORD, role: str = "patient"):
    registered = accounts.register(
        session=dbs, password=password, password2=password, role=role, **who
    )
    dbs.commit()
    return registered


def _encodings(secret: str) -> list[bytes]:
    """The ways a secret could show up in a column: plain, case-folded, UTF-16, base64."""
    raw = secret.encode()
    forms = [
        raw,
        secret.casefold().encode(),
        secret.encode("utf-16-le"),
        secret.encode("utf-16-be"),
    ]
    for shift in range(3):  # base64 of the secret at every alignment inside a longer value
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms.append(encode(b"\0" * shift + raw)[4:-4])
    return forms


def _stored_row(dbs, user_id) -> dict:
    """The secret columns as the database holds them (a Core query, past the ORM)."""
    table = User.__table__
    query = select(*(table.c[name] for name in _SECRET_COLUMNS)).where(table.c.id == user_id)
    row = dbs.connection().execute(query).one()
    return {name: bytes(value) for name, value in zip(_SECRET_COLUMNS, row, strict=True)}


def test_stored_columns_hold_no_email_name_or_password(app, dbs):
    registered = _register(dbs, ALICE, password=ALICE_PASSWORD)
    stored = _stored_row(dbs, registered.user.id)
    assert all(stored.values())
    for secret in (ALICE["email"], ALICE["name"], ALICE_PASSWORD, registered.recovery_code):
        for form in _encodings(secret):
            for column, value in stored.items():
                assert form not in value, f"{column} holds {secret!r} as {form!r}"


def test_stored_private_key_is_wrapped_twice(app, dbs):
    registered = _register(dbs, ALICE, password=ALICE_PASSWORD)
    stored = _stored_row(dbs, registered.user.id)
    assert registered.private_key not in stored["private_wrapped"]
    assert registered.private_key not in stored["recovery_wrapped"]
    # Opening the server layer alone still leaves the password layer around the key.
    inner = accounts.keyring().open(
        stored["private_wrapped"], {"p": "private/password/kek", "user": str(registered.user.id)}
    )
    assert registered.private_key not in inner


def test_login_unlocks_the_registered_private_key(app, dbs):
    registered = _register(dbs, ALICE, password=ALICE_PASSWORD)
    user, private = accounts.authenticate(
        session=dbs, email=ALICE["email"].upper(), password=ALICE_PASSWORD
    )
    assert user.id == registered.user.id
    assert private == registered.private_key
    assert crypto.public_key_of(private) == accounts.public_key(user)


def test_wrong_password_or_unknown_email_does_not_log_in(app, dbs):
    _register(dbs, ALICE, password=ALICE_PASSWORD)
    assert accounts.authenticate(session=dbs, email=ALICE["email"], password=PASSWORD) is None
    assert (
        accounts.authenticate(session=dbs, email="nobody@example.org", password=ALICE_PASSWORD)
        is None
    )


def test_swapped_private_keys_make_both_logins_fail_loudly(app, dbs):
    alice = _register(dbs, ALICE, password=ALICE_PASSWORD)
    bob = _register(dbs, BOB)
    a, b = dbs.get(User, alice.user.id), dbs.get(User, bob.user.id)
    a.private_wrapped, b.private_wrapped = b.private_wrapped, a.private_wrapped
    dbs.add_all([a, b])
    dbs.commit()
    # The KEK layer's associated data names the user, so a moved blob raises instead of
    # handing anyone a key (never the other user's).
    with pytest.raises(crypto.CryptoError):
        accounts.authenticate(session=dbs, email=ALICE["email"], password=ALICE_PASSWORD)
    with pytest.raises(crypto.CryptoError):
        accounts.authenticate(session=dbs, email=BOB["email"], password=PASSWORD)


def test_swapped_emails_do_not_open(app, dbs):
    alice = _register(dbs, ALICE, password=ALICE_PASSWORD)
    bob = _register(dbs, BOB)
    a, b = dbs.get(User, alice.user.id), dbs.get(User, bob.user.id)
    a.email_enc, b.email_enc = b.email_enc, a.email_enc
    with pytest.raises(crypto.CryptoError):
        accounts.email_of(a)
    with pytest.raises(crypto.CryptoError):
        accounts.email_of(b)
    dbs.rollback()


def test_recovery_code_unlocks_the_same_private_key_as_the_password(app, dbs):
    registered = _register(dbs, ALICE, password=ALICE_PASSWORD)
    _, by_password = accounts.authenticate(
        session=dbs, email=ALICE["email"], password=ALICE_PASSWORD
    )
    assert accounts.recovery_code_matches(user=registered.user, code=registered.recovery_code)
    new_password = "a brand new passphrase here"
    user, by_code, new_code = accounts.reset_with_recovery_code(
        session=dbs,
        email=ALICE["email"],
        code=registered.recovery_code.lower().replace("-", " "),
        new=new_password,
        new2=new_password,
    )
    dbs.commit()
    assert crypto.public_key_of(by_code) == crypto.public_key_of(by_password)
    assert by_code == by_password
    assert new_code != registered.recovery_code
    assert not accounts.recovery_code_matches(user=user, code=registered.recovery_code)
    _, after_reset = accounts.authenticate(session=dbs, email=ALICE["email"], password=new_password)
    assert after_reset == by_password


def test_another_users_recovery_code_does_not_unlock(app, dbs):
    alice = _register(dbs, ALICE, password=ALICE_PASSWORD)
    bob = _register(dbs, BOB)
    assert not accounts.recovery_code_matches(user=alice.user, code=bob.recovery_code)
    with pytest.raises(accounts.ValidationError) as caught:
        accounts.reset_with_recovery_code(
            session=dbs, email=ALICE["email"], code=bob.recovery_code, new="x" * 3, new2="x" * 3
        )
    assert "code" in caught.value.errors


def test_registration_stores_production_argon2id_cost(make_app):
    app = make_app(KDF_PARAMS=crypto.PRODUCTION_KDF)
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as dbs:
        registered = _register(dbs, ALICE, password=ALICE_PASSWORD)
        assert registered.user.kdf_params == {"m": 65536, "t": 3, "p": 1}
        assert len(registered.user.kdf_salt) == 16


def test_login_raises_a_cheaper_stored_cost_to_production(make_app):
    cheap = make_app()
    with cheap.app_context(), Session(db.engine(), expire_on_commit=False) as dbs:
        registered = _register(dbs, ALICE, password=ALICE_PASSWORD)
        old_salt = registered.user.kdf_salt
    production = make_app(KDF_PARAMS=crypto.PRODUCTION_KDF)
    with production.app_context(), Session(db.engine(), expire_on_commit=False) as dbs:
        user, private = accounts.authenticate(
            session=dbs, email=ALICE["email"], password=ALICE_PASSWORD
        )
        dbs.commit()
        assert private == registered.private_key
        stored = dbs.get(User, user.id)
        dbs.refresh(stored)
        assert stored.kdf_params == crypto.PRODUCTION_KDF.as_dict()
        assert stored.kdf_salt != old_salt
