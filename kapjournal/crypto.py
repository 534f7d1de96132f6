"""Every cryptographic operation of kapjournal, and the only importer of `cryptography`.

The key hierarchy is DESIGN.md §3: a password (through Argon2id) unwraps a user's hybrid
ML-KEM-768 + X25519 private key; per-item data keys (DEKs) are wrapped to readers' public
keys with HPKE; everything at rest is AES-256-GCM with associated data that binds a blob to
the row it belongs to, so a blob moved to another row fails to open instead of showing
someone else's words. The server's key-encryption keys (KEKs) add an outer layer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
SALT_BYTES = 16
MLKEM_SEED_BYTES = 64
X25519_BYTES = 32
PRIVATE_KEY_BYTES = MLKEM_SEED_BYTES + X25519_BYTES
RECOVERY_CODE_BYTES = 20  # 160 bits

_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


class CryptoError(Exception):
    """A ciphertext did not open: wrong key, or a blob that was altered or moved.

    The message never contains plaintext or key material.
    """


# --- small helpers -----------------------------------------------------------------------


_AD_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def canonical_ad(ad: dict) -> bytes:
    """Associated data as canonical JSON: the same dict always gives the same bytes."""
    return _AD_JSON.encode({"fmt": FORMAT_VERSION, **ad}).encode()


def _hkdf(key: bytes, label: str, length: int = KEY_BYTES) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=label.encode()).derive(
        key
    )


def random_key() -> bytes:
    """A fresh 256-bit key (data key, session key)."""
    return os.urandom(KEY_BYTES)


def new_token() -> str:
    """A random, URL-safe single-use token (invitation, session id)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    """What the database keeps of a token: its SHA-256."""
    return hashlib.sha256(token.encode()).digest()


# --- AES-256-GCM with associated data ---------------------------------------------------


def seal(key: bytes, plaintext: bytes, ad: dict) -> bytes:
    """Encrypt under `key` with a fresh random nonce; the blob is nonce || ciphertext."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, canonical_ad(ad))


def open_sealed(key: bytes, blob: bytes, ad: dict) -> bytes:
    """Decrypt a blob made by `seal`; raise CryptoError if key, blob or AD do not match."""
    if len(blob) < NONCE_BYTES + 16:
        raise CryptoError("ciphertext too short")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], canonical_ad(ad))
    except InvalidTag:
        raise CryptoError("ciphertext does not open with this key and context") from None


# --- passwords ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost, stored per user so it can be raised later (upgraded at login)."""

    memory_kib: int = 65536
    iterations: int = 3
    lanes: int = 1

    def as_dict(self) -> dict:
        return {"m": self.memory_kib, "t": self.iterations, "p": self.lanes}

    @classmethod
    def from_dict(cls, data: dict) -> KdfParams:
        return cls(memory_kib=data["m"], iterations=data["t"], lanes=data["p"])


PRODUCTION_KDF = KdfParams()


@dataclass(frozen=True)
class PasswordKeys:
    wrap: bytes  # wraps the private key
    auth: bytes  # proves the password; the server keeps only a hash of it


# Argon2id at 64 MiB is the most expensive thing the server does; cap how many run at once so
# a burst of logins cannot exhaust memory or starve page requests.
_argon2_slots = threading.BoundedSemaphore(2)


def set_argon2_concurrency(limit: int) -> None:
    """Allow at most `limit` Argon2id runs at once in this process."""
    global _argon2_slots
    _argon2_slots = threading.BoundedSemaphore(max(1, limit))


def new_salt() -> bytes:
    return os.urandom(SALT_BYTES)


def derive_password_keys(password: str, salt: bytes, params: KdfParams) -> PasswordKeys:
    """One Argon2id run gives both the wrapping key and the authentication key."""
    with _argon2_slots:
        master = Argon2id(
            salt=salt,
            length=KEY_BYTES,
            iterations=params.iterations,
            lanes=params.lanes,
            memory_cost=params.memory_kib,
        ).derive(password.encode("utf-8"))
    return PasswordKeys(
        wrap=_hkdf(master, "kapjournal/v1/wrap"), auth=_hkdf(master, "kapjournal/v1/auth")
    )


