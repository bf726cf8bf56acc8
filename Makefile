# strm-spark: `make run` and `make test` do all the set-up themselves.
PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
M2          := $(HOME)/.m2/repository
# Delta's JVM jars. pip's delta-spark 4.4.1 has no 4.4.1 jars on Maven Central; 4.4.0 is the
# newest Delta release built for Spark 4.2 there (see docs/development.md, "Versions").
DELTA_JAR_VERSION := 4.4.0
DELTA_JARS  := $(M2)/io/delta/delta-spark_4.2_2.13/$(DELTA_JAR_VERSION)/delta-spark_4.2_2.13-$(DELTA_JAR_VERSION).jar \
               $(M2)/io/delta/delta-storage/$(DELTA_JAR_VERSION)/delta-storage-$(DELTA_JAR_VERSION).jar
# S3A (s3a://) for pyspark's bundled Hadoop 3.5.0: hadoop-aws and the two compile dependencies
# in its pom. The AWS SDK v2 bundle is ~690 MB. strm_spark.session puts them on local sessions'
# class path when present.
HADOOP_VERSION := 3.5.0
AWS_SDK_VERSION := 2.35.4
S3_ANALYTICS_VERSION := 1.3.1
S3A_JARS    := $(M2)/org/apache/hadoop/hadoop-aws/$(HADOOP_VERSION)/hadoop-aws-$(HADOOP_VERSION).jar \
               $(M2)/software/amazon/awssdk/bundle/$(AWS_SDK_VERSION)/bundle-$(AWS_SDK_VERSION).jar \
               $(M2)/software/amazon/s3/analyticsaccelerator/analyticsaccelerator-s3/$(S3_ANALYTICS_VERSION)/analyticsaccelerator-s3-$(S3_ANALYTICS_VERSION).jar
# Spark's Kafka source (strm_spark.session.KAFKA_PACKAGES), one jar at a time: the connector's
# pom also names a test jar that Maven Central does not serve.
SPARK_VERSION := 4.2.0
KAFKA_JARS  := $(M2)/org/apache/spark/spark-sql-kafka-0-10_2.13/$(SPARK_VERSION)/spark-sql-kafka-0-10_2.13-$(SPARK_VERSION).jar \
               $(M2)/org/apache/spark/spark-token-provider-kafka-0-10_2.13/$(SPARK_VERSION)/spark-token-provider-kafka-0-10_2.13-$(SPARK_VERSION).jar \
               $(M2)/org/apache/kafka/kafka-clients/3.9.2/kafka-clients-3.9.2.jar \
               $(M2)/org/apache/commons/commons-pool2/2.13.1/commons-pool2-2.13.1.jar
# The tests' Kafka broker (tests/kafka_broker.py): Kafka 4.x in KRaft mode, its class path
# resolved from Maven Central by tests/kafka/pom.xml.
KAFKA_BROKER_CP := build/kafka-broker.classpath
DEMO_ROWS   ?= 100000
# strm_encrypt and strm_decrypt in the JVM (optional fast path of the job and the SQL functions):
# the Maven module jvm/ (pom.xml) builds one jar with Tink, protobuf-java and gson bundled and
# relocated under io.strmspark.shaded. Maven fetches them and its plugins into ~/.m2 the first
# time; later builds need no network (MVN="mvn -q -B -o" to make sure).
UDF_JAR     := strm_spark/jars/strm-spark-udf.jar
UDF_SOURCES := jvm/pom.xml $(wildcard jvm/src/main/java/io/strmspark/*.java jvm/src/main/java/io/strmspark/*/*.java)
MVN         ?= mvn -q -B

# The runtime-compatibility venv (tests/e2e/test_runtime_compat.py): Python 3.12 with Spark 4.0's
# pyspark and Delta 4.0, the Spark line of Databricks Runtime 17.3 LTS, and pandas/pyarrow pinned
# below 3 / at 19 as such a runtime has them; the test installs the wheel into it.
COMPAT_VENV   := .venv-spark40
COMPAT_PYTHON ?= $(shell for p in $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $$(command -v python3.12); do \
                   "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo "$$p"; break; }; done)
COMPAT_PINS   := 'pyspark[connect]==4.0.1' delta-spark==4.0.0 pandas==2.2.3 pyarrow==19.0.1
COMPAT_DELTA  := $(M2)/io/delta/delta-spark_2.13/4.0.0/delta-spark_2.13-4.0.0.jar

export PYSPARK_PYTHON := $(abspath $(BIN)/python)
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN)/python)

.PHONY: setup venv jars udf compat kafka-broker run run-uci lint test test-unit test-spark test-e2e bench clean

setup: venv jars udf

udf: $(UDF_JAR)

$(UDF_JAR): $(UDF_SOURCES)
	@rm -rf build/jvm && mkdir -p build $(dir $@)
	$(MVN) -f jvm/pom.xml package > build/udf.log 2>&1 || { cat build/udf.log; exit 1; }
	cp build/jvm/strm-spark-udf.jar $@

venv: $(VENV)/.installed

# pip checks the Python version against pyproject.toml's requires-python (the one place).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[spark,test,aws]'
	@touch $@

jars: $(DELTA_JARS) $(S3A_JARS) $(KAFKA_JARS)

compat: $(COMPAT_VENV)/.installed $(COMPAT_DELTA)

