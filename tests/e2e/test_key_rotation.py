"""The key hierarchy's rotations on real stores, eight days of events each.

- A store whose keysets a local master key wraps directly moves under a key-encryption keyset
  (`keys rotate-master --to-keyset-file`), chunk by chunk; the next run reuses every key.
- The KEK itself is rotated (`keys rotate-kek`): the CLI's process is SIGKILLed between two
  chunk commits, a run still opens every keyset (old and new keys of the KEK both open), and
  a second call resumes, adds no key, and finishes.
- A store whose keysets an AWS KMS key wraps directly (moto's server on 127.0.0.1: as a store
  older than the hierarchy has them) moves under a KEK that a second KMS key wraps: each
  keyset asks the first key once, then a run asks the KMS once.
Through all of it the decrypting view returns the same rows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import UCI_CSV, require_shared
from helpers import cli_process, delta_commits, job_doc, kill_all_when, strm_cli
from kms_server import kms_requests, kms_server
from pyspark.sql import functions as F

from strm_spark.cli.main import main
from strm_spark.keys import hierarchy

CHECKSUM = "SELECT count(*) AS n, sum(hash(*)) AS h FROM decrypted_0"


def _store(tmp_path: Path, master: dict, name: str = "job.yaml") -> Path:
    """A job over every 20th event of the UCI file (eight days), its keys under `master`."""
    require_shared()
    source = tmp_path / "in.csv"
    if not source.exists():
        lines = UCI_CSV.read_text(encoding="utf-8").splitlines()
        source.write_text("\n".join(lines[:1] + lines[20::20]) + "\n", encoding="utf-8")
    doc = job_doc(source, tmp_path / "out")
    doc["keys"]["master_key"] = master
    (tmp_path / name).write_text(yaml.safe_dump(doc), encoding="utf-8")
    return tmp_path / name


def _cli(capfd, *args: str) -> tuple[int, str, str]:
    code = main([*map(str, args)])
    out, err = capfd.readouterr()
    return code, out, err


def _counted(out: str) -> tuple[int, int]:
    """The (n, h) row that CHECKSUM's table printed."""
    row = [line for line in out.splitlines() if line.startswith("|")][-1]
    n, h = (cell.strip() for cell in row.strip("|").split("|"))
    return int(n), int(h)


def _checksum(capfd, config: Path) -> tuple[int, int]:
    code, out, err = _cli(capfd, "sql", config, "-q", CHECKSUM)
    assert code == 0, err[-2000:]
    return _counted(out)


def _wrapped_by(spark, tmp_path: Path) -> dict[str, int]:
    keys = spark.read.format("delta").load(str(tmp_path / "out" / "keystore" / "keys"))
    return {r["wrappedBy"]: r["count"] for r in keys.groupBy("wrappedBy").count().collect()}


def _summary(out: str) -> dict:
    """Keys created and reused, and the key store's form, from a run's printed summary."""
    found = re.search(r"keys +([\d,]+) used: ([\d,]+) created, ([\d,]+) reused", out)
    assert found, out[-2000:]
    form = re.search(r"^  key store +(.+)$", out, re.M)
    created, reused = (int(g.replace(",", "")) for g in found.groups()[1:])
    return {"keys_created": created, "keys_reused": reused, "key_store": form and form[1]}


def _run(capfd, config: Path) -> dict:
    code, out, err = _cli(capfd, "run", config)
    assert code == 0, err[-3000:]
    return _summary(out)


