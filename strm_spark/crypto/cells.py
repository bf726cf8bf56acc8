"""Tink deterministic AEAD (AES256-SIV) keysets and cell encryption, STRM-compatible.

A PII cell becomes standard padded base64 of Tink's output (0x01 || key id || SIV || ct)
under empty associated data, exactly as STRM wrote it. Keysets travel as Tink JSON bytes
(or, with a master key, as Tink encrypted keysets bound to their key link; see masterkey.py);
primitives are built on the worker and cached per keyset (Tink handles do not pickle).
"""

from __future__ import annotations

import base64
import binascii
import functools
import secrets
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import tink
from tink import daead, secret_key_access

from strm_spark.errors import CryptoError

if TYPE_CHECKING:
    from strm_spark.crypto.envelope import MasterKey

daead.register()

ASSOCIATED_DATA = b""
_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cached_primitive(
    keyset: bytes | str, key_link: str | None, master: MasterKey | None
) -> daead.DeterministicAead:
    """A bounded, thread-safe LRU of primitives, keyed by the stored keyset (plus the key link
    and master key for wrapped keysets, whose associated data the link is)."""
    from strm_spark.crypto import envelope as masterkey

    if masterkey.is_wrapped(keyset):
        handle = masterkey.open_keyset(keyset, key_link, master)
    else:
        handle = _parse_keyset(keyset)
    try:
        return handle.primitive(daead.DeterministicAead)
    except tink.TinkError:
        # A keyset of other keys than AES-SIV (or none enabled): as unusable as an unreadable one.
        raise CryptoError("invalid Tink keyset") from None


def _parse_keyset(keyset: bytes | str) -> tink.KeysetHandle:
    try:
        text = keyset.decode("utf-8") if isinstance(keyset, bytes) else keyset
        return tink.json_proto_keyset_format.parse(text, secret_key_access.TOKEN)
    except Exception:
        # Never echo the keyset: the underlying message can contain key material.
        raise CryptoError("invalid Tink keyset") from None


# Tink's JSON keyset format of one enabled AES256-SIV key with TINK output prefix, laid out as
# `tink.json_proto_keyset_format.serialize` writes it: its key data is the AesSivKey proto
# (version 0, omitted; field 2: the 64-byte key).
_AES_SIV_KEYSET = (
    '{\n  "primaryKeyId": %d,\n  "key": [\n    {\n      "keyData": {\n'
    '        "typeUrl": "type.googleapis.com/google.crypto.tink.AesSivKey",\n'
    '        "value": "%s",\n        "keyMaterialType": "SYMMETRIC"\n      },\n'
    '      "status": "ENABLED",\n      "keyId": %d,\n      "outputPrefixType": "TINK"\n'
    "    }\n  ]\n}"
)
_AES_SIV_KEY_FIELD = b"\x12\x40"  # field 2, length-delimited, 64 bytes


def new_keyset() -> bytes:
    """A fresh AES256-SIV keyset with TINK output prefix, as Tink JSON (UTF-8 bytes): the bytes
    Tink's serializer writes for `new_keyset_handle(AES256_SIV)`, made directly from 64 random
    bytes and a random 31-bit key id from the OS's CSPRNG (about 2 µs against about 40 µs
    through a handle; a run makes one per new key). `tests/unit/test_crypto.py` parses it with
    Tink and checks the serialization round trip byte for byte."""
    key_id = secrets.randbelow(2**31 - 1) + 1
    value = base64.b64encode(_AES_SIV_KEY_FIELD + secrets.token_bytes(64)).decode("ascii")
    return (_AES_SIV_KEYSET % (key_id, value, key_id)).encode("ascii")


def primitive(
    keyset: bytes, key_link: str | None = None, master: MasterKey | None = None
) -> daead.DeterministicAead:
    """The (cached) primitive of a stored keyset; a wrapped keyset needs its key link and the
    master key."""
    from strm_spark.crypto import envelope as masterkey

    if isinstance(keyset, (bytearray, memoryview)):  # as Spark's Rows give BINARY values
        keyset = bytes(keyset)
    if not masterkey.is_wrapped(keyset):  # the link and master key do not matter then
        return _cached_primitive(keyset, None, None)
    return _cached_primitive(keyset, key_link, master)


def encrypt_text(prim: daead.DeterministicAead, value: str | None) -> str | None:
    if value is None:
        return None
    ct = prim.encrypt_deterministically(value.encode("utf-8"), ASSOCIATED_DATA)
    return base64.b64encode(ct).decode("ascii")


def decrypt_text(prim: daead.DeterministicAead, value: str | None) -> str | None:
    """Decrypt one cell; raises ValueError (without details) on a wrong key or tampering."""
    if value is None:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
        return prim.decrypt_deterministically(raw, ASSOCIATED_DATA).decode("utf-8")
    except (tink.TinkError, binascii.Error, UnicodeDecodeError):
        raise CryptoError("cannot decrypt: wrong key or tampered ciphertext") from None


def decrypt(
    keyset: bytes | str,
    value: str | None,
    *,
    key_link: str | None = None,
    master: MasterKey | None = None,
) -> str | None:
    """Convenience: decrypt one base64 cell with a Tink JSON keyset as stored in the key store
    (a wrapped keyset needs `key_link` and `master`)."""
    ks = keyset.encode("utf-8") if isinstance(keyset, str) else keyset
    return decrypt_text(primitive(ks, key_link, master), value)


def _group_rows(
    keysets: Sequence[bytes | None], key_links: Sequence[str | None] | None
) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = {}
    for i, ks in enumerate(keysets):
        if ks is not None:
            groups.setdefault((ks, key_links[i] if key_links is not None else None), []).append(i)
    return groups


def encrypt_columns(
    keysets: Sequence[bytes | None],
    columns: Iterable[Sequence[str | None]],
    key_links: Sequence[str | None] | None = None,
    master: MasterKey | None = None,
) -> list[list[str | None]]:
    """Encrypt several columns of one batch; rows are grouped by keyset so each primitive is
    looked up once per batch, not once per row. Wrapped keysets are opened with `master` and
    the row's key link."""
    groups = _group_rows(keysets, key_links)
    out: list[list[str | None]] = []
    for col_index, values in enumerate(columns):
        for i, ks in enumerate(keysets):
            if ks is None and values[i] is not None:
                # Every row must have a key; refuse rather than drop or leak the value.
                raise CryptoError(
                    f"row {i} of the batch has no key for encrypted column {col_index}"
                )
        result: list[str | None] = [None] * len(keysets)
        for (ks, link), rows in groups.items():
            prim = primitive(ks, link, master)
            enc = prim.encrypt_deterministically
            for i in rows:
                v = values[i]
                if v is not None:
                    result[i] = base64.b64encode(enc(v.encode("utf-8"), ASSOCIATED_DATA)).decode(
                        "ascii"
                    )
        out.append(result)
    return out