def auth_verifier(auth_key: bytes) -> bytes:
    """The value the server stores (under the KEK) to check a password."""
    return hashlib.sha256(b"kapjournal/v1/verifier" + auth_key).digest()


def verifier_matches(auth_key: bytes, stored: bytes) -> bool:
    return hmac.compare_digest(auth_verifier(auth_key), stored)


# --- recovery codes ---------------------------------------------------------------------------


def new_recovery_code() -> str:
    """160 random bits as eight groups of four base32 characters (easy to copy by hand)."""
    text = base64.b32encode(os.urandom(RECOVERY_CODE_BYTES)).decode()
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def recovery_key(code: str) -> bytes:
    """The key a recovery code stands for; CryptoError if the code is malformed."""
    cleaned = "".join(ch for ch in code.upper() if ch.isalnum())
    cleaned = cleaned.replace("0", "O").replace("1", "I").replace("8", "B")
    try:
        raw = base64.b32decode(cleaned)
    except (ValueError, base64.binascii.Error):
        raise CryptoError("malformed recovery code") from None
    if len(raw) != RECOVERY_CODE_BYTES:
        raise CryptoError("malformed recovery code")
    return _hkdf(raw, "kapjournal/v1/recovery")


# --- user key pairs and key wrapping (HPKE, ML-KEM-768 + X25519) -------------------------


@dataclass(frozen=True)
class PublicKey:
    mlkem: bytes  # 1,184 bytes
    x25519: bytes  # 32 bytes


def generate_keypair() -> tuple[bytes, PublicKey]:
    """A new hybrid key pair: (private key bytes, public key). Private = ML-KEM seed || X25519."""
    kem = mlkem.MLKEM768PrivateKey.generate()
    dh = x25519.X25519PrivateKey.generate()
    private = kem.private_bytes_raw() + dh.private_bytes_raw()
    public = PublicKey(
        mlkem=kem.public_key().public_bytes_raw(), x25519=dh.public_key().public_bytes_raw()
    )
    return private, public


def public_key_of(private: bytes) -> PublicKey:
    kem, dh = _private_parts(private)
    return PublicKey(
        mlkem=kem.public_key().public_bytes_raw(), x25519=dh.public_key().public_bytes_raw()
    )


def _private_parts(private: bytes):
    if len(private) != PRIVATE_KEY_BYTES:
        raise CryptoError("private key has the wrong length")
    kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(private[:MLKEM_SEED_BYTES])
    dh = x25519.X25519PrivateKey.from_private_bytes(private[MLKEM_SEED_BYTES:])
    return kem, dh


def wrap_key(key: bytes, public: PublicKey, ad: dict) -> bytes:
    """Wrap a data key to a reader's public key; `ad` binds item, version and reader."""
    recipient = hpke.MLKEM768X25519PublicKey(
        mlkem.MLKEM768PublicKey.from_public_bytes(public.mlkem),
        x25519.X25519PublicKey.from_public_bytes(public.x25519),
    )
    return _SUITE.encrypt(key, recipient, info=canonical_ad(ad))


def load_private(private: bytes):
    """The HPKE private key object for raw private-key bytes. Loading expands the ML-KEM
    seed, which costs about as much as an unwrap: load once per request, unwrap many."""
    kem, dh = _private_parts(private)
    return hpke.MLKEM768X25519PrivateKey(kem, dh)


def unwrap_key(wrapped: bytes, private, ad: dict) -> bytes:
    """Open a wrap made by `wrap_key` with the reader's private key (raw bytes, or loaded
    with `load_private`); CryptoError on mismatch."""
    key = load_private(private) if isinstance(private, bytes) else private
    try:
        return _SUITE.decrypt(wrapped, key, info=canonical_ad(ad))
    except Exception:  # cryptography raises several types for a bad wrap; all mean "no"
        raise CryptoError("key wrap does not open with this key and context") from None


