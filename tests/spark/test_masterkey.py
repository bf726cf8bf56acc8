"""Envelope encryption: keysets in the key store wrapped with a Tink AEAD master key."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import subjects_data as sd
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from strm_spark.config.load import parse_job_config
from strm_spark.config.model import MasterKeyRef
from strm_spark.crypto import cells as crypto
from strm_spark.crypto import envelope as masterkey
from strm_spark.errors import ConfigError, KeyStoreError, SecretError
from strm_spark.keys.store import KeyStore
from strm_spark.pipeline.run import run_job
from strm_spark.sql.views import register_job_views
from strm_spark.subjects import export_subject


@pytest.fixture(scope="module")
def master(tmp_path_factory) -> masterkey.MasterKey:
    path = tmp_path_factory.mktemp("mk") / "master.json"
    masterkey.new_master_key_file(path)
    return masterkey.load_master_key(MasterKeyRef(keyset_file=str(path)))


def test_new_master_key_file_is_private_and_never_overwritten(tmp_path):
    path = tmp_path / "secrets" / "master.json"
    key_id = masterkey.new_master_key_file(path)
    assert key_id and key_id.startswith("tink-keyset:")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    doc = json.loads(path.read_text())
    assert doc["key"][0]["keyData"]["typeUrl"].endswith("AesGcmKey")
    before = path.read_bytes()
    assert masterkey.new_master_key_file(path) is None and path.read_bytes() == before
    assert masterkey.load_master_key(MasterKeyRef(keyset_file=str(path))).id == key_id


def test_unusable_master_keys_fail_clearly(tmp_path):
    with pytest.raises(SecretError, match="does not exist.*keys new-master-key"):
        masterkey.load_master_key(MasterKeyRef(keyset_file=str(tmp_path / "nope.json")))
    bad = tmp_path / "bad.json"
    bad.write_text("top-secret-garbage")
    with pytest.raises(SecretError, match="not a Tink JSON keyset") as info:
        masterkey.load_master_key(MasterKeyRef(keyset_file=str(bad)))
    assert "top-secret" not in str(info.value)
    daead_keyset = tmp_path / "daead.json"
    daead_keyset.write_bytes(crypto.new_keyset())  # a keyset, but not an AEAD one
    with pytest.raises(SecretError, match="not a Tink AEAD keyset"):
        masterkey.load_master_key(MasterKeyRef(keyset_file=str(daead_keyset)))
    try:
        import tink.integration.gcpkms  # noqa: F401
    except ImportError:
        with pytest.raises(SecretError, match=r"pip install 'strm-spark\[gcp\]'"):
            masterkey.load_master_key(
                MasterKeyRef(kms_uri="gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k")
            )


def test_wrapped_keysets_decrypt_only_with_the_master_key_and_their_link(master, tmp_path):
    keyset = crypto.new_keyset()
    wrapped = masterkey.wrap(keyset, "link-1", master)
    assert masterkey.is_wrapped(wrapped) and not masterkey.is_wrapped(keyset)
    value = json.loads(keyset)["key"][0]["keyData"]["value"]
    assert value.encode() not in wrapped
    ct = crypto.encrypt_text(crypto.primitive(keyset), "a@b.nl")
    assert crypto.decrypt(wrapped, ct, key_link="link-1", master=master) == "a@b.nl"
    # Same ciphertext as with the cleartext keyset: wrapping changes storage, not encryption.
    assert crypto.encrypt_columns([wrapped], [["a@b.nl"]], ["link-1"], master) == [[ct]]
    assert masterkey.unwrap(wrapped, "link-1", master) != wrapped
    with pytest.raises(ValueError, match="no master key is configured"):
        crypto.decrypt(wrapped, ct, key_link="link-1")
    with pytest.raises(ValueError, match="moved to another key link"):
        crypto.decrypt(wrapped, ct, key_link="link-2", master=master)
    other_path = tmp_path / "other.json"
    masterkey.new_master_key_file(other_path)
    other = masterkey.load_master_key(MasterKeyRef(keyset_file=str(other_path)))
    with pytest.raises(ValueError, match="wrong master key") as info:
        crypto.decrypt(wrapped, ct, key_link="link-1", master=other)
    assert value not in str(info.value) and "a@b.nl" not in str(info.value)
    assert "material" not in repr(master) and master.material.decode() not in repr(master)


def test_config_master_key_forms(tmp_path):
    doc = sd.job_document(tmp_path)
    doc["keys"]["master_key"] = {"keyset_file": "secrets/mk.json"}
    config = parse_job_config(doc, "job.yaml", tmp_path)
    assert config.master_key == MasterKeyRef(keyset_file=str(tmp_path / "secrets" / "mk.json"))
    assert config.audit == f"{config.key_store}/audit"
    doc["keys"]["master_key"] = {
        "kms_uri": "aws-kms://arn:aws:kms:eu-west-1:123:key/abc",
        "credentials_file": "c.ini",
    }
    assert parse_job_config(doc, "job.yaml", tmp_path).master_key.kms_uri.startswith("aws-kms://")
    for bad, message in [
        ({"kms_uri": "vault://x"}, "gcp-kms:// or aws-kms://"),
        ({}, "exactly one of keyset_file or kms_uri"),
        ({"keyset_file": "a", "kms_uri": "gcp-kms://x"}, "exactly one"),
        ({"keyset_file": "a", "credentials_file": "c"}, "only applies to a kms_uri"),
    ]:
        doc["keys"]["master_key"] = bad
        with pytest.raises(ConfigError, match=message):
            parse_job_config(doc, "job.yaml", tmp_path)
    doc["keys"]["master_key"] = {"keyset_file": "a"}
    doc["outputs"]["audit"] = "out/derived/all/audit"
    with pytest.raises(ConfigError, match="outputs.audit"):
        parse_job_config(doc, "job.yaml", tmp_path)


def _versions(spark, config) -> dict[str, int]:
    paths = [
        config.encrypted.path,
        config.data_subjects.path,
        config.rejected.path,
        f"{config.key_store}/keys",
        *[d.path for d in config.derived],
    ]
    return {p: DeltaTable.forPath(spark, p).history(1).first()["version"] for p in paths}


def test_job_stores_wrapped_keysets_and_refuses_a_wrong_master_key(spark, tmp_path):
    root = tmp_path / "run"
    mk = root / "secrets" / "master.json"
    masterkey.new_master_key_file(mk)
    config = sd.write_inputs(root, master_key="secrets/master.json")
    master = masterkey.load_master_key(config.master_key)
    summary = run_job(spark, config)
    assert not any("cleartext" in n for n in summary.notes)

    keys = KeyStore(spark, config.key_store).keys().collect()
    assert keys and all(k["wrappedBy"] == master.id for k in keys)
    assert all(
        masterkey.is_wrapped(bytes(k["keyset"])) and b'"value"' not in bytes(k["keyset"])
        for k in keys
    )
    # The encrypted rows decrypt through the wrapped keysets; the derived table got the plaintext.
    enc = spark.read.format("delta").load(config.encrypted.path)
    by_link = {k["keyLink"]: bytes(k["keyset"]) for k in keys}
    emails = {
        crypto.decrypt(
            by_link[r["strmMeta"]["keyLink"]],
            r["email"],
            key_link=r["strmMeta"]["keyLink"],
            master=master,
        )
        for r in enc.collect()
    }
    assert {sd.FORGET, sd.KEEP, *sd.OTHERS} <= emails
    derived = spark.read.format("delta").load(config.derived[0].path)
    assert derived.where(F.col("email") == sd.KEEP).count() == 2 * len(sd.KEEP_DAYS)
    # Export unwraps transparently (row keys and the quarantine key).
    result = export_subject(spark, config, sd.KEEP, tmp_path / "export")
    assert result.files == {"encrypted.jsonl": 2 * len(sd.KEEP_DAYS), "rejected.jsonl": 1}
    # Decrypting views open wrapped keysets too, and agree with the written derived table.
    name = register_job_views(spark, config, prefix="mk_")[1]
    emails = Counter(r["email"] for r in spark.table(name).collect())
    assert emails == Counter(r["email"] for r in derived.collect()) and emails[sd.KEEP] == 2 * len(
        sd.KEEP_DAYS
    )

    before = _versions(spark, config)
    other = root / "secrets" / "other.json"
    masterkey.new_master_key_file(other)
    doc = json.loads((root / "job.json").read_text())
    doc["keys"]["master_key"] = {"keyset_file": "secrets/other.json"}
    with pytest.raises(KeyStoreError, match="wrong keys.master_key"):
        run_job(spark, parse_job_config(doc, "job.json", root))
    doc["keys"].pop("master_key")
    with pytest.raises(KeyStoreError, match="none is configured"):
        run_job(spark, parse_job_config(doc, "job.json", root))
    doc["keys"]["master_key"] = {"keyset_file": "secrets/missing.json"}
    with pytest.raises(SecretError, match="does not exist"):
        run_job(spark, parse_job_config(doc, "job.json", root))
    assert _versions(spark, config) == before  # nothing written
