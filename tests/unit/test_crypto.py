"""Keysets and ciphertexts in STRM's format; failure cases included."""

from __future__ import annotations

import base64
import json

import pytest
import tink
from tink import cleartext_keyset_handle, daead

from strm_spark.crypto import cells as crypto
from strm_spark.crypto.masking import hmac_sha256_hex


def _reference_decrypt(keyset: bytes, ciphertext: str) -> str:
    """The decryption snippet of STRM's own notebook (reference page)."""
    daead.register()
    prim = cleartext_keyset_handle.read(tink.JsonKeysetReader(keyset.decode())).primitive(
        daead.DeterministicAead
    )
    return prim.decrypt_deterministically(base64.b64decode(ciphertext), b"").decode()


def test_keyset_is_tink_json_aes_siv_with_tink_prefix():
    doc = json.loads(crypto.new_keyset())
    assert list(doc) == ["primaryKeyId", "key"]
    (key,) = doc["key"]
    assert key["keyData"]["typeUrl"] == "type.googleapis.com/google.crypto.tink.AesSivKey"
    assert key["keyData"]["keyMaterialType"] == "SYMMETRIC"
    assert key["status"] == "ENABLED" and key["outputPrefixType"] == "TINK"
    assert key["keyId"] == doc["primaryKeyId"]


def test_ciphertext_layout_and_reference_decryption():
    keyset = crypto.new_keyset()
    ct = crypto.encrypt_text(crypto.primitive(keyset), "17850")
    raw = base64.b64decode(ct, validate=True)
    key_id = json.loads(keyset)["primaryKeyId"]
    assert raw[0] == 1 and int.from_bytes(raw[1:5], "big") == key_id
    assert len(raw) == 1 + 4 + 16 + len("17850")
    assert _reference_decrypt(keyset, ct) == "17850"
    # Deterministic: same key and value, same ciphertext; a new key, a different one.
    assert crypto.encrypt_text(crypto.primitive(keyset), "17850") == ct
    assert crypto.encrypt_text(crypto.primitive(crypto.new_keyset()), "17850") != ct


def test_decrypts_ciphertext_made_by_plain_tink():
    handle = tink.new_keyset_handle(daead.deterministic_aead_key_templates.AES256_SIV)
    keyset = tink.json_proto_keyset_format.serialize(handle, tink.secret_key_access.TOKEN)
    ct = base64.b64encode(
        handle.primitive(daead.DeterministicAead).encrypt_deterministically(b"a@b.nl", b"")
    )
    assert crypto.decrypt(keyset, ct.decode()) == "a@b.nl"


def test_wrong_key_and_tampering_fail_without_leaking():
    keyset, other = crypto.new_keyset(), crypto.new_keyset()
    ct = crypto.encrypt_text(crypto.primitive(keyset), "secret-value")
    with pytest.raises(ValueError) as info:
        crypto.decrypt(other, ct)
    assert "secret" not in str(info.value) and "key" in str(info.value)
    raw = bytearray(base64.b64decode(ct))
    raw[-1] ^= 1
    with pytest.raises(ValueError):
        crypto.decrypt(keyset, base64.b64encode(bytes(raw)).decode())
    with pytest.raises(ValueError):
        crypto.decrypt(keyset, "not base64 !!")
    with pytest.raises(ValueError) as info:
        crypto.decrypt(b'{"primaryKeyId": 1, "key": "AAAA-secret-material"}', ct)
    assert "AAAA" not in str(info.value)


def test_nulls_stay_null_and_rows_without_a_key_are_refused():
    ks1, ks2 = crypto.new_keyset(), crypto.new_keyset()
    out = crypto.encrypt_columns([ks1, ks2, ks1], [["a", None, "c"]])
    assert out[0][1] is None
    assert crypto.decrypt(ks1, out[0][0]) == "a" and crypto.decrypt(ks1, out[0][2]) == "c"
    with pytest.raises(ValueError, match="no key"):
        crypto.encrypt_columns([ks1, None], [["a", "b"]])
    assert crypto.encrypt_columns([ks1, None], [["a", None]])[0][1] is None


def test_hmac_sha256_known_vector():
    # RFC 4231 test case 2.
    assert hmac_sha256_hex(b"Jefe", "what do ya want for nothing?") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_a_keyset_of_other_keys_than_aes_siv_is_an_invalid_keyset():
    # tink-py reads it, but it gives no DeterministicAead: refused like an unreadable keyset, so
    # the decrypt functions give null (or their fixed error) as the JVM ones do.
    from tink import aead

    from strm_spark.errors import CryptoError

    aead.register()
    handle = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM)
    gcm = tink.json_proto_keyset_format.serialize(handle, tink.secret_key_access.TOKEN)
    with pytest.raises(CryptoError, match="invalid Tink keyset") as info:
        crypto.primitive(gcm.encode())
    assert json.loads(gcm)["key"][0]["keyData"]["value"][:24] not in str(info.value)


def test_new_keyset_is_what_tinks_serializer_writes():
    """Keysets are made without a Tink handle: Tink parses each one, writes it back byte for
    byte, and its primitive is AES-SIV (a 64-byte key: 16-byte SIV, ciphertext as long as the
    text); two keysets share neither key id nor key."""
    keysets = [crypto.new_keyset() for _ in range(50)]
    for keyset in keysets:
        handle = tink.json_proto_keyset_format.parse(keyset.decode(), tink.secret_key_access.TOKEN)
        assert (
            tink.json_proto_keyset_format.serialize(handle, tink.secret_key_access.TOKEN).encode()
            == keyset
        )
        info = handle.keyset_info()
        assert info.key_info[0].type_url.endswith("AesSivKey") and info.primary_key_id > 0
        ct = handle.primitive(daead.DeterministicAead).encrypt_deterministically(b"abc", b"")
        assert len(ct) == 5 + 16 + 3
    docs = [json.loads(k) for k in keysets]
    assert len({d["primaryKeyId"] for d in docs}) == len(docs)
    assert len({d["key"][0]["keyData"]["value"] for d in docs}) == len(docs)
    plain = tink.new_keyset_handle(daead.deterministic_aead_key_templates.AES256_SIV)
    made_by_tink = json.loads(
        tink.json_proto_keyset_format.serialize(plain, tink.secret_key_access.TOKEN)
    )
    assert list(made_by_tink) == list(docs[0]) and list(made_by_tink["key"][0]) == list(
        docs[0]["key"][0]
    )


def test_a_kms_client_that_cannot_be_made_is_named_by_its_class(monkeypatch):
    """No region for an AWS KMS key (an alias, with none configured): a SecretError that names
    the SDK's error class and where its configuration comes from (exit 2), not a traceback."""
    from strm_spark.config.model import MasterKeyRef
    from strm_spark.crypto.envelope import load_master_key
    from strm_spark.errors import SecretError

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(SecretError, match=r"AWS KMS client cannot be created \(NoRegionError\)"):
        load_master_key(MasterKeyRef(kms_uri="aws-kms://alias/strm"))
    with pytest.raises(SecretError, match="unsupported KMS key URI"):
        load_master_key(MasterKeyRef(kms_uri="hcvault://transit/keys/strm"))
