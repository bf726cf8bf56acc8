"""The key hierarchy under a KMS: one KMS request a run, whatever the batch holds.

A KMS key (`keys.master_key.kms_uri`) does not wrap each keyset (a request per keyset: about
600 for a 2,000-row run). It wraps one key-encryption keyset (KEK, Tink AES256_GCM) per key
group, kept in `<store>/key_encryption_keys` with the id of the key that wraps it; the KEK
wraps the keysets. A run, an export, a forget or a view opens the KEK once, on the driver (one
KMS request; creating it costs one more), and the opened KEK travels to the workers as a local
master keyset does: a `MasterKey` of kind "keyset" whose id (`kek:<key id>`) is what the keys
table records in `wrappedBy`. Keysets wrapped directly by the KMS key before (stores older than
the hierarchy) still open with the KMS key itself.

`rotate_master` rewraps the KEK under another master key (KMS or a local keyset): one row,
whatever the store holds; a group without a KEK (keysets wrapped directly by a master key)
gets one there, and `strm_spark.keys.rewrap` moves its keysets under it. `add_kek_key`
rotates the KEK itself: a new primary key in it, the old ones kept to open what they wrapped
until the keysets are rewrapped. Every key of an opened KEK is named by `kek_ids`."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import tink
from pyspark.sql import functions as F
from pyspark.sql import types as T
from tink import aead, secret_key_access

from strm_spark.crypto.envelope import MasterKey
from strm_spark.errors import KeyStoreError
from strm_spark.storage import Location
from strm_spark.storage.tables import create_table, is_delta, merge, read

KEK_SCHEMA = T.StructType(
    [
        T.StructField("groupId", T.StringType(), False),
        T.StructField("kekId", T.StringType(), False),
        T.StructField("keyset", T.BinaryType(), False),  # wrapped by `wrappedBy`
        T.StructField("wrappedBy", T.StringType(), False),
        T.StructField("createdAt", T.TimestampType(), False),
        T.StructField("rotatedAt", T.TimestampType(), True),
    ]
)


class KmsUnavailable(Exception):
    """The KMS could not be reached: nothing was written; run again when it is back."""


_OUTAGES = (
    "EndpointConnectionError",
    "ConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "ConnectionClosedError",
    "ServiceUnavailable",
    "DeadlineExceeded",
)


def _kms_error(exc: BaseException, what: str, master: MasterKey) -> Exception:
    """`what` failed at the KMS: an outage (its connection failed) or a refusal (wrong key,
    disabled key, no permission), told by the error's class only, never a key or ciphertext."""
    chain, seen = [], exc
    while seen is not None and len(chain) < 8:
        chain.append(type(seen).__name__ + " " + str(seen)[:200])
        seen = seen.__cause__ or seen.__context__
    name = type(exc).__name__
    if any(o in c for c in chain for o in _OUTAGES) or "Could not connect" in " ".join(chain):
        return KmsUnavailable(f"{what}: the KMS of {master.id} cannot be reached ({name})")
    return KeyStoreError(
        f"{what} with {master.id} failed ({name}): wrong or disabled key, or no permission"
    )


def _associated(group_id: str) -> bytes:
    """Binds a wrapped KEK to its group: a KEK row copied to another group does not open."""
    return f"strm-spark:kek:{group_id}".encode()


def kek_table(store: Location) -> Location:
    return store.child("key_encryption_keys")


def _row(spark, store: Location, group_id: str):
    rows = read(spark, kek_table(store)).where(F.col("groupId") == F.lit(group_id)).collect()
    return min(rows, key=lambda r: r["createdAt"]) if rows else None


# The KEKs this process opened, by (group, master key id, wrapped keyset): a stream's
# micro-batches, or a notebook's runs, ask the KMS once, not once each. A rewrapped or new KEK
# row is not in it, and is opened with the KMS again.
_OPENED: dict[tuple[str, str, bytes], MasterKey] = {}


