"""Envelope encryption of the key store: keysets wrapped with a Tink AEAD master key.

With `keys.master_key` set, every keyset in `<store>/keys` is stored as a Tink encrypted
keyset (`json_proto_keyset_format.serialize_encrypted`) with its key link as associated
data, so a keyset cannot be moved to another key link. The master key is a local Tink
AES256_GCM keyset file (development; `strm-spark keys new-master-key PATH`) or a KMS key
(`gcp-kms://...`, `aws-kms://...`, through Tink's KMS integrations: install
`strm-spark[aws]` or `strm-spark[gcp]`).

`MasterKey` is what travels to the workers: the serialized master keyset (or the KMS URI),
never a Tink object (they do not pickle). The AEAD is built on first use and cached per
process. Nothing here puts key material into messages or reprs.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import tink
from tink import aead, secret_key_access

from strm_spark.config.model import MasterKeyRef
from strm_spark.errors import CryptoError, SecretError

aead.register()

_WRAPPED_MARKER = b'"encryptedKeyset"'
_AEAD_CACHE_SIZE = 8


@dataclass(frozen=True)
class MasterKey:
    """A loaded master key reference, picklable: `id` names it (safe to store and print);
    the serialized keyset is kept out of the repr."""

    kind: str  # "keyset" or "kms"
    id: str
    material: bytes = field(default=b"", repr=False)
    credentials_file: str | None = None

    def aead(self) -> aead.Aead:
        """The master AEAD, built once per process (worker or driver)."""
        return _master_aead(self)

    def _build(self) -> aead.Aead:
        if self.kind == "keyset":
            try:
                handle = tink.json_proto_keyset_format.parse(
                    self.material.decode("utf-8"), secret_key_access.TOKEN
                )
                return handle.primitive(aead.Aead)
            except Exception:
                # Never echo the keyset: Tink's messages can contain key material.
                raise SecretError(f"master key {self.id}: not a Tink AEAD keyset") from None
        return _kms_aead(self.id, self.credentials_file)


def _aws_client(uri: str, credentials_file: str | None, awskms):
    """Tink's AWS KMS client on a boto3 client: endpoint, credentials and region from AWS's
    standard configuration (the credential chain, `AWS_ENDPOINT_URL_KMS`), the region from the
    key's ARN; a credentials file, when given, as Tink reads it."""
    if credentials_file:
        return awskms.AwsKmsClient(uri, credentials_file)
    import boto3

    parts = uri.removeprefix("aws-kms://").split(":")
    region = parts[3] if len(parts) > 3 and parts[0] == "arn" else None
    return awskms.new_client(boto3_client=boto3.client("kms", region_name=region), key_uri=uri)


def _gcp_client(uri: str, credentials_file: str | None, gcpkms):
    """Tink's Google Cloud KMS client on a KeyManagementServiceClient: credentials from Google's
    standard configuration (Application Default Credentials), or a service account file."""
    from google.cloud import kms_v1

    client = (
        kms_v1.KeyManagementServiceClient.from_service_account_file(credentials_file)
        if credentials_file
        else kms_v1.KeyManagementServiceClient()
    )
    return gcpkms.new_client(kms_v1_client=client, key_uri=uri)


_EXTRAS = {"gcp-kms://": ("gcp", "Google Cloud KMS"), "aws-kms://": ("aws", "AWS KMS")}


def _kms_aead(uri: str, credentials_file: str | None) -> aead.Aead:
    scheme = next((s for s in _EXTRAS if uri.startswith(s)), None)
    if scheme is None:
        raise SecretError(f"unsupported KMS key URI {uri!r}; expected gcp-kms:// or aws-kms://")
    extra, name = _EXTRAS[scheme]
    try:
        if extra == "gcp":
            from tink.integration import gcpkms

            return _gcp_client(uri, credentials_file, gcpkms).get_aead(uri)
        from tink.integration import awskms

        return _aws_client(uri, credentials_file, awskms).get_aead(uri)
    except ImportError:
        raise SecretError(
            f"master key {uri} needs Tink's {name} integration: pip install 'strm-spark[{extra}]'"
        ) from None
    except tink.TinkError:
        raise SecretError(f"master key {uri}: not a valid {name} key URI") from None
    except Exception as exc:  # no region, no credentials: the error's class, never its text
        raise SecretError(
            f"master key {uri}: the {name} client cannot be created ({type(exc).__name__}); "
            "its region and credentials come from the SDK's standard configuration "
            "(docs/deployment.md)"
        ) from None