# --- the server's key-encryption keys -----------------------------------------------------------


class Keyring:
    """Versioned server KEKs: the outer layer on every secret at rest, and keyed lookups.

    Outer blobs are `len(id) || id || nonce || ciphertext`, so any configured KEK can open
    what it sealed and `keys rotate` can move everything to the active one.
    """

    def __init__(self, keks: dict[str, bytes], active: str):
        if active not in keks:
            raise ValueError(f"the active KEK id {active!r} is not among the configured KEKs")
        for kid, key in keks.items():
            if len(key) != KEY_BYTES or not kid.isascii() or not 0 < len(kid) < 64:
                raise ValueError(f"KEK {kid!r} must be 32 bytes with a short ASCII id")
        self._seal_keys = {kid: _hkdf(key, "kapjournal/v1/kek-seal") for kid, key in keks.items()}
        self.active = active
        self._lookup_key = _hkdf(keks[active], "kapjournal/v1/email-lookup")
        self._audit_keys = {kid: _hkdf(key, "kapjournal/v1/audit") for kid, key in keks.items()}

    def seal(self, plaintext: bytes, ad: dict) -> bytes:
        kid = self.active.encode()
        return bytes([len(kid)]) + kid + seal(self._seal_keys[self.active], plaintext, ad)

    def kek_id_of(self, blob: bytes) -> str:
        return blob[1 : 1 + blob[0]].decode(errors="replace")

    def has(self, kid: str) -> bool:
        """Whether a KEK of this id is configured (so what it sealed can be opened)."""
        return kid in self._seal_keys

    def open(self, blob: bytes, ad: dict) -> bytes:
        if not blob:
            raise CryptoError("empty blob")
        kid = self.kek_id_of(blob)
        key = self._seal_keys.get(kid)
        if key is None:
            raise CryptoError(f"blob sealed under KEK {kid!r}, which is not configured")
        return open_sealed(key, blob[1 + blob[0] :], ad)

    def reseal(self, blob: bytes, ad: dict) -> bytes:
        """The same plaintext under the active KEK (unchanged if already there)."""
        if self.kek_id_of(blob) == self.active:
            return blob
        return self.seal(self.open(blob, ad), ad)

    def lookup(self, value: str) -> bytes:
        """Keyed hash for finding a row by a secret value (an email) without storing it."""
        return hmac.new(self._lookup_key, value.encode(), hashlib.sha256).digest()

    def audit_mac(self, kid: str, message: bytes) -> bytes:
        return hmac.new(self._audit_keys[kid], message, hashlib.sha256).digest()


def parse_keks(spec: str) -> dict[str, bytes]:
    """Parse `id:base64key,id:base64key` (KAPJOURNAL_KEKS) into a dict."""
    keks: dict[str, bytes] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kid, _, b64 = part.partition(":")
        try:
            keks[kid] = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
        except ValueError:
            raise ValueError(f"KEK {kid!r} is not valid base64") from None
    return keks


def new_kek_text() -> str:
    """A fresh KEK, base64 for the environment."""
    return base64.urlsafe_b64encode(random_key()).decode().rstrip("=")


def check_available() -> None:
    """Refuse to run on a `cryptography` without Argon2id or ML-KEM (DESIGN §3)."""
    try:
        Argon2id(salt=b"0" * 16, length=32, iterations=1, lanes=1, memory_cost=8).derive(b"x")
        private, public = generate_keypair()
        unwrap_key(wrap_key(b"k" * 32, public, {"p": "check"}), private, {"p": "check"})
    except (UnsupportedAlgorithm, AttributeError, ImportError) as exc:
        raise RuntimeError(
            "kapjournal needs Argon2id and ML-KEM-768 from the `cryptography` package "
            "(version 50 or newer, with its bundled OpenSSL); install requirements.txt "
            f"into a fresh virtual environment. ({exc})"
        ) from exc
