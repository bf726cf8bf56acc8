"""Nested and repeated PII fields (JSON sources): every element encrypted, purpose rules apply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import job_config, key_ring

from strm_spark.crypto import cells as crypto
from strm_spark.pipeline.run import run_job

CONTRACT = {
    "schema": {
        "name": "nested",
        "nodes": [
            {"name": "id", "type": "STRING", "required": True},
            {
                "name": "customer",
                "type": "NODE",
                "nodes": [
                    {"name": "id", "type": "STRING"},
                    {"name": "email", "type": "STRING"},
                    {"name": "tags", "type": "STRING", "repeated": True},
                ],
            },
            {"name": "phones", "type": "STRING", "repeated": True},
            {"name": "ts", "type": "STRING"},
        ],
    },
    "key_field": "customer/id",
    "data_subject_field": "customer/id",
    "pii_fields": {"customer/id": 1, "customer/email": 2, "customer/tags": 2, "phones": 1},
}
ROWS = [
    {
        "id": "r1",
        "customer": {"id": "c1", "email": "c1@x.nl", "tags": ["vip", None]},
        "phones": ["+31 1", "+31 2"],
        "ts": "2024-03-01 10:00:00",
    },
    {
        "id": "r2",
        "customer": {"id": "c1", "email": None, "tags": []},
        "phones": None,
        "ts": "2024-03-01 11:00:00",
    },
    {"id": "r3", "customer": None, "phones": [], "ts": "2024-03-02 10:00:00"},
]


@pytest.fixture(scope="module")
def nested_run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("nested")
    src = root / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    config = job_config(
        src,
        root / "out",
        contract=CONTRACT,
        fmt="json",
        consent={"default_levels": [1, 2]},
        timestamp={"field": "ts", "pattern": "yyyy-MM-dd HH:mm:ss", "default_time_zone": "UTC"},
        outputs={
            "encrypted": str(root / "out/encrypted"),
            "data_subjects": str(root / "out/subjects"),
            "rejected": str(root / "out/rejected"),
            "derived": [
                {
                    "name": "c1",
                    "path": str(root / "out/c1"),
                    "consent_type": "CUMULATIVE",
                    "consent_levels": [1],
                },
                {
                    "name": "g2",
                    "path": str(root / "out/g2"),
                    "consent_type": "GRANULAR",
                    "consent_levels": [2],
                },
            ],
        },
    )
    summary = run_job(spark, config)
    return config, summary, key_ring(spark, config.key_store)


def _table(spark, path):
    return {r["id"]: r for r in spark.read.format("delta").load(path).collect()}


def test_nested_and_repeated_pii_are_encrypted(spark, nested_run):
    config, summary, keys = nested_run
    assert (
        summary.rows_rejected == 0 and summary.keys_needed == 2
    )  # (c1, Mar 1) and ("" for no customer, Mar 2)
    enc = _table(spark, config.encrypted.path)
    r1 = enc["r1"]
    ks = keys[r1["strmMeta"]["keyLink"]]
    assert r1["customer"]["id"] != "c1" and crypto.decrypt(ks, r1["customer"]["id"]) == "c1"
    assert crypto.decrypt(ks, r1["customer"]["email"]) == "c1@x.nl"
    assert (
        crypto.decrypt(ks, r1["customer"]["tags"][0]) == "vip" and r1["customer"]["tags"][1] is None
    )
    assert [crypto.decrypt(ks, p) for p in r1["phones"]] == ["+31 1", "+31 2"]
    assert enc["r2"]["strmMeta"]["keyLink"] == r1["strmMeta"]["keyLink"]  # same customer, same day
    assert enc["r2"]["customer"]["email"] is None and enc["r2"]["customer"]["tags"] == []
    assert enc["r2"]["phones"] is None
    assert enc["r3"]["customer"] is None and enc["r3"]["phones"] == []


def test_purpose_rules_on_nested_fields(spark, nested_run):
    config, _, _ = nested_run
    enc = _table(spark, config.encrypted.path)
    c1 = _table(spark, config.derived[0].path)["r1"]
    assert c1["customer"]["id"] == "c1" and c1["phones"] == ["+31 1", "+31 2"]  # level 1 decrypted
    assert c1["customer"]["email"] == enc["r1"]["customer"]["email"]  # level 2 stays ciphertext
    g2 = _table(spark, config.derived[1].path)["r1"]
    assert g2["customer"]["email"] == "c1@x.nl" and g2["customer"]["tags"] == ["vip", None]
    assert (
        g2["customer"]["id"] == enc["r1"]["customer"]["id"] and g2["phones"] == enc["r1"]["phones"]
    )


def test_nested_subject_and_no_nested_pii_in_statistics(spark, nested_run):
    config, _, _ = nested_run
    subjects = spark.read.format("delta").load(config.data_subjects.path).collect()
    assert {r["dataSubject"] for r in subjects} == {"c1"}
    for table in (config.derived[0].path, config.derived[1].path, config.encrypted.path):
        for log in (Path(table) / "_delta_log").glob("*.json"):
            for line in log.read_text().splitlines():
                add = json.loads(line).get("add")
                if add and add.get("stats"):
                    stats = json.loads(add["stats"])
                    assert "customer" not in stats.get(
                        "minValues", {}
                    ) and "phones" not in stats.get("minValues", {})
                    assert "strmDay" in stats.get("minValues", {})


def test_export_decrypts_nested_and_repeated_pii(spark, nested_run, tmp_path):
    from strm_spark.subjects import export_subject

    config, _, _ = nested_run
    result = export_subject(spark, config, "c1", tmp_path / "export")
    assert result.files["encrypted.jsonl"] == 2
    rows = {
        r["id"]: r
        for r in map(json.loads, (tmp_path / "export" / "encrypted.jsonl").read_text().splitlines())
    }
    assert (
        rows["r1"]["customer"] == ROWS[0]["customer"] and rows["r1"]["phones"] == ROWS[0]["phones"]
    )
    assert rows["r2"]["customer"] == ROWS[1]["customer"] and rows["r2"]["phones"] is None


def test_both_encryption_engines_write_the_same_tables(spark, tmp_path):
    # The JVM (the default when the UDF jar is loaded) and the Python workers must write the
    # same ciphertext, also for repeated fields and a malformed line's raw record. The second
    # run reuses the first run's keys (same group, values and days).
    src = tmp_path / "in.jsonl"
    src.write_text(
        "\n".join(json.dumps(r) for r in ROWS) + '\n{"id": "r4", "customer": {"id": "c1"\n'
    )
    tables = {}
    for engine in ("jvm", "python"):
        out = tmp_path / engine
        config = job_config(
            src,
            out,
            contract=CONTRACT,
            fmt="json",
            consent={"default_levels": [1, 2]},
            timestamp={"field": "ts", "pattern": "yyyy-MM-dd HH:mm:ss", "default_time_zone": "UTC"},
            keys={"group_id": "engines", "store": str(tmp_path / "keystore")},
            outputs={
                "encrypted": str(out / "encrypted"),
                "data_subjects": str(out / "subjects"),
                "rejected": str(out / "rejected"),
            },
        )
        summary = run_job(spark, config, engine=engine)
        assert summary.rows_rejected == 1
        enc = spark.read.format("delta").load(config.encrypted.path)
        rej = spark.read.format("delta").load(config.rejected.path)
        # A malformed line gets the run's own quarantine key: compare its decrypted raw record.
        keys = key_ring(spark, config.key_store)
        tables[engine] = (
            sorted(enc.select("id", "customer", "phones", "strmMeta.keyLink").collect()),
            [
                (crypto.decrypt(keys[r["strmMeta"]["keyLink"]], r["rawRecord"]), r["rejectReasons"])
                for r in rej.collect()
            ],
        )
    assert tables["jvm"][0] == tables["python"][0]
    assert tables["jvm"][1] == tables["python"][1]
    assert tables["jvm"][1][0][0] == '{"id": "r4", "customer": {"id": "c1"'
