"""The JVM functions read keysets with Tink's Java API (bundled in strm-spark's jar): for every
keyset shape, in Tink's JSON and in its binary format, they give what tink-py gives."""

from __future__ import annotations

import base64
import json

import pytest
import tink
from pyspark.sql import functions as F
from tink import aead, daead, secret_key_access

from strm_spark.crypto import cells as crypto
from strm_spark.crypto.engines import decrypt_column, register_jvm

aead.register()
daead.register()

CELL_KEYS = ("tink", "raw", "legacy", "new")  # the keys the cells are encrypted with
USABLE = ("tink", "raw", "legacy", "rotated", "rotated_from_raw", "old_key_disabled")
UNUSABLE = ("primary_disabled", "no_enabled_key", "aes_gcm", "aes_gcm_beside_aes_siv", "not_json")


def _keyset(primary: dict, *keys: dict) -> bytes:
    return json.dumps({"primaryKeyId": primary["keyId"], "key": list(keys)}).encode("utf-8")


def _shapes() -> dict[str, bytes]:
    """Tink JSON keysets of each shape a key store or STRM's keys.csv could hold: output prefix
    TINK, RAW or LEGACY, rotated, with a disabled key or primary, no AES-SIV key at all."""
    (old,) = json.loads(crypto.new_keyset())["key"]
    (new,) = json.loads(crypto.new_keyset())["key"]
    gcm_handle = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM)
    (gcm,) = json.loads(
        tink.json_proto_keyset_format.serialize(gcm_handle, secret_key_access.TOKEN)
    )["key"]
    raw, legacy = ({**old, "outputPrefixType": p} for p in ("RAW", "LEGACY"))
    return {
        "tink": _keyset(old, old),
        "raw": _keyset(raw, raw),
        "legacy": _keyset(legacy, legacy),
        "new": _keyset(new, new),
        "rotated": _keyset(new, old, new),
        "rotated_from_raw": _keyset(new, raw, new),
        "old_key_disabled": _keyset(new, {**old, "status": "DISABLED"}, new),
        "primary_disabled": _keyset(new, old, {**new, "status": "DISABLED"}),
        "no_enabled_key": _keyset(old, {**old, "status": "DISABLED"}),
        "aes_gcm": _keyset(gcm, gcm),
        "aes_gcm_beside_aes_siv": _keyset(new, gcm, new),
        "not_json": b"{ not a keyset",
    }


def _tink_py(keyset: bytes, cell: str) -> str | None:
    """tink-py's answer, straight from its API: the plaintext, or None if it refuses."""
    try:
        handle = tink.json_proto_keyset_format.parse(keyset.decode(), secret_key_access.TOKEN)
        prim = handle.primitive(daead.DeterministicAead)
        raw = base64.b64decode(cell, validate=True)
        return prim.decrypt_deterministically(raw, b"").decode("utf-8")
    except (tink.TinkError, ValueError):  # ValueError: bad base64 or UTF-8
        return None


@pytest.fixture(scope="module")
def shapes(spark):
    assert register_jvm(spark)
    return _shapes()


def _cells(shapes: dict[str, bytes]) -> dict[str, str]:
    cells = {k: crypto.encrypt_text(crypto.primitive(shapes[k]), "alice") for k in CELL_KEYS}
    raw = bytearray(base64.b64decode(cells["tink"]))
    raw[-1] ^= 1
    cells["tampered"] = base64.b64encode(bytes(raw)).decode()
    cells["not_base64"] = "not base64 !!"
    return cells


def test_decryption_gives_tink_pythons_answer_for_every_keyset_shape(spark, shapes):
    cells = _cells(shapes)
    rows = [(s, c, cells[c], bytearray(ks)) for s, ks in shapes.items() for c in cells]
    df = spark.createDataFrame(rows, "shape string, cell string, ct string, ks binary")
    compact = F.call_function("strm_keyset_compact_jvm", F.col("ks"))
    got = df.select(
        "shape",
        "cell",
        F.call_function("strm_decrypt_jvm", F.col("ct"), F.col("ks")).alias("json"),
        F.call_function("strm_decrypt_jvm", F.col("ct"), compact).alias("binary"),
        decrypt_column(F.col("ct"), F.col("ks"), engine="python").alias("python"),
    ).collect()
    expected = {(s, c): _tink_py(shapes[s], cells[c]) for s in shapes for c in cells}
    for r in got:
        want = expected[(r["shape"], r["cell"])]
        assert (r["json"], r["binary"], r["python"]) == (want, want, want), (r["shape"], r["cell"])
    # What tink-py answers (so the comparison above can fail): each key decrypts its own cells,
    # a rotated keyset its old key's too, a disabled key nothing, an unusable keyset nothing.
    readable = {(s, c) for (s, c), plain in expected.items() if plain is not None}
    assert readable == {
        ("tink", "tink"),
        ("raw", "raw"),
        ("legacy", "legacy"),
        ("new", "new"),
        ("rotated", "tink"),
        ("rotated", "new"),
        ("rotated_from_raw", "raw"),
        ("rotated_from_raw", "new"),
        ("old_key_disabled", "new"),
    }
    assert {expected[k] for k in readable} == {"alice"}


