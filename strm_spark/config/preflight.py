"""Checks of a job config that a run would otherwise fail on after Spark started or tables
were created: `strm-spark validate` runs them without Spark, and `run_job` before it writes
anything. Every error names the file and field, never a value; the CLI exits with 2.

- the masking seed (env var set, file present and not empty);
- a local source path that exists;
- no output equal to the source, or inside it (the next run would read it as input);
- validation regexes with Java's semantics, since they run in Spark's `rlike`: `(?P<x>...)`
  fails, `\\p{IsHex}` passes. Without Spark the check runs in a `java` subprocess (about a
  second); with a session, as one `rlike` per pattern on it.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from strm_spark.config.model import JobConfig
from strm_spark.errors import ConfigError, SecretError

_GLOB = set("*?[{")

_JAVA_CHECK = """
import java.io.*; import java.nio.charset.StandardCharsets; import java.util.regex.*;
public class RegexCheck { public static void main(String[] a) throws Exception {
  BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
  String line; int i = 0;
  while ((line = in.readLine()) != null) {
    try { Pattern.compile(line); } catch (PatternSyntaxException e) {
      System.out.println(i + "\\t" + e.getDescription() + " at index " + e.getIndex()); }
    i++; } } }
"""


log = logging.getLogger("strm_spark")


def check_job(config: JobConfig, *, java_regexes: bool = True, strict: bool = False) -> None:
    """Everything that can be checked without Spark (`java_regexes`: also the regexes, in a
    `java` subprocess): the seed, a master key file, secret files' modes (`strict`: refused
    when others can read them, else a warning), the source and outputs."""
    if config.masking_seed is not None:
        config.masking_seed.resolve()  # a missing or empty seed fails here, naming the field
    if config.master_key is not None and config.master_key.keyset_file:
        from strm_spark.crypto.envelope import load_master_key

        load_master_key(config.master_key)  # missing, unreadable or not a keyset: named
    for field, path in _secret_files(config):
        check_secret_mode(path, field, strict)
    _check_source(config)
    if java_regexes:
        _check_regexes_in_java(config)


def _secret_files(config: JobConfig) -> list[tuple[str, str]]:
    files = []
    if config.masking_seed is not None and config.masking_seed.file:
        files.append((config.masking_seed.config_field, config.masking_seed.file))
    if config.master_key is not None and config.master_key.keyset_file:
        files.append((config.master_key.config_field, config.master_key.keyset_file))
    if config.master_key is not None and config.master_key.credentials_file:
        files.append(("keys.master_key.credentials_file", config.master_key.credentials_file))
    return files


def check_secret_mode(path: str | Path, field: str, strict: bool) -> None:
    """A secret file others can read or write (group or other bits set), as ssh judges its
    keys: a warning, or with `strict` an error; both name the field, never the secret."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return  # a missing file is the reader's error, with its own message
    if not mode & 0o077:
        return
    what = (
        f"the secret file that {field} names is open to others (mode {mode:04o}); "
        "make it owner-only (chmod 600)"
    )
    if strict:
        raise SecretError(what + " (--strict refuses it)")
    log.warning("%s", what)


def check_on_session(spark: SparkSession, config: JobConfig) -> None:
    """The regexes on the session's own JVM (also over Spark Connect): one `rlike` each."""
    for i, v in enumerate(config.contract.validations):
        try:
            spark.range(1).select(F.lit("").rlike(v.pattern)).collect()
        except Exception as exc:
            condition = getattr(exc, "getCondition", lambda: None)() or ""
            if not (
                condition.startswith("INVALID_PARAMETER_VALUE")
                or "PatternSyntax" in str(exc)[:2000]
            ):
                raise
            raise _regex_error(config, i, "not a valid Java regular expression") from None


def _regex_error(config: JobConfig, index: int, why: str) -> ConfigError:
    return ConfigError(
        config.contract.source,
        f"validations[{index}].value",
        f"{why}; validations run in Spark's rlike, with Java's regex syntax "
        "(named groups are (?<name>...), not (?P<name>...))",
    )


def _check_regexes_in_java(config: JobConfig) -> None:
    patterns = [v.pattern for v in config.contract.validations]
    if not patterns:
        return
    home = os.environ.get("JAVA_HOME")
    java = (
        str(Path(home, "bin", "java"))
        if home and Path(home, "bin", "java").exists()
        else shutil.which("java")
    )
    if java is None:
        return  # no Java here: the run checks the regexes on its session before writing
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "RegexCheck.java")
        source.write_text(_JAVA_CHECK, encoding="utf-8")
        done = subprocess.run(
            [java, str(source)],
            input="\n".join(patterns) + "\n",
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=120,
            check=False,
        )
    if done.returncode != 0:
        return  # the checker itself failed (an old Java): the run still checks on its session
    for line in done.stdout.splitlines():
        index, _, why = line.partition("\t")
        raise _regex_error(config, int(index), f"not a valid Java regular expression: {why}")


def _check_source(config: JobConfig) -> None:
    where = config.config_path or "job config"
    source = config.source.path.file_path
    if source is None or _GLOB & set(str(source)):
        return
    if not source.exists():
        raise ConfigError(where, "source.path", "the source does not exist (a local path)")
    src = source.resolve()
    outputs = {
        "outputs.encrypted": config.encrypted.path,
        "outputs.rejected": config.rejected.path,
        "outputs.data_subjects": config.data_subjects.path,
        "keys.store": config.key_store,
        **{f"outputs.derived {d.name}": d.path for d in config.derived},
    }
    for name, location in outputs.items():
        out = location.file_path
        if out is None:
            continue
        out = out.resolve()
        if out == src or src in out.parents:
            raise ConfigError(
                where,
                name,
                "is the source folder or inside it: the job would read its own "
                "output as input; choose a folder outside the source",
            )
