"""Data subjects: forget (provably physical), crash recovery, purge-expired, export, key links.

One small job run (with deletion vectors on, as Databricks creates tables) is copied for each
test that changes its outputs, so the tests stay independent and quick.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import subjects_data as sd
from helpers import run_record
from pyspark.sql import functions as F

from strm_spark.crypto import cells as crypto
from strm_spark.crypto.masking import hmac_sha256_hex
from strm_spark.errors import SubjectsError
from strm_spark.keys.store import KeyStore
from strm_spark.pipeline.run import run_job
from strm_spark.subjects import (
    audit,
    export_subject,
    forget,
    key_links,
    list_subjects,
    purge_expired,
)

DV_DEFAULT = "spark.databricks.delta.properties.defaults.enableDeletionVectors"


@pytest.fixture(scope="module")
def base_run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("subjects") / "base"
    config = sd.write_inputs(root)
    spark.conf.set(DV_DEFAULT, "true")
    try:
        summary = run_job(spark, config)
    finally:
        spark.conf.unset(DV_DEFAULT)
    return root, summary


def _roots(config) -> list[Path]:
    """Everything forget must clean: key store, derived, rejected, data subjects."""
    return [
        Path(config.key_store),
        *[Path(d.path) for d in config.derived],
        Path(config.rejected.path),
        Path(config.data_subjects.path),
    ]


def _needles(spark, config) -> dict[str, bytes]:
    """What must not survive a forget of FORGET: its id and PII, and for each of its keys the
    keyset, the key material and the key hash. (Non-PII columns such as `note` may keep Delta
    statistics by design, and stay in the encrypted table.)"""
    needles = {"subject id": sd.FORGET.encode(), "name": sd.FORGET_NAME.encode()}
    ds = (
        spark.read.format("delta")
        .load(config.data_subjects.path)
        .where(F.col("dataSubject") == sd.FORGET)
    )
    keys = KeyStore(spark, config.key_store).keys().join(ds.select("keyLink"), "keyLink").collect()
    assert len(keys) == len(sd.FORGET_DAYS)
    for k in keys:
        for part, value in sd.key_material(bytes(k["keyset"])).items():
            needles[f"{part} {k['keyLink'][:8]}"] = value
        needles[f"key hash {k['keyLink'][:8]}"] = k["keyHash"].encode()
    return needles


def _decrypted(spark, config, email: str) -> list[dict]:
    """Rows of the encrypted table decrypted with the key store, for one subject."""
    enc = spark.read.format("delta").load(config.encrypted.path)
    keys = KeyStore(spark, config.key_store).keys()
    out = []
    for r in enc.join(keys, enc["strmMeta.keyLink"] == keys["keyLink"]).collect():
        value = crypto.decrypt(bytes(r["keyset"]), r["email"])
        if value == email:
            out.append(
                {
                    "event_id": r["event_id"],
                    "email": value,
                    "name": crypto.decrypt(bytes(r["keyset"]), r["name"]),
                }
            )
    return out


def test_run_summary_says_keysets_are_in_cleartext(base_run):
    _, summary = base_run
    assert any("cleartext" in n for n in summary.notes)
    assert summary.rows_rejected == 4


def test_forget_survives_crashes_and_leaves_no_byte_of_the_subject(spark, base_run, tmp_path):
    """Stop after step 1, then after step 2 (as crashes would), then run to completion; then no
    file under the key store, derived, rejected or data subjects folders holds the subject."""
    config = sd.clone(base_run[0], tmp_path / "run")
    needles = _needles(spark, config)
    before, _ = _scan(config, needles)
    # The scan sees every kind of needle before the forget (else it would prove nothing).
    # (The raw key bytes are searched for too, though stores only ever hold them base64-encoded.)
    for kind in ("subject id", "name", "keyset", "key value (base64)", "key hash"):
        assert any(name.startswith(kind) for name in before), f"scan cannot see {kind}"
    keep_before = _decrypted(spark, config, sd.KEEP)
    enc_rows = spark.read.format("delta").load(config.encrypted.path).count()
    derived = spark.read.format("delta").load(config.derived[0].path)

    first = forget(spark, config, [sd.FORGET], stop_after_step=1)
    assert not first.completed and first.stopped_after_step == 1 and first.keys_removed == 4
    assert "STOPPED after step 1" in first.render()
    assert derived.where(F.col("email") == sd.FORGET).count() == 12  # rows not deleted yet
    assert [k.key_present for k in key_links(spark, config, [sd.FORGET])[sd.FORGET]] == [False] * 4

    second = forget(spark, config, [sd.FORGET], stop_after_step=2)
    assert second.keys_removed == 0 and second.subjects_found == 1
    # The keys are gone, so the derived rows are found by key link over the whole tables.
    assert second.derived_rows_removed == {"all": 12, "min": 12}
    # One rejected row under its own key, two under the run's quarantine key.
    assert second.rejected_rows_removed == 3 and second.quarantined_rows_removed == 2
    assert second.subject_entries_removed == len(sd.FORGET_DAYS)
    assert derived.where(F.col("email") == sd.FORGET).count() == 0
    left, _ = _scan(config, needles)
    assert left.get("subject id") and left.get(
        "name"
    )  # deleted, but still in files until the purge

    third = forget(spark, config, [sd.FORGET])
    assert third.completed and third.subjects_found == 0 and third.keys_removed == 0
    assert third.files_rewritten > 0, "deletion vectors were on: REORG must have rewritten files"
    assert third.files_removed > 0
    assert set(third.tables_purged) == {
        "keys",
        "derived all",
        "derived min",
        "rejected",
        "data subjects",
    }

    after, files = _scan(config, needles)
    assert files > 40
    assert not after, f"left behind: {after}"
    # The encrypted table is untouched (its rows of the subject can no longer be decrypted) ...
    assert spark.read.format("delta").load(config.encrypted.path).count() == enc_rows
    # ... and everyone else's data still decrypts.
    assert sorted(r["event_id"] for r in _decrypted(spark, config, sd.KEEP)) == sorted(
        r["event_id"] for r in keep_before
    )
    assert len(keep_before) == 2 * len(sd.KEEP_DAYS)
    assert (
        spark.read.format("delta").load(config.rejected.path).count() == 1
    )  # the keeper's quarantined row

    # The audit names the subject by keyed hash only; the crashed attempts show as started.
    records = audit.read(spark, config.audit).orderBy("at").collect()
    assert [r["status"] for r in records] == ["started", "started", "started", "completed"]
    key = KeyStore(spark, config.key_store).audit_key(config.group_id)
    assert {tuple(r["subjectHashes"]) for r in records} == {(hmac_sha256_hex(key, sd.FORGET),)}
    assert records[-1]["filesRemoved"] == third.files_removed and records[-1]["keysRemoved"] == 0
    assert sd.FORGET not in json.dumps([r.asDict() for r in records], default=str)
    assert sd.FORGET not in first.render() + second.to_json() + third.render()

    # Nothing pending any more: a forget of nobody purges nothing.
    nothing = forget(spark, config, ["nobody@example.org"])
    assert nothing.completed and nothing.tables_purged == {} and nothing.keys_removed == 0
    assert first.tombstones == 1 and "tombstones written" in first.render()

    # Erasure that sticks: the same source file again (a re-delivery), and the person stays
    # forgotten: 12 valid rows, a bad amount, a bad time and a malformed record are dropped.
    rerun = run_job(spark, config)
    assert rerun.rows_tombstoned == 15 and "rows dropped      15" in rerun.render()
    assert rerun.rows_read == rerun.rows_encrypted + rerun.rows_rejected + rerun.rows_tombstoned
    assert run_record(spark, rerun.outputs["run summary"], rerun.run_id)["rows_tombstoned"] == 15
    assert key_links(spark, config, [sd.FORGET])[sd.FORGET] == []
    for d in config.derived:
        assert (
            spark.read.format("delta").load(d.path).where(F.col("email") == sd.FORGET).count() == 0
        )
    again, _ = _scan(config, {k: v for k, v in needles.items() if k in ("subject id", "name")})
    assert not again, f"came back: {again}"
    # Events after the forget are new data, processed as usual.
    with open(Path(config.source.path), "a", encoding="utf-8") as fh:
        fh.write(f"ev-new,{sd.FORGET},{sd.FORGET_NAME},later,5,2099-01-05 10:00:00\n")
    later = run_job(spark, config)
    assert (
        later.rows_tombstoned == 15 and len(key_links(spark, config, [sd.FORGET])[sd.FORGET]) == 1
    )


def _scan(config, needles):
    return sd.scan(_roots(config), needles)


def test_purge_expired_holds_back_keys_whose_day_allows_no_such_expiry(spark, base_run, tmp_path):
    """A key whose expiresAt is earlier than its day and keys.retention_days allow (an expiry
    set under another retention, or rows put on a wrong day) is not destroyed, and neither are
    its data subjects entries (#33)."""
    config = sd.clone(base_run[0], tmp_path / "run")
    store = KeyStore(spark, config.key_store)
    day = date(2024, 1, 10)
    now = sd.expires(day) - timedelta(days=10)  # keys of Jan 10 are not due yet
    entries = spark.read.format("delta").load(config.data_subjects.path)
    linked = {r["keyLink"] for r in entries.select("keyLink").collect()}
    early = next(
        k
        for k in store.keys().collect()
        if k["kind"] == "row" and k["day"] == day and k["keyLink"] in linked
    )
    link = early["keyLink"]
    for table in (store.keys_path, config.data_subjects.path):
        spark.sql(
            f"UPDATE delta.`{table}` SET expiresAt = expiresAt - INTERVAL 20 DAYS "
            f"WHERE keyLink = '{link}'"
        )
    due = [
        k
        for k in store.keys().collect()
        if k["expiresAt"].replace(tzinfo=UTC) <= now and k["keyLink"] != link
    ]
    report = purge_expired(spark, config, now)
    assert report.completed and report.keys_removed == len(due) == report.key_links
    assert any("1 expired keys were NOT purged" in n for n in report.notes), report.notes
    assert link in {k["keyLink"] for k in store.keys().collect()}
    entries = spark.read.format("delta").load(config.data_subjects.path)
    assert entries.where(F.col("keyLink") == link).count() > 0  # a key with entries was held


def test_purge_expired_with_a_fixed_now(spark, base_run, tmp_path):
    config = sd.clone(base_run[0], tmp_path / "run")
    # Copy-on-write this time: no deletion vectors on the tables purge-expired deletes from.
    for path in [
        config.data_subjects.path,
        config.rejected.path,
        f"{config.key_store}/keys",
        *[d.path for d in config.derived],
    ]:
        spark.sql(
            f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'false')"
        )
    now = datetime(2024, 2, 5, 12, tzinfo=UTC)  # keys of days up to Jan 5 expire (day + 1 + 30)
    cutoff_day = date(2024, 1, 5)
    assert sd.expires(cutoff_day) <= now < sd.expires(date(2024, 1, 6))
    store = KeyStore(spark, config.key_store)
    keys_before = store.keys().collect()
    expired = [k for k in keys_before if k["kind"] == "row" and k["day"] <= cutoff_day]
    assert expired and len(expired) < len(keys_before)
    assert all(k["expiresAt"].replace(tzinfo=UTC) == sd.expires(k["day"]) for k in expired)
    derived = {d.name: spark.read.format("delta").load(d.path).collect() for d in config.derived}
    gone_ids = {r["event_id"] for r in derived["all"] if r["strmDay"] <= cutoff_day}
    entries = spark.read.format("delta").load(config.data_subjects.path).collect()
    expired_entries = [r for r in entries if r["expiresAt"].replace(tzinfo=UTC) <= now]
    kept_ids = {r["event_id"] for r in derived["all"] if r["strmDay"] > cutoff_day}

    report = purge_expired(spark, config, now)

    assert report.completed and report.expired_before == "2024-02-05T12:00:00Z"
    assert report.keys_removed == len(expired) == report.key_links
    assert report.derived_rows_removed["all"] == len(gone_ids)
    remaining = store.keys().collect()
    assert {k["keyLink"] for k in remaining} == {k["keyLink"] for k in keys_before} - {
        k["keyLink"] for k in expired
    }
    assert all(k["expiresAt"].replace(tzinfo=UTC) > now for k in remaining)
    assert {
        r["event_id"] for r in spark.read.format("delta").load(config.derived[0].path).collect()
    } == kept_ids
    ds = spark.read.format("delta").load(config.data_subjects.path).collect()
    assert ds and all(r["expiresAt"].replace(tzinfo=UTC) > now for r in ds)
    assert report.subject_entries_removed == len(expired_entries) > 0
    assert report.subjects_found == len({r["dataSubject"] for r in expired_entries})
    # The expired rows are physically gone from the derived tables' data files. (event_id is not
    # PII, so Delta keeps min/max statistics of it in _delta_log, by design.)
    found, _ = sd.scan(
        [Path(d.path) for d in config.derived],
        {i: i.encode() for i in sorted(gone_ids)[:10] + sorted(kept_ids)[:3]},
        data_files_only=True,
    )
    assert set(found) == set(sorted(kept_ids)[:3])
    last = audit.read(spark, config.audit).where("status = 'completed'").first()
    assert last["action"] == "purge-expired" and last["keysRemoved"] == len(expired)
    assert last["expiredBefore"].replace(tzinfo=UTC) == now

    assert report.files_rewritten == 0 and report.files_removed > 0

    again = purge_expired(spark, config, now, stop_after_step=2)
    assert (
        again.keys_removed == 0 and again.derived_total == 0 and again.subject_entries_removed == 0
    )


