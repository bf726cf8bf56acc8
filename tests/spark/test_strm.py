"""STRM compatibility: STRM's own config, contract and schema, and STRM's real output."""

from __future__ import annotations

import base64
import csv
import re
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
import tink
from conftest import BLOGPOST, require_shared
from helpers import strm_load as _load
from tink import cleartext_keyset_handle, daead

from strm_spark.compat.strm.config import load_strm_job
from strm_spark.crypto.masking import strm_murmur3_hex
from strm_spark.pipeline.run import run_job

UUID = re.compile(r'"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"')


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


@pytest.fixture(scope="module")
def blogpost(spark, tmp_path_factory):
    """STRM's blog-post job, unchanged, with its bucket mapped to a temporary folder."""
    require_shared()
    bucket = tmp_path_factory.mktemp("s3-batch-demo")
    shutil.copy(BLOGPOST / "uci_online_retail.csv", bucket / "uci_online_retail.csv")
    config = load_strm_job(
        BLOGPOST / "batch-job-config.json",
        BLOGPOST / "online-retail-contract.json",
        BLOGPOST / "online-retail.json",
        {"s3-batch-demo": str(bucket)},
    )
    summary = run_job(spark, config)
    return bucket / "uci_online_retail", summary


def test_derived_output_equals_strm_output_byte_for_byte_but_key_links(blogpost):
    out, summary = blogpost
    ours = (out / "decrypted-0.csv").read_text(encoding="utf-8")
    strm = (BLOGPOST / "strm_output_decrypted-0.csv").read_text(encoding="utf-8")
    assert UUID.sub("K", ours) == UUID.sub("K", strm)
    assert summary.derived_rows == {"decrypted-0": 19_998}
    assert not list(out.glob("*.crc")) and not list(out.glob("*strm-spark-tmp*"))


def test_rows_are_grouped_into_key_links_exactly_as_strm_did(blogpost):
    out, _ = blogpost
    ours, strm = _rows(out / "decrypted-0.csv"), _rows(BLOGPOST / "strm_output_decrypted-0.csv")
    k = strm[0].index("strmMeta.keyLink")

    def groups(rows):
        members = defaultdict(set)
        for i, row in enumerate(rows[1:]):
            members[row[k]].add(i)
        return {frozenset(m) for m in members.values()}

    assert len(groups(strm)) == 655
    assert groups(ours) == groups(strm)


def test_encrypted_csv_decrypts_with_the_reference_snippet_and_keys_csv(blogpost):
    out, _ = blogpost
    daead.register()
    keys = {
        r["keyLink"]: r
        for r in csv.DictReader(open(out / "keys.csv", newline="", encoding="utf-8"))
    }
    assert len(keys) == 655 and all(r["expiresAt"].endswith("T00:00:00Z") for r in keys.values())
    enc = _rows(out / "encrypted.csv")
    src = _rows(BLOGPOST / "uci_online_retail.csv")
    header = enc[0]
    assert header[:8] == src[0]
    c, k = header.index("CustomerID"), header.index("strmMeta.keyLink")
    primitives = {}
    for row, original in zip(enc[1:], src[1:], strict=True):
        assert row[:c] + row[c + 1 : 8] == original[:c] + original[c + 1 :]
        if not original[c]:
            assert row[c] == ""
            continue
        assert row[c] != original[c]
        if row[k] not in primitives:
            handle = cleartext_keyset_handle.read(
                tink.JsonKeysetReader(keys[row[k]]["encryptionKey"])
            )
            primitives[row[k]] = handle.primitive(daead.DeterministicAead)
        plain = primitives[row[k]].decrypt_deterministically(base64.b64decode(row[c]), b"")
        assert plain.decode() == original[c]


def test_key_store_and_data_subjects_are_delta_tables(spark, blogpost):
    out, summary = blogpost
    keys = spark.read.format("delta").load(str(out / "strm-spark" / "keystore" / "keys"))
    assert keys.count() == 655
    assert keys.where("groupId = '7824e975-20e1-4995-b129-2f9582728ca5'").count() == 655
    subjects = spark.read.format("delta").load(str(out / "strm-spark" / "data_subjects"))
    assert subjects.select("dataSubject").distinct().count() > 0
    assert any("cleartext keysets" in n for n in summary.notes)