def load_master_key(ref: MasterKeyRef) -> MasterKey:
    """Read and check the referenced master key on the driver (before any Spark work), so a
    missing or unusable key fails fast with a clear error."""
    if ref.keyset_file:
        path = Path(ref.keyset_file)
        try:
            material = path.read_bytes()
        except FileNotFoundError:
            raise SecretError(
                f"the master key file that {ref.config_field} names does not exist; create one with: "
                "strm-spark keys new-master-key PATH"
            ) from None
        except OSError as exc:
            raise SecretError(
                f"cannot read the master key file that {ref.config_field} names: {exc.strerror}"
            ) from None
        try:
            primary = json.loads(material)["primaryKeyId"]
        except Exception:
            raise SecretError(
                f"the master key file that {ref.config_field} names is not a Tink JSON keyset"
            ) from None
        key = MasterKey("keyset", f"tink-keyset:{primary}", material)
    else:
        assert ref.kms_uri is not None
        key = MasterKey("kms", ref.kms_uri, b"", ref.credentials_file)
    key.aead()  # fail now, on the driver, rather than in a task
    return key


def new_master_key_file(path: str | Path) -> str | None:
    """Create a Tink AES256_GCM keyset file (mode 0600) for use as a local master key.

    Returns the key's id, or None if the file exists (never overwritten: every keyset wrapped
    with the old key would become unreadable)."""
    p = Path(path)
    if p.exists():
        return None
    p.parent.mkdir(parents=True, exist_ok=True)
    handle = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM)
    text = tink.json_proto_keyset_format.serialize(handle, secret_key_access.TOKEN)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    p.chmod(0o600)
    return f"tink-keyset:{handle.keyset_info().primary_key_id}"


def is_wrapped(keyset: bytes) -> bool:
    """True if `keyset` is a Tink encrypted keyset (wrapped with a master key)."""
    return _WRAPPED_MARKER in keyset


def wrap(keyset: bytes, key_link: str, master: MasterKey) -> bytes:
    """Encrypt a cleartext Tink JSON keyset with the master AEAD, bound to its key link."""
    handle = tink.json_proto_keyset_format.parse(keyset.decode("utf-8"), secret_key_access.TOKEN)
    return wrap_handle(handle, key_link, master)


def wrap_handle(handle: tink.KeysetHandle, key_link: str, master: MasterKey) -> bytes:
    return tink.json_proto_keyset_format.serialize_encrypted(
        handle, master.aead(), key_link.encode("utf-8")
    ).encode("utf-8")


def open_keyset(keyset: bytes, key_link: str | None, master: MasterKey | None) -> tink.KeysetHandle:
    """The keyset handle of a stored keyset: wrapped ones are decrypted with the master key and
    their key link. Errors say what is wrong, never show the keyset."""
    if not is_wrapped(keyset):
        try:
            return tink.json_proto_keyset_format.parse(
                keyset.decode("utf-8"), secret_key_access.TOKEN
            )
        except Exception:
            raise CryptoError("invalid Tink keyset") from None
    if master is None:
        raise CryptoError(
            "the keyset is encrypted with a master key, but no master key is configured (keys.master_key)"
        )
    if not key_link:
        raise CryptoError("an encrypted keyset needs its key link to be opened")
    try:
        return tink.json_proto_keyset_format.parse_encrypted(
            keyset.decode("utf-8"), master.aead(), key_link.encode("utf-8")
        )
    except SecretError:
        raise
    except Exception:
        raise CryptoError(
            f"cannot decrypt the keyset of key link {key_link} with master key {master.id}: "
            "wrong master key, or the keyset was moved to another key link"
        ) from None


def unwrap(keyset: bytes, key_link: str | None, master: MasterKey | None) -> bytes:
    """The cleartext Tink JSON of a stored keyset (for tools that need it, e.g. STRM's snippet)."""
    if not is_wrapped(keyset):
        return keyset
    handle = open_keyset(keyset, key_link, master)
    return tink.json_proto_keyset_format.serialize(handle, secret_key_access.TOKEN).encode("utf-8")


@functools.lru_cache(maxsize=_AEAD_CACHE_SIZE)
def _master_aead(key: MasterKey) -> aead.Aead:
    """A bounded, thread-safe cache of master AEADs (a frozen MasterKey is its own key)."""
    return key._build()