def test_export_of_a_subject(spark, base_run, tmp_path):
    config = sd.clone(base_run[0], tmp_path / "run")
    result = export_subject(spark, config, sd.KEEP, tmp_path / "keep")
    out = tmp_path / "keep"
    manifest = json.loads((out / "manifest.json").read_text())
    lines = [json.loads(x) for x in (out / "encrypted.jsonl").read_text().splitlines()]
    expected = [r for r in sd.rows()[0] if r["email"] == sd.KEEP]
    assert sorted(
        (r["event_id"], r["email"], r["name"], r["note"], r["amount"], r["ts"]) for r in lines
    ) == sorted(
        (r["event_id"], r["email"], r["name"], r["note"], int(r["amount"]), r["ts"])
        for r in expected
    )
    assert manifest["data_subject_id"] == sd.KEEP
    enc_table = next(t for t in manifest["tables"] if t["table"] == "encrypted")
    assert (
        enc_table["partitions_read"]
        == [d.isoformat() for d in sd.KEEP_DAYS]
        == result.partitions_read
    )
    assert enc_table["rows"] == len(expected) == manifest["files"]["encrypted.jsonl"]["rows"]
    stamps = sorted(f"{r['ts'].replace(' ', 'T')}Z" for r in expected)
    assert manifest["time_range"] == {"from": stamps[0], "to": stamps[-1]}
    assert len(manifest["key_links"]) == len(sd.KEEP_DAYS)
    # The keeper's quarantined (bad timestamp) row is theirs too, found by decrypting it.
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert [r["event_id"] for r in rejected] == ["ev-bad4"] and rejected[0]["email"] == sd.KEEP
    assert oct((out / "encrypted.jsonl").stat().st_mode & 0o777) == "0o600"

    # CSV, for a subject with rejected rows of all kinds.
    export_subject(spark, config, sd.FORGET, tmp_path / "forget", fmt="csv")
    rows = sd.csv_rows((tmp_path / "forget" / "encrypted.csv").read_text())
    assert len(rows) == 12 and {r["name"] for r in rows} == {sd.FORGET_NAME}
    assert {"strmMeta.keyLink", "strmMeta.timestamp", "strmDay"} <= set(rows[0])
    rejected = sd.csv_rows((tmp_path / "forget" / "rejected.csv").read_text())
    assert sorted(r["rejectReasons"] for r in rejected) == sorted(
        [
            "[\"field 'amount' is not a valid INTEGER\"]",
            "[\"timestamp field 'ts' does not match pattern 'yyyy-MM-dd HH:mm:ss'\"]",
            '["malformed record (wrong number of fields or bad quoting)"]',
        ]
    )
    assert any(sd.FORGET in r["rawRecord"] for r in rejected)  # the decrypted raw record

    # An unknown subject: an empty export, not an error; an existing folder is refused.
    empty = export_subject(spark, config, "nobody@example.org", tmp_path / "nobody")
    assert (
        empty.files == {"encrypted.jsonl": 0, "rejected.jsonl": 0} and empty.partitions_read == []
    )
    with pytest.raises(SubjectsError, match="not empty"):
        export_subject(spark, config, sd.KEEP, tmp_path / "keep")


