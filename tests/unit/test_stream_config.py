"""Stream options and Kafka source configs, checked before Spark starts."""

from __future__ import annotations

import pytest
from helpers import job_doc

from strm_spark.cli.main import main
from strm_spark.config.load import parse_job_config
from strm_spark.errors import ConfigError, UsageError
from strm_spark.pipeline.stream import StreamOptions, _interval


@pytest.mark.parametrize(
    ("written", "words"),
    [
        ("30s", "30 seconds"),
        ("500ms", "500 milliseconds"),
        ("5m", "5 minutes"),
        ("2 minutes", "2 minutes"),
    ],
)
def test_trigger_intervals_in_spark_words(written, words):
    assert _interval(written) == words


@pytest.mark.parametrize("bad", ["0s", "30", "5d", "soon"])
def test_bad_trigger_intervals_fail_before_spark_starts(bad):
    with pytest.raises(UsageError, match="expected a duration like 30s"):
        StreamOptions(available_now=False, interval=bad)
    with pytest.raises(UsageError, match="1 or more"):
        StreamOptions(max_files_per_trigger=0)


def test_the_cli_refuses_a_bad_interval_with_exit_2(tmp_path, capsys):
    import yaml

    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job_doc(tmp_path / "in", tmp_path / "out")))
    assert main(["stream", str(tmp_path / "job.yaml"), "--trigger-interval", "2d"]) == 2
    assert "expected a duration like 30s" in capsys.readouterr().err


def _kafka(tmp_path, **kafka):
    doc = job_doc("unused", tmp_path)
    doc["source"] = {
        "format": "kafka",
        "kafka": {"bootstrap_servers": "b:9092", "topic": "t", **kafka},
    }
    return doc


def test_kafka_source_config(tmp_path):
    config = parse_job_config(_kafka(tmp_path, value_format="csv"), "job.yaml", tmp_path)
    assert config.source.kafka.topic == "t" and config.source.record_format == "csv"
    assert str(config.source.path) == "kafka://b:9092/t"
    assert config.checkpoint == str(tmp_path / "_runs" / "checkpoint")
    with pytest.raises(ConfigError, match="expected one of"):
        parse_job_config(_kafka(tmp_path, value_format="avro"), "job.yaml", tmp_path)
    doc = _kafka(tmp_path)
    doc["source"]["incremental"] = True
    with pytest.raises(ConfigError, match="run it with strm-spark stream"):
        parse_job_config(doc, "job.yaml", tmp_path)
    doc = _kafka(tmp_path)
    doc["source"]["path"] = "x"
    with pytest.raises(ConfigError, match="not a path or table"):
        parse_job_config(doc, "job.yaml", tmp_path)
    doc = job_doc(tmp_path, tmp_path / "o")
    doc["source"]["kafka"] = {"topic": "t"}
    with pytest.raises(ConfigError, match="only a kafka source"):
        parse_job_config(doc, "job.yaml", tmp_path)


def test_the_checkpoint_is_one_of_the_jobs_own_locations(tmp_path):
    doc = job_doc(tmp_path / "in", tmp_path / "out")
    doc["outputs"]["checkpoint"] = str(tmp_path / "out" / "encrypted" / "ckpt")
    with pytest.raises(ConfigError, match="outputs.checkpoint: same or nested location"):
        parse_job_config(doc, "job.yaml", tmp_path)
    doc["outputs"]["checkpoint"] = {"table": "a.b"}
    with pytest.raises(ConfigError, match="outputs.checkpoint"):
        parse_job_config(doc, "job.yaml", tmp_path)
