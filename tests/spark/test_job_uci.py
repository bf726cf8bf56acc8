"""End to end on the real UCI file STRM processed, compared with STRM's own output."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import BLOGPOST, UCI_CSV, require_shared
from helpers import job_config

from strm_spark.crypto import cells as crypto
from strm_spark.pipeline.run import run_job

FIELDS = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _s(value) -> str:
    return "" if value is None else str(value)


@pytest.fixture(scope="module")
def uci_run(spark, tmp_path_factory):
    require_shared()
    out = tmp_path_factory.mktemp("uci")
    config = job_config(UCI_CSV, out)
    summary = run_job(spark, config)
    return config, summary, out


@pytest.fixture(scope="module")
def decrypted(spark, uci_run):
    """Encrypted rows joined with their keysets and decrypted in Python (the reference's way)."""
    config, _, _ = uci_run
    enc = spark.read.format("delta").load(config.encrypted.path)
    keys = spark.read.format("delta").load(f"{config.key_store}/keys")
    rows = enc.join(keys, enc["strmMeta.keyLink"] == keys["keyLink"], "left").collect()
    out = []
    for r in rows:
        assert r["keyset"] is not None, "a row's key link has no key in the key store"
        d = {f: r[f] for f in FIELDS}
        d["CustomerID"] = crypto.decrypt(bytes(r["keyset"]), r["CustomerID"])
        d["ciphertext"] = r["CustomerID"]
        d["keyLink"] = r["strmMeta"]["keyLink"]
        d["timestamp"] = r["strmMeta"]["timestamp"]
        d["day"] = r["strmDay"]
        out.append(d)
    return out


def _row_key(d) -> tuple:
    return tuple(_s(d[f]) for f in FIELDS)


def test_summary_counts(spark, uci_run):
    _, summary, _ = uci_run
    assert summary.rows_read == 19_998
    assert summary.rows_encrypted == 19_998
    assert summary.rows_rejected == 0
    assert summary.keys_needed == 655
    assert summary.keys_created == 655
    assert summary.derived_rows == {"decrypted-0": 19_998}
    from helpers import run_record

    written = run_record(spark, summary.outputs["run summary"], summary.run_id)
    assert written["rows_read"] == 19_998 and written["keys_created"] == 655


def test_every_pii_cell_decrypts_back_to_the_input(uci_run, decrypted):
    expected = Counter(_row_key(r) for r in _csv_rows(UCI_CSV))
    got = Counter(_row_key(d) for d in decrypted)
    assert got == expected
    # PII is never stored in clear in the encrypted table.
    assert all(d["ciphertext"] is None or d["ciphertext"] != d["CustomerID"] for d in decrypted)
    assert any(d["ciphertext"] for d in decrypted)


def test_key_links_are_one_per_customer_and_utc_day(decrypted):
    by_group = defaultdict(set)
    by_link = defaultdict(set)
    for d in decrypted:
        day = datetime.fromtimestamp(d["timestamp"] / 1000, tz=UTC).date()
        assert d["day"] == day
        group = (_s(d["CustomerID"]), day)
        by_group[group].add(d["keyLink"])
        by_link[d["keyLink"]].add(group)
    assert all(len(links) == 1 for links in by_group.values())
    assert all(len(groups) == 1 for groups in by_link.values())
    assert len(by_link) == 655


def test_grouping_and_timestamps_match_strm_output(decrypted):
    strm = _csv_rows(BLOGPOST / "strm_output_decrypted-0.csv")
    strm_groups = defaultdict(set)
    for r in strm:
        day = datetime.fromtimestamp(int(r["strmMeta.timestamp"]) / 1000, tz=UTC).date()
        strm_groups[r["strmMeta.keyLink"]].add((r["CustomerID"], day))
    ours = {(_s(d["CustomerID"]), d["day"]) for d in decrypted}
    assert all(len(g) == 1 for g in strm_groups.values())
    assert {next(iter(g)) for g in strm_groups.values()} == ours
    strm_ts = Counter(
        (r["InvoiceNo"], r["StockCode"], r["InvoiceDate"], int(r["strmMeta.timestamp"]))
        for r in strm
    )
    our_ts = Counter(
        (d["InvoiceNo"], d["StockCode"], d["InvoiceDate"], d["timestamp"]) for d in decrypted
    )
    assert our_ts == strm_ts


def test_derived_cumulative_2_equals_strm_output(spark, uci_run):
    config, _, _ = uci_run
    derived = spark.read.format("delta").load(config.derived[0].path).collect()
    got = Counter(
        (
            *(_s(r[f]) for f in FIELDS),
            r["strmMeta"]["eventContractRef"],
            str(r["strmMeta"]["nonce"]),
            str(r["strmMeta"]["timestamp"]),
            json.dumps(r["strmMeta"]["consentLevels"]).replace(" ", ""),
        )
        for r in derived
    )
    strm = _csv_rows(BLOGPOST / "strm_output_decrypted-0.csv")
    expected = Counter(
        (
            *(r[f] for f in FIELDS),
            r["strmMeta.eventContractRef"],
            r["strmMeta.nonce"],
            r["strmMeta.timestamp"],
            r["strmMeta.consentLevels"],
        )
        for r in strm
    )
    assert got == expected


def test_data_subjects_link_each_customer_to_its_keys(spark, uci_run, decrypted):
    config, _, _ = uci_run
    subjects = spark.read.format("delta").load(config.data_subjects.path).collect()
    expected = {(d["CustomerID"], d["keyLink"]) for d in decrypted if d["CustomerID"]}
    assert {(r["dataSubject"], r["keyLink"]) for r in subjects} == expected
    assert len(subjects) == len(expected)
    assert all(r["expiresAt"] is not None for r in subjects)


def test_key_store_holds_no_key_field_values_and_correct_expiry(spark, uci_run):
    config, _, _ = uci_run
    keys = spark.read.format("delta").load(f"{config.key_store}/keys").collect()
    ids = {r["CustomerID"] for r in _csv_rows(UCI_CSV)}
    assert len(keys) == 655
    for k in keys:
        assert k["keyHash"] not in ids and len(k["keyHash"]) == 64
        assert k["groupId"] == "test-group"
        expected = (
            datetime(k["day"].year, k["day"].month, k["day"].day, tzinfo=UTC).timestamp()
            + 86400 * 2557
        )
        assert k["expiresAt"].replace(tzinfo=UTC).timestamp() == expected
        keyset = json.loads(bytes(k["keyset"]))
        assert keyset["key"][0]["keyData"]["typeUrl"].endswith("AesSivKey")
        assert keyset["key"][0]["outputPrefixType"] == "TINK"


def _delta_log_values(table: Path) -> list[str]:
    """Every statistic and partition value Delta wrote into a table's log."""
    values: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif node is not None:
            values.append(str(node))

    for log in sorted((table / "_delta_log").glob("*.json")):
        for line in log.read_text().splitlines():
            action = json.loads(line)
            add = action.get("add")
            if add:
                walk(add.get("partitionValues"))
                if add.get("stats"):
                    walk(json.loads(add["stats"]))
    return values


def test_no_plaintext_pii_in_delta_statistics(uci_run):
    config, _, out = uci_run
    ids = {r["CustomerID"] for r in _csv_rows(UCI_CSV) if r["CustomerID"]}
    # (The rejected table is empty here; test_job_rejects checks it with rejected rows.)
    tables = [
        Path(config.encrypted.path),
        Path(config.derived[0].path),
        Path(config.data_subjects.path),
        Path(config.key_store) / "keys",
    ]
    for table in tables:
        values = _delta_log_values(table)
        assert values, f"{table} has no statistics at all; the check would be vacuous"
        leaked = ids.intersection(values)
        assert not leaked, f"{table.name}: {len(leaked)} customer ids in _delta_log statistics"


def test_second_run_of_the_group_creates_no_keys(spark, uci_run):
    config, _, _ = uci_run
    again = run_job(spark, config)
    assert again.keys_created == 0
    assert again.keys_reused == 655
    assert spark.read.format("delta").load(f"{config.key_store}/keys").count() == 655
    assert again.data_subject_links_added == 0