def test_list_pages_and_key_links(spark, base_run):
    config = sd.config_at(base_run[0])
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = list_subjects(spark, config, page_size=4, page_token=token)
        seen += page.subjects
        pages += 1
        token = page.next_page_token
        if token is None:
            break
        assert sd.KEEP not in token and "@" not in token
    expected = sorted({sd.FORGET, sd.KEEP, *sd.OTHERS})
    assert seen == expected and pages == 3
    with pytest.raises(SubjectsError, match="invalid page token"):
        list_subjects(spark, config, page_token="garbage!")
    with pytest.raises(SubjectsError, match="page size"):
        list_subjects(spark, config, page_size=0)

    links = key_links(spark, config, [sd.FORGET, "nobody@example.org"])
    assert links["nobody@example.org"] == []
    mine = links[sd.FORGET]
    assert [k.day for k in mine] == sd.FORGET_DAYS
    assert [k.expires_at.replace(tzinfo=UTC) for k in mine] == [
        sd.expires(d) for d in sd.FORGET_DAYS
    ]
    assert all(k.key_present for k in mine) and len({k.key_link for k in mine}) == 4


def test_forget_refuses_non_delta_outputs_before_changing_anything(spark, base_run, tmp_path):
    root = tmp_path / "run"
    sd.clone(base_run[0], root)
    doc = json.loads((root / "job.json").read_text())
    doc["outputs"]["derived"][1]["format"] = "parquet"
    (root / "job.json").write_text(json.dumps(doc))
    config = sd.config_at(root)
    keys_before = KeyStore(spark, config.key_store).keys().count()
    with pytest.raises(SubjectsError, match="only be erased from Delta tables.*min"):
        forget(spark, config, [sd.FORGET])
    assert KeyStore(spark, config.key_store).keys().count() == keys_before