def _open(row, group_id: str, master: MasterKey) -> MasterKey:
    key = (group_id, master.id, bytes(row["keyset"]))
    if key not in _OPENED:
        if len(_OPENED) > 16:
            _OPENED.clear()
        _OPENED[key] = _open_with_kms(row, group_id, master)
    return _OPENED[key]


def _open_with_kms(row, group_id: str, master: MasterKey) -> MasterKey:
    if row["wrappedBy"] != master.id:
        raise KeyStoreError(
            f"the key-encryption keyset of group {group_id!r} is wrapped by {row['wrappedBy']}, "
            f"not by the configured keys.master_key ({master.id}); set that key, or rotate with "
            "`strm-spark keys rotate-master CONFIG --to ...`"
        )
    try:
        handle = tink.json_proto_keyset_format.parse_encrypted(
            bytes(row["keyset"]).decode("utf-8"), master.aead(), _associated(group_id)
        )
    except KeyStoreError:
        raise
    except Exception as exc:  # the KMS's own error class only: never a key or ciphertext
        raise _kms_error(
            exc, f"opening the key-encryption keyset of group {group_id!r}", master
        ) from None
    return _as_master(handle)


def _as_master(handle: tink.KeysetHandle) -> MasterKey:
    text = tink.json_proto_keyset_format.serialize(handle, secret_key_access.TOKEN)
    return MasterKey("keyset", f"kek:{handle.keyset_info().primary_key_id}", text.encode())


def _wrapped(handle: tink.KeysetHandle, group_id: str, master: MasterKey) -> bytes:
    try:
        text = tink.json_proto_keyset_format.serialize_encrypted(
            handle, master.aead(), _associated(group_id)
        )
    except Exception as exc:
        raise _kms_error(
            exc, f"wrapping the key-encryption keyset of group {group_id!r}", master
        ) from None
    return text.encode("utf-8")


def kek_master(
    spark, store: Location, group_id: str, master: MasterKey, create: bool = True
) -> MasterKey | None:
    """The group's KEK, opened with `master` (one KMS request); with `create`, made when the
    group has none (an insert-only MERGE: concurrent first runs agree on one KEK), else None.
    A new KEK is wrapped before its table is touched: a key the KMS refuses writes nothing."""
    row = _row(spark, store, group_id) if is_delta(spark, kek_table(store)) else None
    if row is not None:
        return _open(row, group_id, master)
    if not create:
        return None
    handle = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM)
    opened, wrapped = _as_master(handle), _wrapped(handle, group_id, master)
    create_table(spark, kek_table(store), KEK_SCHEMA, stats_columns="groupId,createdAt")
    candidate = spark.createDataFrame(
        [(group_id, opened.id, bytearray(wrapped), master.id, datetime.now(UTC), None)],
        KEK_SCHEMA,
    )
    metrics = merge(
        candidate,
        kek_table(store),
        "t.groupId = s.groupId",
        "WHEN NOT MATCHED THEN INSERT *",
        f"key store {store}: key-encryption keyset",
    )
    if metrics is not None and metrics["num_inserted_rows"] == 1:
        return opened
    return _open(_row(spark, store, group_id), group_id, master)  # another run's won


def kek_ids(master: MasterKey) -> list[str]:
    """The ids (`kek:<key id>`) of every key of an opened KEK, the primary first: the primary
    wraps new keysets, each of them opens what it wrapped. Empty for any other master key."""
    if not master.id.startswith("kek:") or master.kind != "keyset":
        return []
    others = [f"kek:{k['keyId']}" for k in json.loads(master.material).get("key", [])]
    return [master.id, *(i for i in others if i != master.id)]


