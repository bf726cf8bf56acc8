"""File work through Spark's public API: existence checks and STRM's one-file CSV outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from strm_spark.compat.strm.outputs import write_strm_csv
from strm_spark.errors import UnsupportedError
from strm_spark.storage.outputs import local_path, path_exists


def test_local_path_maps_local_uris_only():
    assert local_path("/data/x.csv") == Path("/data/x.csv")
    assert local_path("rel/x.csv") == Path("rel/x.csv")
    assert local_path("file:/data/x.csv") == Path("/data/x.csv")
    assert local_path("file:///data/x.csv") == Path("/data/x.csv")
    assert local_path("s3a://bucket/x.csv") is None
    assert local_path("dbfs:/x.csv") is None


def test_path_exists_sees_files_folders_and_absence(spark, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "f.txt").write_text("x")
    assert path_exists(spark, str(tmp_path / "empty"))
    assert path_exists(spark, str(tmp_path / "f.txt"))
    assert path_exists(spark, f"file://{tmp_path}")
    assert not path_exists(spark, str(tmp_path / "missing"))


def test_one_file_csv_is_one_file_and_object_stores_are_refused_before_writing(spark, tmp_path):
    df = spark.createDataFrame([(2, "b"), (1, 'a"q')], "n int, v string")
    target = tmp_path / "out.csv"
    write_strm_csv(df, str(target), "UTF-8", ["n"])
    assert target.read_text() == '"v"\n"a""q"\n"b"\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    with pytest.raises(UnsupportedError, match="not a local path"):
        write_strm_csv(df, "s3a://bucket/out.csv", "UTF-8", ["n"])
