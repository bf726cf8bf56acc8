"""The typed, frozen model of a native job: source, contract, keys, outputs, derived outputs and
secrets by reference (never their values)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from strm_spark.contract.model import Contract
from strm_spark.errors import SecretError
from strm_spark.storage.location import KEY_STORE_TABLES, Location, resolve_location

SOURCE_FORMATS = ("csv", "json", "parquet", "delta", "kafka")
# How a Kafka record's value is parsed, per the contract.
KAFKA_VALUE_FORMATS = ("json", "csv")
# Reader options strm-spark owns: changing them would silently drop or misread rows.
FORCED_READER_OPTIONS = ("mode", "columnNameOfCorruptRecord", "enforceSchema")


OUTPUT_FORMATS = ("delta", "parquet", "csv")


CONSENT_TYPES = ("CUMULATIVE", "GRANULAR")


WRITE_MODES = ("append", "overwrite")


DEFAULT_RETENTION_DAYS = 2556  # STRM's default key retention (7 years)


@dataclass(frozen=True)
class SecretRef:
    """A secret referenced by env var or file, never written in the config itself. Errors name
    the config field (`config_field`), never its value: a secret pasted where a name or path belongs
    must not be printed back."""

    env: str | None = None
    file: str | None = None
    config_field: str = field(default="masking.seed_file", compare=False)

    def resolve(self) -> bytes:
        if self.env:
            value = os.environ.get(self.env)
            if not value:
                raise SecretError(f"the env var that {self.config_field} names is not set or empty")
            return value.encode("utf-8")
        assert self.file is not None
        try:
            data = Path(self.file).read_bytes().strip()
        except FileNotFoundError:
            raise SecretError(
                f"the masking seed file that {self.config_field} names does not exist; "
                "create one with: strm-spark new-secret PATH"
            ) from None
        except OSError as exc:
            raise SecretError(
                f"cannot read the masking seed file that {self.config_field} names: {exc.strerror}"
            ) from None
        if not data:
            raise SecretError(f"the masking seed file that {self.config_field} names is empty")
        return data


KMS_URI_PREFIXES = ("gcp-kms://", "aws-kms://")


@dataclass(frozen=True)
class MasterKeyRef:
    """Where the key-encryption (master) key lives: a local Tink AEAD keyset file or a KMS key.

    Only a reference: the key itself is never in the config. See strm_spark.crypto.envelope."""

    keyset_file: str | None = None
    kms_uri: str | None = None
    credentials_file: str | None = None
    config_field: str = field(
        default="keys.master_key", compare=False
    )  # named in errors, not the value


@dataclass(frozen=True)
class KafkaSource:
    """A Kafka topic: its brokers, the value's format, and whether the record's timestamp
    stands in for a missing timestamp field."""

    bootstrap_servers: str
    topic: str
    value_format: str = "json"
    timestamp_fallback: bool = False


@dataclass(frozen=True)
class SourceConfig:
    path: Location  # files, or a table (read whole, as a batch); kafka://servers/topic
    format: str
    options: tuple[tuple[str, str], ...] = ()
    incremental: bool = False  # process only files no earlier run of the job processed
    kafka: KafkaSource | None = None

    @property
    def record_format(self) -> str:
        """How a record is written: the file format, or a Kafka value's (json or csv)."""
        return self.kafka.value_format if self.kafka is not None else self.format

    @property
    def is_files(self) -> bool:
        """Whether the source is files (csv, json or parquet), not a table or a topic."""
        return self.format in ("csv", "json", "parquet") and not self.path.is_table

    @property
    def delimiter(self) -> str:
        """The field delimiter of a CSV source (Spark's `sep` or `delimiter` option)."""
        options = dict(self.options)
        return str(options.get("sep", options.get("delimiter", ",")))

    @property
    def charset(self) -> str:
        """The text readers' charset (their `encoding`/`charset` option; UTF-8 by default)."""
        opts = {k.lower(): v for k, v in self.options}
        return opts.get("encoding") or opts.get("charset") or "UTF-8"


@dataclass(frozen=True)
class ConsentConfig:
    default_levels: tuple[int, ...]
    extractor_field: str | None = None
    mapping: tuple[tuple[str, tuple[int, ...]], ...] = ()


@dataclass(frozen=True)
class TimestampConfig:
    field: str
    pattern: str
    default_time_zone: str


class _Written:
    format: str

    @property
    def strm_layout(self) -> bool:
        """STRM's one-file CSV: the source's text echoed, input order kept, cells unguarded."""
        return self.format == "strm-csv"


