"""What `strm-spark sql` runs without `--allow-writes`: queries and metadata reads, decided
from the plan Spark itself parsed, never from the statement's text.

`EXPLAIN EXTENDED <statement>` parses without executing. Every node of the parsed plan must be
a query operator or a read-only command (SHOW, DESCRIBE, EXPLAIN): a CREATE ... AS SELECT, an
INSERT hidden in a CTE, a SET or a CACHE TABLE is refused however comments or case disguise it.
A function that reaches outside the query (a static Java method through `reflect`,
`java_method`, `try_reflect`, or any other name the catalog gives the same class) is refused
too. Errors name the node or the function's class, never the statement's text."""

from __future__ import annotations

import re

from pyspark.sql import SparkSession

from strm_spark.errors import ReadOnlyError

# Parsed-plan nodes of queries, and of the commands that only read (metadata, EXPLAIN).
QUERY_NODES = frozenset(
    """Project Filter Aggregate Join Union Distinct Sort GlobalLimit LocalLimit Limit Offset Tail
    SubqueryAlias UnresolvedRelation UnresolvedInlineTable LocalRelation OneRowRelation CTE
    UnresolvedWith WithCTE CTERelationDef CTERelationRef Window WithWindowDefinition Generate
    Expand Sample Deduplicate Intersect Except Pivot Unpivot RepartitionByExpression Repartition
    RebalancePartitions Range UnresolvedTableValuedFunction UnresolvedTVFAliases LateralJoin
    UnresolvedSubqueryColumnAliases UnresolvedHint ResolvedHint UnresolvedHaving
    UnresolvedGenerate Subquery""".split()
)
READ_ONLY_COMMANDS = frozenset(
    """ShowTables ShowTablesExtended ShowNamespaces ShowViews ShowColumns ShowFunctions
    ShowTableProperties ShowCreateTable ShowPartitions ShowCatalogs ShowCurrentNamespace
    DescribeRelation DescribeColumn DescribeFunction DescribeNamespace DescribeQuery
    CurrentNamespace UnresolvedNamespace UnresolvedTableOrView UnresolvedFunctionName
    ExplainCommand""".split()
)
# Expressions that call out of the query: any static Java method.
OUTSIDE_CALLS = frozenset(
    {
        "org.apache.spark.sql.catalyst.expressions.CallMethodViaReflection",
        "org.apache.spark.sql.catalyst.expressions.TryReflect",
    }
)
_ALLOWED = QUERY_NODES | READ_ONLY_COMMANDS
_TREE = re.compile(r"^[\s:|+\-]*'?")
_NODE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CALL = re.compile(r"(?<![\w.])'?([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\(")
_ADVICE = "pass --allow-writes to run statements that write or change anything"


def parsed_plan(spark: SparkSession, statement: str) -> str:
    """Spark's parsed logical plan of `statement` (nothing runs)."""
    plan = spark.sql(f"EXPLAIN EXTENDED {statement}").first()[0]
    return plan.split("== Analyzed Logical Plan ==")[0].replace("== Parsed Logical Plan ==", "")


def plan_nodes(parsed: str) -> list[str]:
    """The node names of a parsed plan, one per line (an EXPLAIN's inner root too)."""
    nodes = []
    for line in parsed.splitlines():
        rest = _TREE.sub("", line, count=1)
        match = _NODE.match(rest)
        if not match:
            continue
        nodes.append(match.group(0))
        if match.group(0) == "ExplainCommand":  # its plan's root follows on the same line
            inner = _NODE.match(_TREE.sub("", rest[match.end() :], count=1))
            if inner:
                nodes.append(inner.group(0))
    return nodes


def check_read_only(spark: SparkSession, statement: str) -> None:
    """Refuse a statement that could write or change anything, or that calls out of the query
    (see the module's docstring); the error never shows the statement's text."""
    parsed = parsed_plan(spark, statement)
    for node in plan_nodes(parsed):
        if node not in _ALLOWED:
            raise ReadOnlyError(
                f"strm-spark sql is read-only: only queries, SHOW, DESCRIBE and EXPLAIN run, and "
                f"this statement's plan holds a {node} node; {_ADVICE}"
            )
    for name in sorted(set(_CALL.findall(parsed))):
        found = _function_class(spark, name)
        if found in OUTSIDE_CALLS:
            raise ReadOnlyError(
                f"strm-spark sql is read-only: a function of class {found.rsplit('.', 1)[1]} "
                f"calls methods outside the query; {_ADVICE}"
            )


def _function_class(spark: SparkSession, name: str) -> str | None:
    """The class the catalog runs for function `name`, None when it has no such function."""
    try:
        if not spark.catalog.functionExists(name):
            return None
        return spark.catalog.getFunction(name).className
    except Exception:  # a name the catalog cannot parse (a plan argument): no function
        return None