def _granular_job(tmp_path, **kwargs):
    """A small STRM job: two PII fields, a GRANULAR derived output masked with MurmurHash3."""
    src = tmp_path / "bucket"
    src.mkdir()
    rows = [
        ["s1", "a@x.nl", "+31 6 1", "2", "2022-02-06 06:43:12"],
        ["s1", "a@x.nl", "+31 6 1", "analytics", "2022-02-06 07:00:00"],
        ["s2", "b@x.nl", "+31 6 2", "[1,2]", "2022-02-06 23:30:00"],
        ["s3", "", "+31 6 3", "", "2022-02-07 01:00:00"],
    ]
    with open(src / "in.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["Session", "Email", "Phone", "Plane", "Ts"], *rows])
    schema = {
        "name": "demo",
        "nodes": [
            {"type": "STRING", "name": n} for n in ("Session", "Email", "Phone", "Plane", "Ts")
        ],
    }
    contract = {
        "keyField": "Session",
        "piiFields": {"Email": 1, "Phone": 2},
        "dataSubjectField": "Email",
    }
    ref = {"handle": "h", "name": "demo", "version": "1.0.0"}
    target = {"dataConnectorRef": {"name": "bkt"}, "dataType": {"csv": {"charset": "UTF-8"}}}
    config = {
        "sourceData": {**target, "fileName": "in.csv"},
        "consent": {
            "defaultConsentLevels": [0],
            "consentLevelExtractor": {
                "field": "Plane",
                "fieldPatterns": {"analytics": {"consentLevels": [1]}},
            },
        },
        "encryption": {
            "timestampConfig": {
                "field": "Ts",
                "format": "yyyy-MM-dd HH:mm:ss",
                "defaultTimeZone": {"id": "Europe/Amsterdam"},
            }
        },
        "eventContractRef": ref,
        "encryptedData": {"target": {**target, "fileName": "out/encrypted.csv"}},
        "encryptionKeysData": {"target": {**target, "fileName": "out/keys.csv"}},
        "derivedData": [
            {
                "target": {**target, "fileName": "out/granular.csv"},
                "consentLevels": [2],
                "consentLevelType": "GRANULAR",
                "maskedFields": {
                    "seed": "hi-there",
                    "fieldPatterns": {"h/demo/1.0.0": {"fieldPatterns": ["Session"]}},
                },
            }
        ],
    }
    return src, _load(tmp_path, config, contract, schema, {"bkt": str(src)}, **kwargs)


def test_granular_output_keeps_other_pii_encrypted_and_masks_with_murmur(spark, tmp_path):
    src, job = _granular_job(tmp_path)
    summary = run_job(spark, job)
    out = _rows(src / "out" / "granular.csv")
    enc = _rows(src / "out" / "encrypted.csv")
    assert out[0] == enc[0]
    # Consent: "2" -> [2]; "analytics" -> [1] (mapping); "[1,2]" -> [1,2]; "" -> default [0].
    assert [r[-1] for r in enc[1:]] == ["[2]", "[1]", "[1,2]", "[0]"]
    assert [r[2] for r in out[1:]] == ["+31 6 1", "+31 6 2"]  # purpose 2: decrypted
    assert [r[1] for r in out[1:]] == [enc[1][1], enc[3][1]]  # purpose 1: still ciphertext
    assert [r[0] for r in out[1:]] == [
        strm_murmur3_hex("hi-there", "s1"),
        strm_murmur3_hex("hi-there", "s2"),
    ]
    # s2 at 23:30 Amsterdam is 22:30Z on Feb 6; s3 at 01:00 on Feb 7 is 00:00Z Feb 7: own days.
    assert summary.keys_needed == 3
    assert any("not a cryptographic hash" in n for n in summary.notes)
    # STRM's bytes are kept ("+31 6 1" is not guarded), and the summary warns about them.
    assert [
        n
        for n in summary.notes
        if n.startswith("derived granular: 2 rows hold a cell starting with")
    ]


def test_master_key_wraps_the_key_store_and_keys_csv_stays_strm_compatible(spark, tmp_path):
    from strm_spark.crypto import envelope as masterkey
    from strm_spark.keys.store import KeyStore

    masterkey.new_master_key_file(tmp_path / "master.json")
    src, job = _granular_job(tmp_path, master_key_file=str(tmp_path / "master.json"))
    summary = run_job(spark, job)
    assert not any("stored in cleartext" in n for n in summary.notes)
    stored = KeyStore(spark, job.key_store).keys().collect()
    assert stored and all(masterkey.is_wrapped(bytes(k["keyset"])) for k in stored)
    # keys.csv holds cleartext Tink JSON, as STRM's decryption snippet expects.
    daead.register()
    keys = {
        r["keyLink"]: r["encryptionKey"]
        for r in csv.DictReader(open(src / "out" / "keys.csv", newline=""))
    }
    enc = _rows(src / "out" / "encrypted.csv")
    link = enc[0].index("strmMeta.keyLink")
    handle = cleartext_keyset_handle.read(tink.JsonKeysetReader(keys[enc[1][link]]))
    prim = handle.primitive(daead.DeterministicAead)
    assert prim.decrypt_deterministically(base64.b64decode(enc[1][2]), b"").decode() == "+31 6 1"


def test_files_with_keys_secrets_or_plaintext_are_owner_only(blogpost):
    """Under the usual umask 022 Spark writes 0644 files and 0755 folders: the key store
    (cleartext keysets), hash_keys, audit_keys, keys.csv, decrypted-0.csv and the data subjects
    are made 0600 and 0700."""
    import stat

    out, _ = blogpost
    paths = [
        out / "keys.csv",
        out / "decrypted-0.csv",
        out / "strm-spark" / "keystore",
        out / "strm-spark" / "data_subjects",
    ]
    checked = 0
    for top in paths:
        assert top.exists(), top.name
        for path in [top, *(top.rglob("*") if top.is_dir() else [])]:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o700 if path.is_dir() else 0o600), (
                f"{path.relative_to(out)}: {oct(mode)}"
            )
            checked += 1
    names = {p.name for p in (out / "strm-spark" / "keystore").iterdir()}
    assert {"keys", "hash_keys"} <= names and checked > 20
