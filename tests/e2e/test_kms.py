"""Keys under a real KMS: moto's server on 127.0.0.1 as AWS KMS, the job and its requests run
by the CLI (in this process, each command with a new KMS client and nothing opened), and
every KMS request counted by moto's recorder.

The KMS key wraps one key-encryption keyset per group; a run, a rerun, a stream of two
micro-batches, an export, a forget and a decrypting view each make one KMS request, whatever
the batch holds. Rotation rewraps that
keyset under a second key in O(1); the first key is then disabled and everything still opens.
A wrong key is refused (exit 2; moto does not refuse a disabled one, so the disabled first key
shows only that nothing asks it again), a stopped server is an outage (exit 1),
and nothing is written before the check, which `validate --online` also runs. A rotation is
recorded in the audit table."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import UCI_CSV, require_shared
from helpers import job_doc
from kms_server import kms_requests as _requests
from kms_server import kms_server

from strm_spark.cli.main import main
from strm_spark.crypto import envelope
from strm_spark.keys import hierarchy


@pytest.fixture(scope="module")
def kms():
    with kms_server() as found:
        yield found


@pytest.fixture
def cli(monkeypatch, capfd, tmp_path):
    """`strm-spark ARGS` in this process, in `tmp_path`, as a new process runs it: with the
    environment `env`, its KMS client made anew and no key-encryption keyset opened yet, so
    each command's KMS requests are its own. (Its own process would prove nothing more: no
    Python worker calls the KMS, and each process spent some 25 s starting a JVM.)"""
    monkeypatch.chdir(tmp_path)

    def run(env: dict, *args: str) -> SimpleNamespace:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        hierarchy._OPENED.clear()
        envelope._master_aead.cache_clear()
        code = main(list(args))
        out, err = capfd.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run


def _job(root: Path, arn: str) -> None:
    doc = job_doc("in.csv", Path("out"))
    doc["keys"]["master_key"] = {"kms_uri": f"aws-kms://{arn}"}
    (root / "job.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")


def test_one_kms_request_a_command_rotation_and_refusals(spark, kms, tmp_path, cli):
    require_shared()
    endpoint, (first, second), env, client = kms
    lines = UCI_CSV.read_text(encoding="utf-8").splitlines()[:1001]
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _job(tmp_path, first)
    _requests(endpoint)

    run = cli(env, "run", "job.yaml")
    assert run.returncode == 0, run.stderr[-3000:]
    # The group's keyset made and wrapped: Tink checks a wrapped keyset by decrypting it.
    assert _requests(endpoint) == ["Encrypt", "Decrypt"]
    rerun = cli(env, "run", "job.yaml")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _requests(endpoint) == ["Decrypt"]
    # A stream of the group, two micro-batches: the KMS once, not once a micro-batch.
    (tmp_path / "stream-in").mkdir()
    for name, part in (("a.csv", lines[1:201]), ("b.csv", lines[201:401])):
        (tmp_path / "stream-in" / name).write_text("\n".join([lines[0], *part]) + "\n")
    doc = job_doc("stream-in", Path("stream-out"), name="stream_job")
    doc["keys"] = {**yaml.safe_load((tmp_path / "job.yaml").read_text())["keys"]}
    (tmp_path / "stream.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    stream = cli(env, "stream", "stream.yaml", "--max-files-per-trigger", "1")
    assert stream.returncode == 0 and "micro-batches     2" in stream.stdout, stream.stderr[-3000:]
    assert _requests(endpoint) == ["Decrypt"]
    subject = "17850"
    export = cli(env, "subjects", "export", "job.yaml", subject, "--out", "export")
    assert export.returncode == 0, export.stderr[-3000:]
    assert _requests(endpoint) == ["Decrypt"]
    view = cli(env, "sql", "job.yaml", "-q", "SELECT count(*) FROM decrypted_0")
    assert view.returncode == 0, view.stderr[-3000:]
    assert _requests(endpoint) == ["Decrypt"]

    # Rotation: the keyset is rewrapped (one decrypt, one encrypt), whatever the store holds.
    rotate = cli(env, "keys", "rotate-master", "job.yaml", "--to", f"aws-kms://{second}")
    assert rotate.returncode == 0, rotate.stderr[-3000:]
    assert _requests(endpoint) == ["Decrypt", "Encrypt", "Decrypt"]
    assert "now wrapped by" in rotate.stdout
    # ... and recorded in the audit table: which keyset, from which key to which, no key.
    records = spark.read.format("delta").load(str(tmp_path / "out" / "keystore" / "audit"))
    rotated = records.where("action = 'rotate-master'").collect()
    assert len(rotated) == 1 and rotated[0]["status"] == "completed"
    details = json.loads(rotated[0]["details"])
    assert details["from"].endswith(first.split("/")[-1]) and details["to"].endswith(
        second.split("/")[-1]
    )
    # The old key named in the config is refused before anything is written.
    stale = cli(env, "run", "job.yaml")
    assert stale.returncode == 2 and "not by the configured keys.master_key" in stale.stderr
    _job(tmp_path, second)
    client.disable_key(KeyId=first.split("/")[-1])  # moto does not enforce it: see below
    _requests(endpoint)  # not the test's own request
    # `validate --online`: the new key opens the group's keyset (one request), nothing written.
    online = cli(env, "validate", "job.yaml", "--online")
    assert online.returncode == 0, online.stderr[-3000:]
    assert "opens the key-encryption keyset" in online.stdout
    assert _requests(endpoint) == ["Decrypt"]
    used: set[str] = set()
    again = cli(env, "sql", "job.yaml", "-q", "SELECT count(*) AS n FROM decrypted_0")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.split("|")[-2].strip() == view.stdout.split("|")[-2].strip()
    forget = cli(env, "subjects", "forget", "job.yaml", subject, "--json")
    assert forget.returncode == 0 and json.loads(forget.stdout)["keys_removed"] > 0
    # The view's and the forget's, both with the second key only: the first is not needed.
    assert _requests(endpoint, used) == ["Decrypt", "Decrypt"]
    assert used == {second.split("/")[-1]}

    # A key the KMS refuses (here one that does not exist, for a new group): exit 2, the
    # KMS's error class named, no key written.
    doc = yaml.safe_load((tmp_path / "job.yaml").read_text(encoding="utf-8"))
    doc["keys"]["group_id"] = "another-group"
    doc["keys"]["master_key"] = {"kms_uri": "aws-kms://" + first.rsplit("/", 1)[0] + "/no-such-key"}
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    keys = tmp_path / "out" / "keystore" / "keys" / "_delta_log"
    versions = sorted(p.name for p in keys.glob("*.json"))
    wrong = cli(env, "run", "wrong.yaml")
    assert wrong.returncode == 2 and "wrong or disabled key" in wrong.stderr, wrong.stderr[-2000:]
    assert "NotFoundException" in wrong.stderr or "TinkError" in wrong.stderr
    assert sorted(p.name for p in keys.glob("*.json")) == versions
    check = cli(env, "validate", "wrong.yaml", "--online")
    assert check.returncode == 2 and "wrong or disabled key" in check.stderr
    # A KMS that cannot be reached: an outage, exit 1, nothing written.
    gone = cli({**env, "AWS_ENDPOINT_URL_KMS": "http://127.0.0.1:9"}, "run", "job.yaml")
    assert gone.returncode == 1 and "KmsUnavailable" in gone.stderr, gone.stderr[-2000:]
    assert sorted(p.name for p in keys.glob("*.json")) == versions
