"""STRM's job files load into a native job: camelCase keys, enum numbers, field metadata,
and errors that name STRM's field. No Spark."""

from __future__ import annotations

import pytest
from helpers import strm_docs as _docs
from helpers import strm_load as _load

from strm_spark.compat.strm.config import normalize_keys
from strm_spark.crypto.masking import strm_murmur3_hex
from strm_spark.errors import ConfigError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("unique-5", "1083e8169d7138e990cc30095578452"),
        ("session-273", "7cc66d130664caa9efacda1026c1c44"),
        ("sensitive-0", "e49bd309eed4a5094437a71ac2bc1cad"),
        ("not-sensitive-6", "538ad30b2aa2781e855c4eb059cf68a3"),
    ],
)
def test_murmur3_vectors(value, expected):
    assert strm_murmur3_hex("hi-there", value) == expected


def _camel(value):
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            parts = key.split("_")
            camel = parts[0] + "".join(p.title() for p in parts[1:])
            out[camel] = (
                item
                if key == "field_patterns" and not isinstance(item, list) and False
                else _camel(item)
            )
        return out
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def test_camel_case_and_enum_numbers_load_the_same_job(tmp_path):
    config, contract, schema = _docs()
    config["derived_data"][0]["masked_fields"] = {
        "hash_type": "",
        "seed": "s",
        "field_patterns": {"strmprivacy/online-retail/1.0.0": {"field_patterns": ["Country"]}},
    }
    snake = _load(tmp_path, config, contract, schema)
    camel_doc = _camel(config)
    camel_doc["derivedData"][0]["consentLevelType"] = 1
    camel = _load(tmp_path, camel_doc, contract, schema)
    assert camel == snake
    assert (
        camel.derived[0].masked_fields == ("Country",) and camel.derived[0].hash_type == "MURMUR3"
    )
    assert "seed" not in repr(camel.derived[0])
    assert normalize_keys({"fieldPatterns": {"someValue": {"consentLevels": [1]}}}) == {
        "field_patterns": {"someValue": {"consent_levels": [1]}}
    }


def test_absent_group_id_means_one_default_group(tmp_path):
    config, contract, schema = _docs()
    del config["encryption"]["batch_job_group_id"]
    assert _load(tmp_path, config, contract, schema).group_id == "default"


def test_field_metadata_wins_over_pii_fields(tmp_path):
    config, contract, schema = _docs()
    contract["fieldMetadata"] = [
        {"fieldName": "Description", "personalDataConfig": {"isPii": True, "purposeLevel": 3}},
        {"fieldName": "Country", "personalDataConfig": {"isPii": False, "isQuasiId": True}},
        {"fieldName": "StockCode", "statisticalDataType": "NOMINAL"},
    ]
    job = _load(tmp_path, config, contract, schema)
    assert job.contract.pii_levels == {"Description": 3}


@pytest.mark.parametrize(
    ("mutate", "path", "expected"),
    [
        (lambda c, k, s: c.update(extra=1), "extra", "unknown field"),
        (
            lambda c, k, s: c["source_data"]["data_connector_ref"].update(name="other-bucket"),
            "source_data.data_connector_ref.name",
            "--connector other-bucket=BASE_URI",
        ),
        (
            lambda c, k, s: c["source_data"]["data_type"].update(csv={"charset": "KLINGON-8"}),
            "source_data.data_type.csv.charset",
            "unknown charset",
        ),
        (
            lambda c, k, s: c["source_data"].update(data_type={"database": {"table": "t"}}),
            "source_data.data_type",
            "only CSV",
        ),
        (
            lambda c, k, s: c["encryption"]["timestamp_config"]["default_time_zone"].update(
                id="Europe/Atlantis"
            ),
            "encryption.timestamp_config.default_time_zone.id",
            "unknown time zone",
        ),
        (
            lambda c, k, s: c["encryption"]["timestamp_config"].update(format="yyyy-MM-dd bb"),
            "encryption.timestamp_config.format",
            "unknown pattern letter",
        ),
        (
            lambda c, k, s: c["encryption"]["timestamp_config"].update(field="Nope"),
            "encryption.timestamp_config.field",
            "not a field of the schema",
        ),
        (
            lambda c, k, s: c["event_contract_ref"].update(version="1.0"),
            "event_contract_ref.version",
            "semantic version",
        ),
        (
            lambda c, k, s: c["derived_data"][0].update(consent_level_type="SOMETIMES"),
            "derived_data[0].consent_level_type",
            "CUMULATIVE, GRANULAR",
        ),
        (
            lambda c, k, s: c["derived_data"][0].update(consent_level_type=7),
            "derived_data[0].consent_level_type",
            "expected 1 (CUMULATIVE) or 2 (GRANULAR)",
        ),
        (
            lambda c, k, s: c["derived_data"][0].update(consent_levels=[1, 2]),
            "derived_data[0].consent_levels",
            "exactly one level",
        ),
        (
            lambda c, k, s: c["derived_data"][0].update(masked_fields={"hash_type": "MD5"}),
            "derived_data[0].masked_fields.hash_type",
            "MURMUR3",
        ),
        (
            lambda c, k, s: c["derived_data"][0].update(
                masked_fields={
                    "field_patterns": {
                        "strmprivacy/online-retail/1.0.0": {"field_patterns": ["Email"]}
                    }
                }
            ),
            "derived_data[0].masked_fields.field_patterns.strmprivacy/online-retail/1.0.0.field_patterns[0]",
            "not a field",
        ),
        (
            lambda c, k, s: c["derived_data"][0].update(
                masked_fields={
                    "field_patterns": {"other/contract/1.0.0": {"field_patterns": ["Country"]}}
                }
            ),
            "derived_data[0].masked_fields.field_patterns.other/contract/1.0.0",
            "this job uses",
        ),
        (
            lambda c, k, s: c["encrypted_data"]["target"].update(
                file_name="uci_online_retail/keys.csv"
            ),
            "encryption_keys_data.target",
            "same or nested location as encrypted_data.target",
        ),
        (
            lambda c, k, s: k.update(piiFields={"Quantity": 1}),
            "piiFields.Quantity",
            "must be STRING",
        ),
        (
            lambda c, k, s: s["nodes"].append({"type": "DATE", "name": "x"}),
            "nodes[8].type",
            "expected one of",
        ),
    ],
)
def test_config_errors_name_the_strm_field(tmp_path, mutate, path, expected):
    config, contract, schema = _docs()
    mutate(config, contract, schema)
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, config, contract, schema)
    message = str(info.value)
    assert path in message and expected in message


def test_bad_connector_argument():
    from strm_spark.compat.strm.config import parse_connectors

    assert parse_connectors(["a=s3a://bucket/x", "b=/data"]) == {
        "a": "s3a://bucket/x",
        "b": "/data",
    }
    with pytest.raises(ConfigError, match="NAME=BASE_URI"):
        parse_connectors(["just-a-name"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_connectors(["a=/x", "a=/y"])
