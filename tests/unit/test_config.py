"""Config and contract validation: pure Python, no JVM."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import UCI_CONTRACT_DOC, job_doc

from strm_spark.config.load import load_job_config, parse_job_config
from strm_spark.contract.parse import parse_contract
from strm_spark.crypto.envelope import load_master_key
from strm_spark.errors import ConfigError, SecretError

REPO = Path(__file__).resolve().parents[2]


def _error(doc, tmp_path) -> str:
    with pytest.raises(ConfigError) as info:
        parse_job_config(doc, "job.yaml", tmp_path)
    return str(info.value)


def _contract(**changes):
    doc = copy.deepcopy(UCI_CONTRACT_DOC)
    doc.update(changes)
    return doc


def test_example_configs_are_valid():
    demo = load_job_config(REPO / "conf" / "demo.yaml")
    assert demo.contract.key_field == "session_id"
    assert {d.consent_type for d in demo.derived} == {"CUMULATIVE", "GRANULAR"}
    assert len(set(demo.contract.pii_levels.values())) > 1
    uc = load_job_config(REPO / "conf" / "databricks.yaml")  # tables by name, a volume source
    assert uc.encrypted.path.is_table and uc.key_store.kind == "schema"
    assert uc.source.path.kind == "volume" and uc.summary_dir == "main.strm_events"
    uci = load_job_config(REPO / "conf" / "online_retail.yaml")
    assert uci.contract.pii_levels == {"CustomerID": 1}
    assert uci.consent.default_levels == (2,)
    assert uci.timestamp.default_time_zone == "Europe/Amsterdam"
    assert uci.encrypted.format == "delta"


def test_valid_config_resolves_paths_relative_to_base(tmp_path):
    cfg = parse_job_config(job_doc("in.csv", Path("out")), "job.yaml", tmp_path)
    assert cfg.source.path == str(tmp_path / "in.csv")
    assert cfg.key_store == str(tmp_path / "out" / "keystore")
    assert cfg.summary_dir == str(tmp_path / "out" / "_runs")
    assert cfg.write_mode == "append"


@pytest.mark.parametrize(
    ("mutate", "path", "expected"),
    [
        (lambda d: d.update(extra=1), "extra", "unknown field"),
        (
            lambda d: d["keys"].update(retention_days="long"),
            "keys.retention_days",
            "expected an integer",
        ),
        (
            lambda d: d["consent"].update(default_levels=[2, -1]),
            "consent.default_levels[1]",
            ">= 0",
        ),
        (
            lambda d: d["timestamp"].update(default_time_zone="Mars/Olympus"),
            "timestamp.default_time_zone",
            "unknown time zone",
        ),
        (
            lambda d: d["timestamp"].update(pattern="yyyy-MM-dd {HH}"),
            "timestamp.pattern",
            "reserved",
        ),
        (
            lambda d: d["timestamp"].update(pattern="yyyy-MM-dd 'at HH"),
            "timestamp.pattern",
            "unterminated",
        ),
        (
            lambda d: d["timestamp"].update(pattern="yyyy-MM-dd bb"),
            "timestamp.pattern",
            "unknown pattern letter",
        ),
        (lambda d: d["timestamp"].update(field="Nope"), "timestamp.field", "not a field"),
        (lambda d: d["timestamp"].update(field="Quantity"), "timestamp.field", "must be a STRING"),
        (
            lambda d: d["source"].update(format="xml"),
            "source.format",
            "expected one of csv, json, parquet, delta",
        ),
        (
            lambda d: d["outputs"].update(rejected=d["outputs"]["encrypted"]),
            "outputs.rejected",
            "same or nested location as outputs.encrypted",
        ),
        (
            lambda d: d["outputs"]["derived"][0].update(path=d["outputs"]["encrypted"] + "/sub"),
            "outputs.derived[0]",
            "same or nested location",
        ),
        (
            lambda d: d["keys"].update(store=d["outputs"]["encrypted"] + "/keys"),
            "keys.store",
            "kept apart from the data outputs",
        ),
        (
            lambda d: d["outputs"]["derived"][0].update(consent_levels=[1, 2]),
            "outputs.derived[0].consent_levels",
            "exactly one level",
        ),
        (
            lambda d: d["outputs"]["derived"][0].update(consent_type="SOMETIMES"),
            "outputs.derived[0].consent_type",
            "CUMULATIVE, GRANULAR",
        ),
        (
            lambda d: d["outputs"]["derived"][0].update(masked_fields=["CustomerID"]),
            "outputs.derived[0].masked_fields",
            "seed",
        ),
        (
            lambda d: d["outputs"].update(data_subjects={"path": "x", "format": "csv"}),
            "outputs.data_subjects.format",
            "expected one of delta",
        ),
        (
            lambda d: d["contract"].update(pii_fields={"Email": 1}),
            "pii_fields.Email",
            "not a field of the schema",
        ),
        (
            lambda d: d["contract"].update(pii_fields={"Quantity": 1}),
            "pii_fields.Quantity",
            "must be STRING",
        ),
        (
            lambda d: d["contract"].update(pii_fields={"CustomerID": -2}),
            "pii_fields.CustomerID",
            ">= 0",
        ),
        (lambda d: d["contract"].update(key_field="Quantity"), "key_field", "must be a STRING"),
        (
            lambda d: d["contract"].update(
                validations=[{"field": "Country", "type": "sql", "value": "x"}]
            ),
            "validations[0].type",
            "expected one of regex",
        ),
        (
            lambda d: d["contract"]["schema"]["nodes"].append(
                {"name": "strmMeta", "type": "STRING"}
            ),
            "schema.nodes[8].name",
            "reserved",
        ),
        (
            lambda d: d["contract"]["schema"]["nodes"].append({"name": "X", "type": "DECIMAL"}),
            "schema.nodes[8].type",
            "expected one of",
        ),
        # No year: every row would land on a day of 1970 and its key expire at once (#33).
        *[
            (
                lambda d, p=pattern: d["timestamp"].update(pattern=p),
                "timestamp.pattern",
                "the pattern gives no whole date",
            )
            for pattern in ("MM-dd'T'HH:mm:ss", "HH:mm:ss", "dd/MM HH:mm", "D HH:mm")
        ],
    ],
)
def test_bad_config_names_file_field_and_expectation(tmp_path, mutate, path, expected):
    doc = job_doc("in.csv", tmp_path / "out")
    mutate(doc)
    message = _error(doc, tmp_path)
    assert path in message
    assert expected in message
    assert message.startswith("job.yaml")


def test_missing_required_field(tmp_path):
    doc = job_doc("in.csv", tmp_path / "out")
    del doc["timestamp"]
    assert "job.yaml: timestamp: required field is missing" in _error(doc, tmp_path)


def test_contract_file_errors_name_the_contract_file(tmp_path):
    contract = tmp_path / "contract.yaml"
    contract.write_text(yaml.safe_dump(_contract(pii_fields={"Nope": 1})))
    doc = job_doc("in.csv", tmp_path / "out", contract=str(contract))
    message = _error(doc, tmp_path)
    assert message.startswith(str(contract))
    assert "pii_fields.Nope" in message


def test_contract_accepts_strm_camel_case_json():
    doc = {
        "schema": UCI_CONTRACT_DOC["schema"],
        "keyField": "CustomerID",
        "piiFields": {"CustomerID": 1},
        "dataSubjectField": "CustomerID",
        "validations": [{"field": "Country", "type": "regex", "value": "[A-Z].*"}],
    }
    contract = parse_contract(doc, "c.json")
    assert contract.key_field == "CustomerID"
    assert contract.pii_levels == {"CustomerID": 1}
    assert contract.validations[0].pattern == "[A-Z].*"


def test_config_error_does_not_echo_secret_values(tmp_path):
    doc = job_doc("in.csv", tmp_path / "out")
    doc["masking"] = {"seed_env": "X", "seed": "hunter2-very-secret"}
    message = _error(doc, tmp_path)
    assert "masking.seed" in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    "masking",
    [{"seed_file": "SuperSecret-hunter2"}, {"seed_env": "SuperSecret-hunter2"}, {"seed_file": "."}],
)
def test_secret_reference_errors_name_the_field_not_its_value(tmp_path, masking):
    """A secret pasted where a path or an env var name belongs is never printed back."""
    doc = job_doc("in.csv", tmp_path / "out")
    doc["masking"] = masking
    config = parse_job_config(doc, "job.json", tmp_path)
    with pytest.raises(SecretError) as info:
        config.masking_seed.resolve()
    field = f"masking.{next(iter(masking))}"
    assert field in str(info.value), str(info.value)
    assert "SuperSecret" not in str(info.value) and str(tmp_path) not in str(info.value)


def test_master_key_errors_name_the_field_not_its_value(tmp_path):
    doc = job_doc("in.csv", tmp_path / "out")
    doc["keys"]["master_key"] = {"keyset_file": "SuperSecret-hunter2"}
    config = parse_job_config(doc, "job.json", tmp_path)
    for content in (None, b"SuperSecret-garbage"):
        if content is not None:
            (tmp_path / "SuperSecret-hunter2").write_bytes(content)
        with pytest.raises(SecretError) as info:
            load_master_key(config.master_key)
        assert "keys.master_key" in str(info.value) and "SuperSecret" not in str(info.value)


def test_cli_bad_config_exits_nonzero_without_spark_or_output(tmp_path):
    doc = job_doc("in.csv", tmp_path / "out")
    doc["timestamp"]["default_time_zone"] = "Nowhere/Atlantis"
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(
        [sys.executable, "-m", "strm_spark.cli", "run", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert f"{cfg}: timestamp.default_time_zone: unknown time zone" in proc.stderr
    assert "SparkContext" not in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


# --- found by a hostile trial (#33) --------------------------------------------------------------


@pytest.mark.parametrize("key", ["mode", "MODE", "columnNameOfCorruptRecord", "enforceschema"])
def test_reader_options_strm_spark_owns_are_refused_when_the_config_loads(tmp_path, key):
    """`validate` refuses what `run` would (defect 8): the option named by its field path, in
    any case (Spark's reader options ignore it)."""
    doc = job_doc("in.csv", tmp_path / "out")
    doc["source"]["options"] = {"header": True, key: "FAILFAST"}
    message = _error(doc, tmp_path)
    assert f"source.options.{key}" in message and "set by strm-spark" in message


def test_validate_refuses_a_missing_master_key_file(tmp_path, capsys):
    from strm_spark.cli.main import main

    doc = job_doc(tmp_path / "in.csv", tmp_path / "out")
    (tmp_path / "in.csv").write_text("InvoiceNo\n", encoding="utf-8")
    doc["keys"]["master_key"] = {"keyset_file": "no-such-key.json"}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert main(["validate", str(tmp_path / "job.yaml")]) == 2
    err = capsys.readouterr().err
    assert "keys.master_key.keyset_file" in err and "does not exist" in err


def test_secret_files_others_can_read_warn_and_strict_refuses(tmp_path, capsys, caplog):
    """A 0644 seed file validates with a warning, and `--strict` refuses it; `new-secret` on
    such a file warns too (defect 10). Messages name the field, never the secret."""
    from strm_spark.cli.main import main
    from strm_spark.crypto.masking import new_secret_file

    seed = tmp_path / "seed"
    new_secret_file(seed)
    seed.chmod(0o644)
    doc = job_doc(tmp_path / "in.csv", tmp_path / "out")
    (tmp_path / "in.csv").write_text("InvoiceNo\n", encoding="utf-8")
    doc["masking"] = {"seed_file": str(seed)}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    secret = seed.read_text().strip()
    with caplog.at_level("WARNING", logger="strm_spark"):
        assert main(["validate", str(tmp_path / "job.yaml")]) == 0
    assert "masking.seed_file names is open to others (mode 0644)" in caplog.text
    assert main(["validate", str(tmp_path / "job.yaml"), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "--strict refuses it" in err and secret not in err
    caplog.clear()
    with caplog.at_level("WARNING", logger="strm_spark"):
        assert main(["new-secret", str(seed)]) == 0
    assert "open to others (mode 0644)" in caplog.text
    assert main(["new-secret", str(seed), "--strict"]) == 2
    seed.chmod(0o600)
    assert main(["validate", str(tmp_path / "job.yaml"), "--strict"]) == 0
