"""A real Kafka broker for the tests: Kafka 4.x in KRaft mode (one node, broker and controller),
from Maven Central's jars (`make kafka-broker` resolves its class path), bound to 127.0.0.1."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLASSPATH = ROOT / "build" / "kafka-broker.classpath"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def classpath() -> str:
    """The broker's class path, resolved by Maven on first use (`make kafka-broker`)."""
    if not CLASSPATH.is_file():
        subprocess.run(["make", "-s", "kafka-broker"], cwd=ROOT, check=True)
    return CLASSPATH.read_text().strip()


class KafkaBroker:
    """Start with `start()`, stop with `stop()`; `restart()` keeps its data and ports."""

    def __init__(self, work: Path, partitions: int = 2) -> None:
        self.work = work
        self.port, self.controller = _free_port(), _free_port()
        self.logs = work / "data"
        self.partitions = partitions
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _properties(self) -> Path:
        props = self.work / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.logs}",
                    f"num.partitions={self.partitions}",
                    "offsets.topic.replication.factor=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                    "",
                ]
            )
        )
        return props

    def _java(self, *args: str, **kw) -> list[str]:
        java = shutil.which("java") or "java"
        return [java, "-Xmx512m", "-cp", classpath(), *args]

    def start(self, timeout: float = 90) -> KafkaBroker:
        self.work.mkdir(parents=True, exist_ok=True)
        props = self._properties()
        if not self.logs.exists():
            subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
                    "-c",
                    str(props),
                ),
                check=True,
                capture_output=True,
                timeout=120,
            )
        log = open(self.work / "broker.log", "ab")  # open while the broker runs
        self.proc = subprocess.Popen(
            self._java("kafka.Kafka", str(props)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KAFKA_HEAP_OPTS": "-Xmx512m"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Kafka broker exited; see {self.work / 'broker.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    time.sleep(1)  # the listener opens before the broker joins its controller
                    return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Kafka broker did not start in {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def produce(spark, bootstrap: str, topic: str, values: list[str | None]) -> None:
    """Write `values` to `topic` with Spark's Kafka sink (a real producer), in order."""
    df = spark.createDataFrame([(v,) for v in values], "value string")
    (
        df.coalesce(1)
        .write.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("topic", topic)
        .save()
    )