def _replace_row(
    spark, store: Location, group_id: str, was: str, kek_id: str, wrapped: bytes, by: str, what: str
) -> None:
    """Replace the group's KEK row, only if it still holds the KEK `was` (compare-and-swap:
    of two concurrent rotations, the second fails and changes nothing)."""
    update = spark.createDataFrame(
        [(group_id, was, kek_id, bytearray(wrapped), by, datetime.now(UTC))],
        "groupId string, was string, kekId string, keyset binary, wrappedBy string, "
        "rotatedAt timestamp",
    )
    metrics = merge(
        update,
        kek_table(store),
        "t.groupId = s.groupId AND t.kekId = s.was",
        "WHEN MATCHED THEN UPDATE SET t.kekId = s.kekId, t.keyset = s.keyset, "
        "t.wrappedBy = s.wrappedBy, t.rotatedAt = s.rotatedAt",
        f"key store {store}: {what}",
    )
    if metrics is None or metrics["num_updated_rows"] != 1:
        raise KeyStoreError(
            f"the key-encryption keyset of group {group_id!r} changed while it was rotated "
            "(another rotation?); nothing was changed here: run the command again"
        )


def _handle(kek: MasterKey) -> tink.KeysetHandle:
    return tink.json_proto_keyset_format.parse(kek.material.decode(), secret_key_access.TOKEN)


def rotate_master(
    spark, store: Location, group_id: str, old: MasterKey, new: MasterKey
) -> tuple[MasterKey, bool]:
    """Rewrap the group's KEK under `new` (opened with `old`, or with `new` when an interrupted
    rotation already rewrapped it): one row, whatever the store holds; the keysets stay as
    they are. A group without a KEK (a store older than the hierarchy, or one a local master
    keyset wrapped directly) gets one, wrapped by `new`. Returns the opened KEK and whether it
    was made here."""
    row = _row(spark, store, group_id) if is_delta(spark, kek_table(store)) else None
    if row is None:
        return kek_master(spark, store, group_id, new), True
    if row["wrappedBy"] == new.id:
        return _open(row, group_id, new), False
    kek = _open(row, group_id, old)
    wrapped = _wrapped(_handle(kek), group_id, new)
    _replace_row(spark, store, group_id, kek.id, kek.id, wrapped, new.id, "rewrap the KEK")
    return kek, False


def add_kek_key(
    spark, store: Location, group_id: str, master: MasterKey, kek: MasterKey
) -> MasterKey:
    """Rotate the KEK itself: a new AES256_GCM key becomes its primary (new keysets are wrapped
    with it), the old keys stay in it to open what they wrapped. The row is replaced only if
    it still holds `kek`. Returns the new KEK."""
    doc = json.loads(kek.material)
    ids = {k["keyId"] for k in doc["key"]}
    fresh = json.loads(
        tink.json_proto_keyset_format.serialize(
            tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM), secret_key_access.TOKEN
        )
    )
    if fresh["primaryKeyId"] in ids:  # a 32-bit id already in the keyset: draw again
        return add_kek_key(spark, store, group_id, master, kek)
    doc["key"].append(fresh["key"][0])
    doc["primaryKeyId"] = fresh["primaryKeyId"]
    handle = tink.json_proto_keyset_format.parse(json.dumps(doc), secret_key_access.TOKEN)
    rotated = _as_master(handle)
    wrapped = _wrapped(handle, group_id, master)
    _replace_row(spark, store, group_id, kek.id, rotated.id, wrapped, master.id, "rotate the KEK")
    return rotated


def check_master(spark, store: Location, group_id: str, master: MasterKey) -> str:
    """What `validate --online` checks of a master key, writing nothing: the group's
    key-encryption keyset opens with it (one KMS request for a KMS key), or, for a group without
    one yet, a KMS key wraps and opens a throwaway keyset (two). Raises as a run would."""
    kek = kek_master(spark, store, group_id, master, create=False)
    if kek is not None:
        return f"{master.id} opens the key-encryption keyset {kek.id} of group {group_id!r}"
    if master.kind != "kms":  # a local key wraps keysets directly until `keys rotate-master`
        return f"the local master key {master.id} is a Tink AEAD keyset"
    handle = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM)
    _wrapped(handle, group_id, master)  # Tink checks it by opening it again
    return (
        f"{master.id} wraps and opens a keyset (group {group_id!r} has no key-encryption "
        "keyset yet: the first run makes it)"
    )