# --- the command line -----------------------------------------------------------------------------


def test_cli_list_keylinks_export_and_forget(spark, base_run, tmp_path, capsys, monkeypatch):
    from strm_spark.cli.main import main

    config = sd.clone(base_run[0], tmp_path / "run")
    job = config.config_path

    # list: pages of 4 with a token, then the same as JSON in one page.
    seen, token = [], None
    while True:
        assert (
            main(
                ["subjects", "list", job, "--page-size", "4"]
                + (["--page-token", token] if token else [])
            )
            == 0
        )
        lines = capsys.readouterr().out.splitlines()
        token = (
            lines[-1].split(": ", 1)[1]
            if lines and lines[-1].startswith("next-page-token: ")
            else None
        )
        seen += [x for x in lines if not x.startswith("next-page-token: ")]
        if token is None:
            break
    assert seen == sorted({sd.FORGET, sd.KEEP, *sd.OTHERS})
    assert main(["subjects", "list", job, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {"data_subject_ids": seen, "next_page_token": None}

    # keylinks --json, subjects from arguments and from a file.
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{sd.KEEP}\nnobody@example.org\n")
    assert main(["subjects", "keylinks", job, sd.FORGET, "--from-file", str(ids), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [d["data_subject_id"] for d in doc] == [sd.FORGET, sd.KEEP, "nobody@example.org"]
    assert [k["expiry_time"] for k in doc[0]["key_links"]] == [
        sd.expires(d).isoformat().replace("+00:00", "Z") for d in sd.FORGET_DAYS
    ]
    assert [k["day"] for k in doc[1]["key_links"]] == [d.isoformat() for d in sd.KEEP_DAYS]
    assert doc[2]["key_links"] == []
    assert main(["subjects", "keylinks", job, sd.KEEP]) == 0
    table = capsys.readouterr().out.splitlines()
    assert (
        table[0].startswith("data subject")
        and len(table) == 1 + len(sd.KEEP_DAYS)
        and "stored" in table[1]
    )

    # export: the files and the manifest.
    out = tmp_path / "export"
    assert main(["subjects", "export", job, sd.KEEP, "--out", str(out), "--format", "csv"]) == 0
    printed = capsys.readouterr().out
    assert "encrypted.csv" in printed and "manifest" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"]["encrypted.csv"]["rows"] == 2 * len(sd.KEEP_DAYS)
    assert len(sd.csv_rows((out / "encrypted.csv").read_text())) == 2 * len(sd.KEEP_DAYS)
    assert main(["subjects", "export", job, sd.KEEP, "--out", str(out)]) == 2  # not empty
    assert "not empty" in capsys.readouterr().err

    # forget of a subject that does not exist: reports 0 found and its position, exits 3, never
    # echoes the id.
    assert main(["subjects", "forget", job, "nobody.at.all@example.org"]) == 3
    printed = capsys.readouterr().out
    assert (
        "1 subject(s) requested, 0 found" in printed
        and "keys deleted                  0" in printed
        and "NOT FOUND                     1 id(s), at position(s) 1 of the request" in printed
    )
    assert "nobody.at.all" not in printed
    monkeypatch.setattr("sys.stdin", io.StringIO("missing.person@example.org\n"))
    assert main(["subjects", "forget", job, "--from-file", "-", "--json"]) == 3
    printed = capsys.readouterr().out
    report = json.loads(printed)
    assert (
        report["completed"] and report["subjects_requested"] == 1 and report["subjects_found"] == 0
    )
    assert report["not_found"] == [1] and "missing.person" not in printed
    # An id file as a person saves it (#33): a byte-order mark, CRLF, blank lines, spaces.
    ids = tmp_path / "ids.txt"
    ids.write_bytes(f"\ufeff{sd.FORGET}\r\n\r\n   nobody@example.org  \r\n".encode())
    assert main(["subjects", "forget", job, "--from-file", str(ids), "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["subjects_requested"] == 2 and report["subjects_found"] == 1
    assert report["not_found"] == [2] and report["keys_removed"] > 0
    assert main(["subjects", "forget", job]) == 2
    assert "no subject ids" in capsys.readouterr().err
    assert main(["subjects", "purge-expired", job, "--now", "next tuesday"]) == 2
    assert "--now" in capsys.readouterr().err
