"""The shipped demo job (conf/demo.yaml) on generated data: consent, purposes, masking."""

from __future__ import annotations

from pathlib import Path

from conftest import DEMO_ROWS as ROWS

from strm_spark.crypto import cells as crypto
from strm_spark.crypto.masking import hmac_sha256_hex

MAPPING = {"all": [0, 1, 2, 3], "analytics": [0, 1], "marketing": [0, 2], "none": []}
PII = ("customer_id", "ip_address", "email", "phone")


def _consent(value: str) -> list[int]:
    """The expected consent of a generated row, computed independently of Spark."""
    if value in MAPPING:
        return MAPPING[value]
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        return [int(v) for v in text[1:-1].split(",") if v.strip()]
    if text.isdigit():
        return [int(text)]
    return [0]


def _table(spark, path):
    return {r["event_id"]: r for r in spark.read.format("delta").load(path).collect()}


def test_summary(demo):
    config, summary, gen, _, _, _ = demo
    assert summary.rows_read == ROWS
    assert summary.rows_rejected == gen.invalid_rows == 30
    assert len(summary.rejected_by_reason) == 5
    assert summary.keys_created == summary.keys_needed > 0
    assert set(summary.derived_rows) == {"analytics", "marketing"}


def test_encrypted_table_has_no_plaintext_pii(spark, demo):
    config, _, _, rows, _, keys = demo
    enc = _table(spark, config.encrypted.path)
    assert len(enc) == ROWS - 30
    for event_id, r in enc.items():
        src = rows[event_id]
        for f in PII:
            if src[f]:
                assert r[f] != src[f]
                assert crypto.decrypt(keys[r["strmMeta"]["keyLink"]], r[f]) == src[f]
            else:
                assert r[f] is None
        assert r["strmMeta"]["consentLevels"] == _consent(src["consent"])


def _check_derived(spark, demo, name, passes, decrypted, masked=()):
    config, summary, _, rows, seed, keys = demo
    valid = _table(spark, config.encrypted.path)
    out = _table(spark, next(d.path for d in config.derived if d.name == name))
    expected = {e for e, r in valid.items() if passes(_consent(rows[e]["consent"]))}
    assert set(out) == expected and expected
    assert summary.derived_rows[name] == len(expected)
    for event_id, r in out.items():
        src = rows[event_id]
        for f in PII:
            if not src[f]:
                assert r[f] is None
            elif f in masked:
                plain_or_ct = src[f] if f in decrypted else valid[event_id][f]
                assert r[f] == hmac_sha256_hex(seed, plain_or_ct)
            elif f in decrypted:
                assert r[f] == src[f]
            else:
                assert r[f] == valid[event_id][f]  # still the ciphertext
                assert crypto.decrypt(keys[r["strmMeta"]["keyLink"]], r[f]) == src[f]
        assert r["url"] == src["url"]


def test_cumulative_analytics_output(spark, demo):
    _check_derived(
        spark,
        demo,
        "analytics",
        lambda c: bool(c) and max(c) >= 1,
        decrypted={"customer_id", "ip_address"},
        masked={"customer_id"},
    )


def test_granular_marketing_output(spark, demo):
    _check_derived(spark, demo, "marketing", lambda c: 2 in c, decrypted={"email"})


def test_no_plaintext_pii_in_any_delta_log(demo):
    config, _, _, rows, _, _ = demo
    secrets = {
        r[f].encode() for r in rows.values() for f in ("customer_id", "email", "phone") if r[f]
    }
    tables = [
        Path(config.encrypted.path),
        Path(config.rejected.path),
        Path(config.data_subjects.path),
        Path(config.key_store),
    ] + [Path(d.path) for d in config.derived]
    logs = [p for t in tables for p in t.rglob("_delta_log/*.json")]
    assert len(logs) >= 2 * len(tables)
    for log in logs:
        data = log.read_bytes()
        assert not [s for s in secrets if s in data], f"plaintext PII in {log}"


def test_run_summary_json_is_written(spark, demo):
    from helpers import run_record

    _, summary, _, _, _, _ = demo
    written = run_record(spark, summary.outputs["run summary"], summary.run_id)
    assert written["rows_rejected"] == 30
    assert written["derived_rows"] == summary.derived_rows
