"""Bench parts beyond the floor/job ratios: the encryption stage alone, and peak memory."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def encryption_stage(spark, rows: int, work: Path, repeats: int = 3) -> dict:
    """Rows/s of the encryption stage alone on the generated webshop data with 5 PII fields
    (the demo contract's 4 plus session_id): the same cached rows and key links written to
    Spark's no-op sink without encryption, with the Arrow encryption UDFs (keysets broadcast
    by key link), and, when the UDF jar is loaded, with the JVM function (keysets by row)."""
    from pyspark.sql import functions as F

    from demo.generate import generate
    from strm_spark import columns as cols
    from strm_spark.crypto import cells as crypto
    from strm_spark.crypto import engines
    from strm_spark.crypto.engines import register_jvm

    src = work / f"webshop_{rows}.csv"
    if not src.exists():
        generate(str(src), rows=rows, invalid_fraction=0.0)
    pii = ["customer_id", "ip_address", "email", "phone", "session_id"]
    df = spark.read.option("header", "true").option("escape", '"').csv(str(src))
    # One key per (customer, day), as in the job; keysets broadcast by key link.
    day = F.substring("event_time", 1, 10)
    links = [r[0] for r in df.select(F.concat_ws("|", "customer_id", day)).distinct().collect()]
    table = {link: crypto.new_keyset() for link in links}
    keysets = spark.sparkContext.broadcast(table)
    keyed = spark.createDataFrame(
        list(table.items()), f"{cols.KEY_LINK} string, {cols.KEYSET} binary"
    )
    base = (
        df.select(
            *[F.col(c).alias(cols.pii_column(i)) for i, c in enumerate(pii)],
            F.concat_ws("|", "customer_id", day).alias(cols.KEY_LINK),
        )
        .join(F.broadcast(keyed), cols.KEY_LINK)
        .cache()
    )
    base.count()
    targets = {cols.pii_column(i): cols.enc_column(i) for i in range(len(pii))}
    encrypted = engines.with_encrypted_columns(base, targets, cols.KEY_LINK, keysets)
    variants = {"python": encrypted}
    if register_jvm(spark):
        variants["jvm"] = engines.with_encrypted_columns(base, targets, cols.KEYSET, engine="jvm")

    def timed(frame) -> float:
        start = time.perf_counter()
        frame.write.format("noop").mode("overwrite").save()
        return time.perf_counter() - start

    for frame in variants.values():
        timed(frame)  # warm the Python workers and the JIT
    plain = statistics.median([timed(base) for _ in range(repeats)])
    result = {
        "rows": rows,
        "pii_fields": len(pii),
        "keys": len(links),
        "without_s": round(plain, 2),
    }
    for name, frame in variants.items():
        enc = statistics.median([timed(frame) for _ in range(repeats)])
        stage = max(enc - plain, 1e-6)
        suffix = "" if name == "python" else "_jvm"
        result.update(
            {
                f"with_encryption{suffix}_s": round(enc, 2),
                f"stage_rows_per_s{suffix}": round(rows / stage),
                f"cells_per_s{suffix}": round(rows * len(pii) / stage),
            }
        )
    base.unpersist()
    keysets.destroy()
    return result


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


class MemorySampler:
    """Samples the RSS of a process tree every 0.2 s: peaks of the driver JVM, the driver's
    Python process and the Python workers (largest one, and all together)."""

    def __init__(self, root_pid: int) -> None:
        self.root = root_pid
        self.peaks = {
            "driver_python_mb": 0.0,
            "driver_jvm_mb": 0.0,
            "largest_worker_mb": 0.0,
            "all_workers_mb": 0.0,
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            tree, todo = [], [self.root]
            while todo:
                pid = todo.pop()
                tree.append(pid)
                todo += _children(pid)
            workers = 0.0
            for pid in tree:
                rss, cmd = _rss_mb(pid), _cmdline(pid)
                if pid == self.root:
                    key = "driver_python_mb"
                elif "java" in cmd.split(" ")[0]:
                    key = "driver_jvm_mb"
                else:
                    workers += rss
                    key = "largest_worker_mb"
                self.peaks[key] = max(self.peaks[key], rss)
            self.peaks["all_workers_mb"] = max(self.peaks["all_workers_mb"], workers)
            self._stop.wait(0.2)

    def result(self) -> dict:
        return {k: round(v) for k, v in self.peaks.items()}


def process_tree_peaks(proc) -> dict:
    with MemorySampler(proc.pid) as sampler:
        proc.wait()
    return sampler.result()