def test_a_local_store_moves_under_a_kek_and_the_kek_rotates_resumably(spark, tmp_path, capfd):
    for name in ("a.json", "b.json"):
        assert _cli(capfd, "keys", "new-master-key", tmp_path / name)[0] == 0
    old = _store(tmp_path, {"keyset_file": str(tmp_path / "a.json")})
    new = _store(tmp_path, {"keyset_file": str(tmp_path / "b.json")}, "new.yaml")
    first = _run(capfd, old)
    assert "wrapped directly by the master key tink-keyset:" in first["key_store"]
    keys = first["keys_created"]
    assert keys > 300 and len(_wrapped_by(spark, tmp_path)) == 1
    before = _checksum(capfd, old)

    # The migration: a KEK made, wrapped by the new key; every keyset moved under it, in
    # chunks of whole days, each its own commit, with progress on stderr.
    table = tmp_path / "out" / "keystore" / "keys"
    commits = delta_commits(table)
    code, out, err = _cli(
        capfd, "keys", "rotate-master", old, "--to-keyset-file", tmp_path / "b.json",
        "--chunk-keysets", "100",
    )  # fmt: skip
    assert code == 0, err[-3000:]
    assert f"{keys:,} of {keys:,} keysets rewrapped" in out and "made now" in out
    assert f"of {keys:,} keysets (100%)" in err and delta_commits(table) - commits >= 3
    (kek,) = _wrapped_by(spark, tmp_path)
    assert kek.startswith("kek:")
    assert _cli(capfd, "run", old)[0] == 2  # the old key no longer opens the store
    code, out, err = _cli(capfd, "validate", new, "--online")  # checks the new key's KEK
    assert code == 0 and f"opens the key-encryption keyset {kek}" in out, err[-2000:]
    again = _run(capfd, new)
    assert again["keys_created"] == 0 and again["keys_reused"] == keys
    assert f"key-encryption keyset {kek}, which tink-keyset:" in again["key_store"]
    n, h = before
    assert _checksum(capfd, new) == (2 * n, 2 * h)  # the same rows twice: the run appended

    # The KEK rotated, killed after two of its chunk commits: both of the KEK's keys open.
    proc = cli_process("keys", "rotate-kek", str(new), "--chunk-keysets", "100", cwd=tmp_path)
    kill_all_when([(proc, table, delta_commits(table) + 2)])
    half = _wrapped_by(spark, tmp_path)
    assert len(half) == 2 and kek in half and sum(half.values()) == keys
    (primary,) = set(half) - {kek}
    third = _run(capfd, new)
    assert third["keys_created"] == 0, "every keyset opens halfway through a rotation"
    code, out, err = _cli(capfd, "keys", "rotate-kek", new, "--chunk-keysets", "100")
    assert code == 0, err[-3000:]
    assert f"{half[kek]:,} of {half[kek]:,} keysets rewrapped (resumed)" in out
    assert _wrapped_by(spark, tmp_path) == {primary: keys}, "no key added on resuming"
    assert _checksum(capfd, new) == (3 * n, 3 * h)
    records = spark.read.format("delta").load(str(tmp_path / "out" / "keystore" / "audit"))
    rotations = records.where(F.col("action").startswith("rotate")).orderBy("at").collect()
    assert [r["action"] for r in rotations] == ["rotate-master", "rotate-kek"]
    details = json.loads(rotations[1]["details"])
    assert (details["from"], details["to"], details["keysetsRewrapped"]) == (
        kek,
        primary,
        half[kek],
    )


@pytest.fixture
def kms(monkeypatch):
    with kms_server() as found:
        for key, value in found[2].items():
            monkeypatch.setenv(key, value)
        yield found


def test_a_store_a_kms_key_wraps_directly_moves_under_the_hierarchy(spark, tmp_path, capfd, kms):
    """Such a store as the hierarchy's predecessor left it: each keyset wrapped by the KMS key
    itself (rewrapped so here, on the driver, from a local key's store)."""
    from strm_spark.config.model import MasterKeyRef
    from strm_spark.crypto.envelope import MasterKey, load_master_key, open_keyset, wrap_handle

    endpoint, (first, second), env, _ = kms
    assert _cli(capfd, "keys", "new-master-key", tmp_path / "a.json")[0] == 0
    local = _store(tmp_path, {"keyset_file": str(tmp_path / "a.json")})
    keys = _run(capfd, local)["keys_created"]
    before = _checksum(capfd, local)
    a = load_master_key(MasterKeyRef(keyset_file=str(tmp_path / "a.json")))
    direct = MasterKey("kms", f"aws-kms://{first}")
    path = str(tmp_path / "out" / "keystore" / "keys")
    rows = [
        {
            **r.asDict(),
            "keyset": bytearray(
                wrap_handle(open_keyset(bytes(r["keyset"]), r["keyLink"], a), r["keyLink"], direct)
            ),
            "wrappedBy": direct.id,
        }
        for r in spark.read.format("delta").load(path).collect()
    ]
    stored = spark.read.format("delta").load(path).schema
    spark.createDataFrame(rows, stored).write.format("delta").mode("overwrite").save(path)
    job = _store(tmp_path, {"kms_uri": f"aws-kms://{first}"}, "kms.yaml")

    kms_requests(endpoint)
    # The CLI in its own process: its Python workers open the keysets, with the env's KMS.
    env = {"STRM_SPARK_MASTER": "local[2]", **env}
    to = f"aws-kms://{second}"
    rotate = strm_cli("keys", "rotate-master", str(job), "--to", to, cwd=tmp_path, env=env)
    assert rotate.returncode == 0, rotate.stderr[-3000:]
    asked = kms_requests(endpoint)
    # The new KEK wrapped (Tink checks it by opening it), then each keyset opened once.
    assert asked[:2] == ["Encrypt", "Decrypt"] and asked[2:] == ["Decrypt"] * keys
    assert f"{keys:,} of {keys:,} keysets rewrapped" in rotate.stdout
    moved = _store(tmp_path, {"kms_uri": to}, "moved.yaml")
    # Then the workers need the KMS no more: the run and the view in this process (with no
    # key-encryption keyset opened in it yet) ask the KMS once each.
    code, out, err = _cli(capfd, "run", moved)
    assert code == 0, err[-3000:]
    assert kms_requests(endpoint) == ["Decrypt"]
    summary = _summary(out)
    assert summary["keys_created"] == 0 and summary["key_store"].startswith("key hierarchy")
    hierarchy._OPENED.clear()
    assert _checksum(capfd, moved) == (2 * before[0], 2 * before[1])
    assert kms_requests(endpoint) == ["Decrypt"]
