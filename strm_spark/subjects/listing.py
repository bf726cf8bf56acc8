"""Listing data subjects (paged, with tokens bound to the table version) and their key links."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from strm_spark.config.model import JobConfig
from strm_spark.errors import SubjectsError
from strm_spark.keys.store import KeyStore
from strm_spark.storage import erase as ops
from strm_spark.subjects._common import _data_subjects, _iso, _subjects_df

MAX_PAGE_SIZE = 10_000


@dataclass(frozen=True)
class SubjectPage:
    """One page of data subject ids, sorted, and the token of the next page (None at the end)."""

    subjects: tuple[str, ...]
    next_page_token: str | None


def _token_check(config: JobConfig) -> str:
    return hashlib.sha256(f"{config.data_subjects.path}\0{config.group_id}".encode()).hexdigest()[
        :12
    ]


def _encode_token(config: JobConfig, version: int, offset: int) -> str:
    raw = json.dumps({"v": version, "o": offset, "c": _token_check(config)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(config: JobConfig, token: str) -> tuple[int, int]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        version, offset, check = int(raw["v"]), int(raw["o"]), raw["c"]
    except Exception:
        raise SubjectsError("invalid page token; list again without --page-token") from None
    if check != _token_check(config) or version < 0 or offset < 0:
        raise SubjectsError(
            "the page token belongs to another job's data subjects; list again without --page-token"
        )
    return version, offset


def list_subjects(
    spark: SparkSession, config: JobConfig, page_size: int = 100, page_token: str | None = None
) -> SubjectPage:
    """A page of the group's data subject ids, in order. Pages read the table version of the
    first page (Delta time travel), so paging is stable while jobs add subjects; the token is
    opaque and holds no subject id."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise SubjectsError(f"page size must be between 1 and {MAX_PAGE_SIZE:,}, got {page_size}")
    path = config.data_subjects.path
    if not ops.is_delta(spark, path):
        if page_token:
            raise SubjectsError(
                f"no data subjects table at {path}; list again without --page-token"
            )
        return SubjectPage((), None)
    if page_token:
        version, offset = _decode_token(config, page_token)
    else:
        version, offset = ops.version(spark, path), 0
    try:
        ds = _data_subjects(spark, config, version)
        assert ds is not None
        rows = (
            ds.select("dataSubject")
            .distinct()
            .orderBy("dataSubject")
            .offset(offset)
            .limit(page_size + 1)
            .collect()
        )
    except Exception:
        if not page_token:
            raise
        raise SubjectsError(
            f"version {version} of the data subjects table is no longer readable (a forget or "
            "purge-expired removed its files since the first page); list again without --page-token"
        ) from None
    ids = tuple(r["dataSubject"] for r in rows[:page_size])
    token = _encode_token(config, version, offset + page_size) if len(rows) > page_size else None
    return SubjectPage(ids, token)


@dataclass(frozen=True)
class KeyLinkInfo:
    """A key link of a subject: its expiry, and the key's day if the key is still stored."""

    key_link: str
    expires_at: datetime
    day: date | None
    key_present: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "key_link": self.key_link,
            "expiry_time": _iso(self.expires_at),
            "day": _iso(self.day) if self.day else None,
            "key_present": self.key_present,
        }


def key_links(
    spark: SparkSession, config: JobConfig, subjects: Sequence[str]
) -> dict[str, list[KeyLinkInfo]]:
    """Each requested subject's key links (an empty list for an unknown subject), ordered by
    day, as STRM's Data Subjects service answered `{data_subject_id, [{key_link, expiry_time}]}`."""
    out: dict[str, list[KeyLinkInfo]] = {s: [] for s in subjects}
    ds = _data_subjects(spark, config)
    if ds is None or not subjects:
        return out
    entries = ds.join(F.broadcast(_subjects_df(spark, subjects)), "dataSubject").select(
        "dataSubject", "keyLink", "expiresAt"
    )
    store = KeyStore.for_job(spark, config, with_master=False)
    if store.exists():
        keys = store.keys().select(
            "keyLink", F.col("day").alias("__day"), F.lit(True).alias("__present")
        )
        entries = entries.join(keys, "keyLink", "left")
    else:
        entries = entries.withColumn("__day", F.lit(None).cast("date")).withColumn(
            "__present", F.lit(False)
        )
    for r in entries.collect():
        out[r["dataSubject"]].append(
            KeyLinkInfo(r["keyLink"], r["expiresAt"], r["__day"], bool(r["__present"]))
        )
    for links in out.values():
        links.sort(key=lambda k: (k.day or date.max, k.expires_at, k.key_link))
    return out
