"""moto's server on 127.0.0.1 as AWS KMS, for the tests of keys under a KMS: two keys, and
every KMS request the code under test makes counted by moto's recorder."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
import urllib.request

import pytest

# moto's recorder keeps its recording (request bodies: test keys in plaintext) in a file it
# names when moto is imported: a temporary one, never the working directory.
os.environ.setdefault(
    "MOTO_RECORDER_FILEPATH", tempfile.mkstemp(prefix="strm-spark-moto-recording-")[1]
)


@contextlib.contextmanager
def kms_server():
    """moto's server on a free port of 127.0.0.1 with two KMS keys; (endpoint, arns, env,
    client)."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL_KMS": endpoint,
    }
    client = boto3.client(
        "kms",
        region_name="eu-west-1",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    arns = [client.create_key()["KeyMetadata"]["Arn"] for _ in range(2)]
    try:
        yield endpoint, arns, env, client
    finally:
        server.stop()


def kms_requests(endpoint: str, key_ids: set[str] | None = None) -> list[str]:
    """The KMS actions requested since the last call (moto's recorder), then a new recording;
    the key ids they name are added to `key_ids`."""
    text = urllib.request.urlopen(f"{endpoint}/moto-api/recorder/download-recording").read()
    for action in ("reset-recording", "start-recording"):
        urllib.request.urlopen(
            urllib.request.Request(f"{endpoint}/moto-api/recorder/{action}", method="POST")
        )
    lines = [json.loads(line) for line in text.decode().splitlines() if line.strip()]
    found = [line for line in lines if "X-Amz-Target" in line.get("headers", {})]
    for line in found:
        body = line.get("body") or ""
        if line.get("body_encoded"):
            body = base64.b64decode(body).decode("utf-8", "replace")
        key = json.loads(body).get("KeyId") if body.startswith("{") else None
        if key_ids is not None and key:
            key_ids.add(key.split("/")[-1])
    return [line["headers"]["X-Amz-Target"].split(".")[-1] for line in found]
