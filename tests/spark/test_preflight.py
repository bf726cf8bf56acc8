"""`validate` catches what a run would fail on, and a run checks it before writing anything
(#16 item 9): Java regex semantics, a missing source, an output inside the source, a missing
seed file, a CSV header that does not match, duplicate keys in YAML."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from helpers import job_config, job_doc

from strm_spark.config.load import load_job_config, parse_job_config
from strm_spark.config.preflight import check_job, check_on_session
from strm_spark.errors import ConfigError, DataError, StrmSparkError
from strm_spark.pipeline.run import run_job

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
ROW = "536365,85123A,HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom"


def _source(tmp_path, header=HEADER):
    src = tmp_path / "in"
    src.mkdir(exist_ok=True)
    (src / "part.csv").write_text(f"{header}\n{ROW}\n", encoding="utf-8")
    return src


def _with_regex(tmp_path, pattern):
    doc = job_doc(_source(tmp_path), tmp_path / "out")
    doc["contract"]["validations"] = [{"field": "Country", "type": "regex", "value": pattern}]
    return parse_job_config(doc, "job.yaml", tmp_path)


@pytest.mark.parametrize("pattern", ["(?P<word>[A-Z]+)", "(unclosed"])
def test_regexes_are_checked_with_java_semantics(spark, tmp_path, pattern):
    config = _with_regex(tmp_path, pattern)
    for check in (lambda: check_job(config), lambda: check_on_session(spark, config)):
        with pytest.raises(
            ConfigError, match=r"validations\[0\]\.value: not a valid Java regular expression"
        ) as e:
            check()
        assert pattern not in str(e.value)
    with pytest.raises(ConfigError):
        run_job(spark, config)
    assert not (tmp_path / "out").exists()


def test_a_java_only_regex_passes(spark, tmp_path):
    config = _with_regex(tmp_path, r"\p{IsLatin}[\p{IsLatin} ]+")
    check_job(config)
    check_on_session(spark, config)


def test_missing_source_and_output_inside_the_source(tmp_path):
    doc = job_doc(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(ConfigError, match="source.path: the source does not exist"):
        check_job(parse_job_config(doc, "job.yaml", tmp_path), java_regexes=False)
    src = _source(tmp_path)
    doc = job_doc(src, tmp_path / "out")
    doc["outputs"]["encrypted"] = str(src)
    with pytest.raises(ConfigError, match="outputs.encrypted: is the source folder or inside it"):
        check_job(parse_job_config(doc, "job.yaml", tmp_path), java_regexes=False)


def test_a_missing_seed_file_is_found_by_validate(tmp_path):
    doc = job_doc(_source(tmp_path), tmp_path / "out")
    doc["masking"] = {"seed_file": str(tmp_path / "SuperSecretSeed")}
    doc["outputs"]["derived"][0]["masked_fields"] = ["CustomerID"]
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(
        [sys.executable, "-m", "strm_spark.cli", "validate", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "masking.seed_file" in proc.stderr and "SuperSecret" not in proc.stderr
    with pytest.raises(StrmSparkError):
        check_job(load_job_config(cfg), java_regexes=False)


def test_validate_refuses_a_python_only_regex_with_exit_2(tmp_path):
    doc = job_doc(_source(tmp_path), tmp_path / "out")
    doc["contract"]["validations"] = [
        {"field": "Country", "type": "regex", "value": "(?P<c>[A-Z]+)"}
    ]
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(
        [sys.executable, "-m", "strm_spark.cli", "validate", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "not a valid Java regular expression" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_duplicate_yaml_keys_are_an_error(tmp_path):
    cfg = tmp_path / "job.yaml"
    text = yaml.safe_dump(job_doc(_source(tmp_path), tmp_path / "out"), sort_keys=False)
    cfg.write_text(text.replace("name: test_job\n", "name: test_job\nname: other_job\n", 1))
    with pytest.raises(ConfigError, match="duplicate key 'name'"):
        load_job_config(cfg)


def test_a_csv_header_that_does_not_match_fails_before_the_key_store_exists(spark, tmp_path):
    src = _source(tmp_path, header=HEADER.replace("CustomerID", "ClientID"))
    out = tmp_path / "out"
    with pytest.raises(DataError, match="header"):
        run_job(spark, job_config(src, out))
    assert not (out / "keystore").exists()
    assert not (out / "encrypted").exists()
