"""Rewrapping a group's keysets under another wrapping key: resumable, with progress.

Two commands need it: `keys rotate-master` moves a store whose keysets a master key wraps
directly (a store older than the key hierarchy, or one under a local master keyset) under the
group's key-encryption keyset, and `keys rotate-kek` moves every keyset under the KEK's new
primary key. Neither touches a key itself: each keyset is opened with the key that wrapped it
and wrapped again, bound to its key link as before.

The work goes in chunks of whole days (Delta's statistics on `day` bound each chunk's read),
each one MERGE that commits on its own and updates a row only while it is still wrapped by the
key it was read under: a rewrap that stops (Ctrl-C, a crash, a lost cluster) loses nothing,
and the next one picks up the keysets still to do. A forget that removes keys meanwhile, or a
run that adds them, is not undone. Nothing here names a key, a keyset or a subject."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from strm_spark.crypto.envelope import MasterKey, open_keyset, wrap_handle
from strm_spark.keys.store import KeyStore
from strm_spark.storage.tables import merge, sql_string

# Keysets a chunk rewraps at most (whole days: one day of more keysets is one chunk of its own).
CHUNK_KEYSETS = 200_000


@dataclass
class Pending:
    """What a rewrap has to do: keysets per day (None: quarantine keys) and per wrapping key
    that a known key opens, and the keysets wrapped by keys it does not know, by key id (left
    as they are)."""

    days: dict[date | None, int]
    by: dict[str, int]
    unknown: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.days.values())


def pending(store: KeyStore, group_id: str, target: MasterKey, openers: dict[str, MasterKey]):
    """The group's keysets not yet wrapped by `target`: one aggregate over its keys."""
    rows = (
        store.keys(group_id)
        .where(F.col("wrappedBy").isNotNull() & (F.col("wrappedBy") != F.lit(target.id)))
        .groupBy("day", "wrappedBy")
        .count()
        .collect()
    )
    todo = Pending({}, {}, {})
    for r in rows:
        by, n = r["wrappedBy"], r["count"]
        if by in openers:
            todo.days[r["day"]] = todo.days.get(r["day"], 0) + n
            todo.by[by] = todo.by.get(by, 0) + n
        else:
            todo.unknown[by] = todo.unknown.get(by, 0) + n
    return todo


def chunks(days: dict[date | None, int], limit: int = CHUNK_KEYSETS) -> list[list[date | None]]:
    """Consecutive days (in order; the quarantine keys' None alone) of at most `limit` keysets
    each, a day never split."""
    out: list[list[date | None]] = [[None]] if None in days else []
    current: list[date | None] = []
    size = 0
    for day in sorted(d for d in days if d is not None):
        if current and size + days[day] > limit:
            out.append(current)
            current, size = [], 0
        current.append(day)
        size += days[day]
    return out + ([current] if current else [])


def _days_condition(days: list[date | None], column: str) -> str:
    if days == [None]:
        return f"{column} IS NULL"
    return f"{column} BETWEEN DATE'{days[0].isoformat()}' AND DATE'{days[-1].isoformat()}'"


def with_rewrapped(df: DataFrame, target: MasterKey, openers: dict[str, MasterKey]) -> DataFrame:
    """`df`'s `keyset` opened with the key its `wrappedBy` names and wrapped by `target` (on
    the workers), `wrappedBy` set to `target`, the old one kept as `oldBy`."""

    @F.pandas_udf("binary")
    def rewrapped(stored: pd.Series, links: pd.Series, by: pd.Series) -> pd.Series:
        return pd.Series(
            [
                wrap_handle(open_keyset(bytes(k), link, openers[b]), link, target)
                for k, link, b in zip(stored, links, by)
            ],
            dtype=object,
        )

    return df.select(
        "keyLink",
        F.col("wrappedBy").alias("oldBy"),
        rewrapped("keyset", "keyLink", "wrappedBy").alias("keyset"),
        F.lit(target.id).alias("wrappedBy"),
    )


def rewrap_chunk(
    store: KeyStore,
    group_id: str,
    days: list[date | None],
    target: MasterKey,
    openers: dict[str, MasterKey],
) -> int:
    """Rewrap one chunk's keysets in one commit; returns how many were rewrapped."""
    known = [k for k in openers if k != target.id]
    source = store.keys(group_id).where(
        F.expr(_days_condition(days, "day")) & F.col("wrappedBy").isin(known)
    )
    metrics = merge(
        with_rewrapped(source, target, openers),
        store.keys_path,
        f"t.groupId = {sql_string(group_id)} AND {_days_condition(days, 't.day')} "
        "AND t.keyLink = s.keyLink AND t.wrappedBy = s.oldBy",
        "WHEN MATCHED THEN UPDATE SET t.keyset = s.keyset, t.wrappedBy = s.wrappedBy",
        f"key store {store.location}: rewrap keysets",
    )
    return int(metrics["num_updated_rows"] or 0) if metrics is not None else 0


def rewrap(
    store: KeyStore,
    group_id: str,
    target: MasterKey,
    openers: dict[str, MasterKey],
    progress: Callable[[int, int], None],
    limit: int = CHUNK_KEYSETS,
    todo: Pending | None = None,
) -> tuple[int, Pending]:
    """Rewrap every keyset of the group that a key of `openers` wrapped under `target`, chunk
    by chunk, calling `progress(done, total)` after each commit. Returns how many were
    rewrapped and what was found to do (`todo`, when the caller has just found it; its
    `unknown` keysets are left as they are)."""
    todo = todo if todo is not None else pending(store, group_id, target, openers)
    done = 0
    progress(0, todo.total)
    for days in chunks(todo.days, limit):
        done += rewrap_chunk(store, group_id, days, target, openers)
        progress(done, todo.total)
    return done, todo