@dataclass(frozen=True)
class OutputConfig(_Written):
    path: Location
    format: str = "delta"  # delta | parquet | csv | strm-csv (one CSV file in STRM's layout)
    charset: str = "UTF-8"
    # Layout of a new table: none by default (rows sorted by strmDay, whose statistics skip
    # files); partition_by (e.g. [strmDay]) or, for Delta, cluster_by (liquid clustering).
    partition_by: tuple[str, ...] = ()
    cluster_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class DerivedConfig(_Written):
    name: str
    path: Location
    format: str
    consent_type: str
    consent_levels: tuple[int, ...]
    masked_fields: tuple[str, ...] = ()
    charset: str = "UTF-8"
    hash_type: str = "HMAC_SHA256"  # or MURMUR3 (STRM's default, not a cryptographic hash)
    partition_by: tuple[str, ...] = ()
    cluster_by: tuple[str, ...] = ()
    # A seed written in the job config itself (STRM configs only); native configs reference a
    # secret (masking.seed_env / seed_file) instead.
    inline_seed: str | None = field(default=None, repr=False)


def _tables(where: Location, names: tuple[str, ...]) -> list[Location]:
    """A folder as it is; a schema as the named tables of it that strm-spark writes."""
    return [where] if where.is_files else [where.child(n) for n in names]


@dataclass(frozen=True)
class JobConfig:
    name: str
    source: SourceConfig
    contract: Contract
    event_contract_ref: str
    consent: ConsentConfig
    timestamp: TimestampConfig
    group_id: str
    key_store: Location  # a folder, or a schema of its tables
    retention_days: int
    encrypted: OutputConfig
    data_subjects: OutputConfig
    rejected: OutputConfig
    derived: tuple[DerivedConfig, ...]
    summary_dir: Location  # a folder, or a schema, of the table of runs and processed files
    write_mode: str = "append"
    masking_seed: SecretRef | None = None
    config_path: str = "<inline>"
    keys_export: OutputConfig | None = None  # STRM's keys.csv for the key links of a run
    master_key: MasterKeyRef | None = None
    audit: Location | None = (
        None  # the audit table of forget / purge-expired; default <key store>/audit
    )
    max_rejected_fraction: float | None = None  # fail the run, before any commit, above this
    # Native CSV outputs: a text cell starting with = + - @ tab or CR gets a leading ' (OWASP's
    # CSV-injection rule), so a spreadsheet does not run it as a formula.
    csv_formula_guard: bool = True

    # A key store written {schema: ...} must not share a data output's schema (its grants).
    keys_apart_from_data: bool = True
    # `strm-spark stream`'s checkpoint folder (`outputs.checkpoint`); by default `checkpoint` in
    # the summary folder. None: the summary is a schema, and a stream needs one set.
    checkpoint: Location | None = None

    def __post_init__(self) -> None:
        if self.audit is None:
            object.__setattr__(self, "audit", self.key_store.child("audit"))
        if self.checkpoint is None and self.summary_dir.is_files:
            object.__setattr__(self, "checkpoint", self.summary_dir.child("checkpoint"))

    def summary_table(self, name: str) -> Location:
        """One of the job's own tables (`runs`, `files`): in the summary folder, or
        `strm_<name>` in the summary schema (which may hold the user's tables too)."""
        where = self.summary_dir
        return where.child(name if where.is_files else f"strm_{name}")

    def written_locations(self) -> list[Location]:
        """Every table and file the job writes (all of them owner-only where they are files)."""
        outs = [
            *_tables(self.key_store, KEY_STORE_TABLES),
            self.encrypted.path,
            self.rejected.path,
            self.data_subjects.path,
            *(
                [self.summary_dir]
                if self.summary_dir.is_files
                else [self.summary_table("runs"), self.summary_table("files")]
            ),
            self.audit,
            *(d.path for d in self.derived),
            self.checkpoint,
        ]
        if self.keys_export is not None:
            outs.append(self.keys_export.path)
        return [o for o in outs if o]

    def with_checkpoint(self, path: str) -> JobConfig:
        """This job with another stream checkpoint (`--checkpoint`), relative to the current
        folder."""
        from dataclasses import replace

        return replace(self, checkpoint=resolve_location(path, Path.cwd()))

    def with_source_path(self, path: str) -> JobConfig:
        from dataclasses import replace

        return replace(self, source=replace(self.source, path=resolve_location(path, Path.cwd())))
