"""Stage 2, validate: typed fields, event time and UTC day, consent, the contract's rules,
malformed records, and the columns the later stages key on. Pure DataFrame transforms."""

from __future__ import annotations

from pyspark.sql import DataFrame

from strm_spark.config.model import JobConfig
from strm_spark.pipeline import transforms as tf


def with_validation(rows: DataFrame, config: JobConfig) -> DataFrame:
    """`rows` as read, plus reasons (empty for a valid row), `__day`, `__consent`, the subject,
    the key value and a flat copy of each PII field."""
    contract, charset = config.contract, config.source.charset
    return (
        rows.transform(
            lambda df: (
                tf.with_undecodable_text(df, contract, charset)
                if config.source.format == "csv"
                else df
            )
        )
        .transform(tf.with_typed_fields, contract)
        .transform(
            tf.with_event_time,
            config.timestamp.field,
            config.timestamp.pattern,
            config.timestamp.default_time_zone,
        )
        .transform(
            tf.with_consent,
            config.consent.default_levels,
            config.consent.extractor_field,
            config.consent.mapping,
        )
        .transform(tf.with_validations, contract)
        .transform(tf.with_malformed_records, charset, config.source.record_format)
        .transform(tf.with_subject, contract.data_subject_field)
        .transform(tf.with_key_value, contract.key_field)
        .transform(tf.with_pii_columns, contract)
    )