$(COMPAT_VENV)/.installed: Makefile
	@test -n "$(COMPAT_PYTHON)" || { echo "make compat: no Python 3.12 found (set COMPAT_PYTHON)"; exit 1; }
	rm -rf $(COMPAT_VENV) && $(COMPAT_PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/pip install --quiet --upgrade pip
	$(COMPAT_VENV)/bin/pip install --quiet $(COMPAT_PINS)
	@touch $@

$(COMPAT_DELTA):
	mvn -q dependency:get -Dtransitive=false -Dartifact=io.delta:delta-spark_2.13:4.0.0
	mvn -q dependency:get -Dtransitive=false -Dartifact=io.delta:delta-storage:4.0.0

$(M2)/io/delta/delta-spark_4.2_2.13/$(DELTA_JAR_VERSION)/%.jar:
	mvn -q dependency:get -Dtransitive=false -Dartifact=io.delta:delta-spark_4.2_2.13:$(DELTA_JAR_VERSION)

$(M2)/io/delta/delta-storage/$(DELTA_JAR_VERSION)/%.jar:
	mvn -q dependency:get -Dtransitive=false -Dartifact=io.delta:delta-storage:$(DELTA_JAR_VERSION)

$(M2)/org/apache/spark/spark-sql-kafka-0-10_2.13/$(SPARK_VERSION)/%.jar:
	mvn -q dependency:get -Dtransitive=false -Dartifact=org.apache.spark:spark-sql-kafka-0-10_2.13:$(SPARK_VERSION)

$(M2)/org/apache/spark/spark-token-provider-kafka-0-10_2.13/$(SPARK_VERSION)/%.jar:
	mvn -q dependency:get -Dtransitive=false -Dartifact=org.apache.spark:spark-token-provider-kafka-0-10_2.13:$(SPARK_VERSION)

$(M2)/org/apache/kafka/kafka-clients/3.9.2/%.jar:
	mvn -q dependency:get -Dtransitive=false -Dartifact=org.apache.kafka:kafka-clients:3.9.2

$(M2)/org/apache/commons/commons-pool2/2.13.1/%.jar:
	mvn -q dependency:get -Dtransitive=false -Dartifact=org.apache.commons:commons-pool2:2.13.1

kafka-broker: $(KAFKA_BROKER_CP)

$(KAFKA_BROKER_CP): tests/kafka/pom.xml
	@mkdir -p build
	mvn -q -B -f tests/kafka/pom.xml dependency:build-classpath -Dmdep.outputFile=$(abspath $@) > build/kafka-broker.log 2>&1 || { cat build/kafka-broker.log; exit 1; }

$(M2)/org/apache/hadoop/hadoop-aws/$(HADOOP_VERSION)/%.jar:
	mvn -q dependency:get -Dtransitive=false -Dartifact=org.apache.hadoop:hadoop-aws:$(HADOOP_VERSION)

$(M2)/software/amazon/awssdk/bundle/$(AWS_SDK_VERSION)/%.jar:
	mvn -q dependency:get -Dtransitive=false -Dartifact=software.amazon.awssdk:bundle:$(AWS_SDK_VERSION)

$(M2)/software/amazon/s3/analyticsaccelerator/analyticsaccelerator-s3/$(S3_ANALYTICS_VERSION)/%.jar:
	mvn -q dependency:get -Dtransitive=false -Dartifact=software.amazon.s3.analyticsaccelerator:analyticsaccelerator-s3:$(S3_ANALYTICS_VERSION)

out/demo/input/clickstream.csv: | venv
	$(BIN)/python -m demo.generate --rows $(DEMO_ROWS) --out $@

out/demo/secrets/mask-seed: | venv
	$(BIN)/strm-spark new-secret $@

run: setup out/demo/input/clickstream.csv out/demo/secrets/mask-seed
	$(BIN)/strm-spark run conf/demo.yaml

run-uci: setup out/demo/secrets/mask-seed
	$(BIN)/strm-spark run conf/online_retail.yaml

# ruff: lint and format (pyproject.toml's [tool.ruff]); `ruff format strm_spark tests bench` fixes
# the format, `ruff check --fix` most lint.
LINTED := strm_spark tests bench

lint: venv
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

# The tiers (tests/conftest.py): unit needs only the venv and no JVM; test runs all three after
# lint, in TEST_WORKERS pytest-xdist workers that each take whole files (a module's fixtures
# and its shared job outputs stay in one worker). On 2 cores two workers took 670-710 s against
# about 835 s for the tiers one after another in one process; three workers were slower.
TEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: lint setup compat kafka-broker
	STRM_SPARK_COMPAT_VENV=$(abspath $(COMPAT_VENV)) $(BIN)/python -m pytest -q --durations=30 $(PYTEST_PARALLEL) tests/unit tests/spark tests/e2e

test-unit: venv
	$(BIN)/python -m pytest -q tests/unit

test-spark: setup
	$(BIN)/python -m pytest -q $(PYTEST_PARALLEL) tests/spark

test-e2e: setup compat kafka-broker
	STRM_SPARK_COMPAT_VENV=$(abspath $(COMPAT_VENV)) $(BIN)/python -m pytest -q $(PYTEST_PARALLEL) tests/e2e

bench: setup
	@$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/run.py

clean:
	rm -rf out build $(UDF_JAR) $(COMPAT_VENV)
