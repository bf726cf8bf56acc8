"""The UDF jar's local file system (`io.strmspark.fs`, strm-spark's local sessions): Hadoop's
modes and commits, with java.nio where Hadoop would start a process."""

from __future__ import annotations

import os
import stat

from strm_spark.session import LOCAL_FS_CONF, UDF_JAR


def _modes(root) -> dict[str, int]:
    return {
        os.path.relpath(os.path.join(d, n), root): stat.S_IMODE(os.stat(os.path.join(d, n)).st_mode)
        for d, dirs, files in os.walk(root)
        for n in dirs + files
    }


def test_the_session_uses_it_and_modes_follow_hadoops_umask_not_the_processs(spark, tmp_path):
    assert UDF_JAR.is_file()
    for key, value in LOCAL_FS_CONF.items():
        assert spark.conf.get(key) == value
    # Hadoop creates the commit files with mode 0666 less its umask (a per-write option here),
    # then sets that mode itself (a `chmod` process in Hadoop's own class; java.nio here).
    # Without that step the files would have the process's umask (022: 0644).
    table = tmp_path / "t"
    spark.range(3).write.format("delta").option("fs.permissions.umask-mode", "027").save(str(table))
    modes = _modes(table)
    commit = {k: v for k, v in modes.items() if k.startswith("_delta_log/00000000000000000000")}
    assert commit and set(commit.values()) == {0o640}, modes
    # Delta makes its log folder with the session's umask (strm-spark's: 077), not the write's.
    assert modes["_delta_log"] == 0o700


def test_commits_through_a_symbolic_link_land_in_its_target(spark, tmp_path):
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)
    for _ in range(2):
        spark.range(2).write.format("delta").mode("append").save(str(link))
    assert spark.read.format("delta").load(str(real)).count() == 4
    assert sorted(p.name for p in (real / "_delta_log").glob("*.json")) == [
        "00000000000000000000.json",
        "00000000000000000001.json",
    ]


def test_what_a_session_writes_is_owner_only_from_its_creation(spark, tmp_path):
    """Hadoop's umask 077 (strm-spark's sessions): Delta and Parquet files are 0600 in 0700
    folders as they are written, before any run seals them, so a crash leaves nothing
    readable to others (#33)."""
    assert spark.conf.get("spark.hadoop.fs.permissions.umask-mode") == "077"
    spark.range(50).repartition(2).write.format("delta").save(str(tmp_path / "d"))
    spark.range(50).write.parquet(str(tmp_path / "p"))
    modes = {**_modes(tmp_path / "d"), **{f"p/{k}": v for k, v in _modes(tmp_path / "p").items()}}
    files = {
        k: v
        for k, v in modes.items()
        if os.path.isfile(tmp_path / ("" if k.startswith("p/") else "d") / k)
    }
    dirs = {k: v for k, v in modes.items() if k not in files}
    assert files and set(files.values()) == {0o600}, files
    assert dirs and set(dirs.values()) == {0o700}, dirs