def test_encryption_gives_tink_pythons_ciphertext_for_every_usable_shape(spark, shapes):
    rows = [(s, "alice", bytearray(shapes[s])) for s in USABLE]
    df = spark.createDataFrame(rows, "shape string, v string, ks binary")
    compact = F.call_function("strm_keyset_compact_jvm", F.col("ks"))
    got = df.select(
        "shape",
        F.call_function("strm_encrypt_jvm", F.col("v"), F.col("ks")).alias("json"),
        F.call_function("strm_encrypt_jvm", F.col("v"), compact).alias("binary"),
    ).collect()
    for r in got:
        want = crypto.encrypt_text(crypto.primitive(shapes[r["shape"]]), "alice")
        assert r["json"] == r["binary"] == want, r["shape"]
    # TINK: 0x01 || key id || SIV || ciphertext; LEGACY: 0x00 || key id || ...; RAW: no prefix.
    cells = {r["shape"]: base64.b64decode(r["json"]) for r in got}
    assert cells["tink"][0] == 1 and cells["legacy"][0] == 0 and cells["rotated"][0] == 1
    assert len(cells["raw"]) == 16 + len("alice") and len(cells["tink"]) == 5 + 16 + len("alice")


@pytest.mark.parametrize("shape", UNUSABLE)
def test_an_unusable_keyset_is_refused_without_showing_it(spark, shapes, shape):
    ks = shapes[shape]
    df = spark.createDataFrame([("alice-17850", bytearray(ks))], "v string, ks binary")
    compact = F.call_function("strm_keyset_compact_jvm", F.col("ks"))
    ct = crypto.encrypt_text(crypto.primitive(shapes["tink"]), "alice-17850")
    secrets = ["alice-17850", *(k["keyData"]["value"][:24] for k in _keys(ks))]
    for keyset in (F.col("ks"), compact):
        with pytest.raises(Exception) as info:
            df.select(F.call_function("strm_encrypt_jvm", F.col("v"), keyset)).collect()
        why = (
            "the keyset has no enabled key" if shape == "no_enabled_key" else "invalid Tink keyset"
        )
        assert f"strm_encrypt: {why}" in str(info.value)
        decrypted = df.select(F.call_function("strm_decrypt_jvm", F.lit(ct), keyset)).first()
        assert decrypted[0] is None
        with pytest.raises(Exception) as strict:
            df.select(F.call_function("strm_decrypt_strict_jvm", F.lit(ct), keyset)).collect()
        assert "strm_decrypt_strict: invalid Tink keyset" in str(strict.value)
        for secret in secrets:
            assert secret not in str(info.value) and secret not in str(strict.value)


def _keys(keyset: bytes) -> list[dict]:
    try:
        return json.loads(keyset)["key"]
    except ValueError:
        return []


def test_a_corrupted_binary_keyset_is_an_invalid_keyset_or_a_wrong_key(spark, shapes):
    ks = shapes["tink"]
    binary = bytes(
        spark.createDataFrame([(bytearray(ks),)], "ks binary")
        .select(F.call_function("strm_keyset_compact_jvm", F.col("ks")))
        .first()[0]
    )
    # Tink's binary format, as tink-py reads it too: the same key, the same ciphertext.
    handle = tink.proto_keyset_format.parse(binary, secret_key_access.TOKEN)
    prim = handle.primitive(daead.DeterministicAead)
    assert crypto.encrypt_text(prim, "alice") == crypto.encrypt_text(crypto.primitive(ks), "alice")
    assert binary[0] == 0x08 and len(binary) < len(ks) / 2
    (key,) = json.loads(ks)["key"]
    key_bytes = base64.b64decode(key["keyData"]["value"])[-64:]  # AesSivKey: 64 key bytes last
    assert key_bytes in binary
    at = binary.index(key_bytes) + 63
    other_key = binary[:at] + bytes([binary[at] ^ 1]) + binary[at + 1 :]
    cases = {
        "cut short": (binary[:-20], "invalid Tink keyset"),
        "another byte": (b"\x00" + binary[1:], "invalid Tink keyset"),
        "a changed key byte": (other_key, "wrong key or tampered ciphertext"),
        "intact": (binary, None),
    }
    ct = crypto.encrypt_text(crypto.primitive(ks), "alice")
    df = spark.createDataFrame(
        [(name, bytearray(k)) for name, (k, _) in cases.items()], "name string, ks binary"
    )
    compact = F.call_function("strm_keyset_compact_jvm", F.col("ks"))
    got = df.select(
        "name",
        F.call_function("strm_decrypt_jvm", F.lit(ct), F.col("ks")).alias("plain"),
        (compact == F.col("ks")).alias("unchanged"),  # not JSON: kept as it is
    ).collect()
    assert {r["name"]: r["plain"] for r in got} == {
        name: "alice" if why is None else None for name, (_, why) in cases.items()
    }
    assert all(r["unchanged"] for r in got)
    for name, (_, why) in cases.items():
        if why is None:
            continue
        with pytest.raises(Exception) as info:
            df.where(F.col("name") == name).select(
                F.call_function("strm_decrypt_strict_jvm", F.lit(ct), F.col("ks"))
            ).collect()
        assert f"strm_decrypt_strict: {why}" in str(info.value), name
