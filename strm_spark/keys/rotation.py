"""`keys rotate-master` and `keys rotate-kek`: the key hierarchy's two rotations (the CLI
records each in the audit table: which keyset, from which key to which, how many keysets
moved; no key).

- `rotate_master` rewraps the group's key-encryption keyset (KEK) under another master key:
  one row, whatever the store holds. A store whose keysets a master key wraps directly (older
  than the hierarchy, or under a local master keyset) gets a KEK here, and its keysets move
  under it: the migration, done once (a KMS key that wrapped them directly opens each one a
  last time).
- `rotate_kek` rotates the KEK itself: a new primary key, and every keyset rewrapped with it.
  It may be slow; it is resumable: a second call finishes the keysets the first left.
Both rewrap through `strm_spark.keys.rewrap`, in chunks that commit on their own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from strm_spark.config.model import JobConfig
from strm_spark.crypto.envelope import MasterKey, load_master_key
from strm_spark.errors import ConfigError, KeyStoreError
from strm_spark.keys import hierarchy, rewrap
from strm_spark.keys.store import KeyStore

Progress = Callable[[int, int], None]


@dataclass
class Rotation:
    """What a rotation did: the KEK (`kek`, and `was` before a KEK rotation), keysets
    rewrapped of those to do, and keysets left as they were (wrapped by keys it does not
    know, by key id)."""

    action: str
    group_id: str
    kek: str
    was: str  # rotate-master: the master key before; rotate-kek: the KEK's key(s) before
    to: str  # the new master key, or the KEK's new primary key
    master: str = ""  # the master key that wraps the KEK now
    made_kek: bool = False
    resumed: bool = False
    rewrapped: int = 0
    to_do: int = 0
    unknown: dict[str, int] = field(default_factory=dict)

    def details(self) -> dict:
        return {
            "keyEncryptionKeyset": self.kek,
            "from": self.was,
            "to": self.to,
            "keysetsRewrapped": self.rewrapped,
            "keysetsLeft": sum(self.unknown.values()),
        }


def _openers(kek: MasterKey, *direct: MasterKey) -> dict[str, MasterKey]:
    found = {m.id: m for m in direct}
    found.update({i: kek for i in hierarchy.kek_ids(kek)})
    return found


def _configured(config: JobConfig) -> MasterKey:
    if config.master_key is None:
        raise ConfigError(config.config_path, "keys.master_key", "no master key to rotate from")
    return load_master_key(config.master_key)


def rotate_master(
    spark, config: JobConfig, new: MasterKey, progress: Progress, chunk: int = rewrap.CHUNK_KEYSETS
) -> Rotation:
    """The group's KEK rewrapped under `new` (made, wrapped by `new`, for a store without
    one), then every keyset a master key wraps directly moved under the KEK."""
    old = _configured(config)
    kek, made = hierarchy.rotate_master(spark, config.key_store, config.group_id, old, new)
    store = KeyStore(spark, config.key_store, kek, legacy=old)
    store.ensure()
    done = Rotation("rotate-master", config.group_id, kek.id, old.id, new.id, new.id, made_kek=made)
    done.rewrapped, todo = rewrap.rewrap(
        store, config.group_id, kek, _openers(kek, old, new), progress, chunk
    )
    done.to_do, done.unknown = todo.total, todo.unknown
    return done


def rotate_kek(
    spark, config: JobConfig, progress: Progress, chunk: int = rewrap.CHUNK_KEYSETS
) -> Rotation:
    """A new primary key in the group's KEK and every keyset rewrapped with it; a call after
    an interrupted one adds no key and finishes the keysets left."""
    master = _configured(config)
    kek = hierarchy.kek_master(spark, config.key_store, config.group_id, master, create=False)
    if kek is None:
        raise KeyStoreError(
            f"group {config.group_id!r} has no key-encryption keyset: its keysets are wrapped "
            "directly by the master key; `strm-spark keys rotate-master CONFIG --to URI` moves "
            "them under one"
        )
    store = KeyStore(spark, config.key_store, kek, legacy=master)
    todo = rewrap.pending(store, config.group_id, kek, _openers(kek, master))
    if todo.total:  # keysets an earlier rotation left: finish them, no new key
        rotated, was, resumed = kek, ", ".join(sorted(todo.by)), True
    else:  # a new primary key: the keysets to do are found anew, against it
        rotated = hierarchy.add_kek_key(spark, config.key_store, config.group_id, master, kek)
        was, resumed, todo = kek.id, False, None
    done = Rotation(
        "rotate-kek", config.group_id, rotated.id, was, rotated.id, master.id, resumed=resumed
    )
    store = KeyStore(spark, config.key_store, rotated, legacy=master)
    done.rewrapped, todo = rewrap.rewrap(
        store, config.group_id, rotated, _openers(rotated, master), progress, chunk, todo
    )
    done.to_do, done.unknown = todo.total, todo.unknown
    return done
