"""The package's layout rules (docs/development.md, "Layout"): which package may import which, one docstring
per package, and modules and functions of a size a reader takes in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "strm_spark"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80

# What each package may import of strm_spark, besides itself and the basics every layer uses.
BASICS = {"errors", "config", "contract", "document", "columns", "session", "_pandas", "jvm"}
ALLOWED = {
    "consent": set(),
    "timestamps": set(),
    "crypto": set(),
    "keys": {"crypto", "storage"},
    "storage": set(),
    "pipeline": {"consent", "timestamps", "crypto", "keys", "storage"},
    "subjects": {"crypto", "keys", "storage"},
    "sql": {"crypto", "keys", "storage", "consent"},
    "compat": {"crypto", "keys", "storage"},
}
# Storage questions (where a table lives, reading and writing it, owner-only file modes) are
# answered by the storage layer only: these calls appear nowhere else.
STORAGE_CALLS = {"load", "save", "saveAsTable", "insertInto", "table", "chmod", "sql_path"}
# Secret files the CLI makes (`new-secret`, `new-master-key`), not tables: 0600 where written.
SECRET_FILES = {"crypto/envelope.py", "crypto/masking.py"}
# Sinks other packages register with the storage layer (`storage.sinks.register`): they write.
REGISTERED_SINKS = {"compat/strm/outputs.py"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "jars" not in p.parts)


def _imports(path: Path) -> set[str]:
    """strm_spark modules `path` imports, as dotted names below strm_spark ('pipeline.read')."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "strm_spark":
                out |= {a.name for a in node.names}
            elif node.module.startswith("strm_spark."):
                base = node.module.removeprefix("strm_spark.")
                out |= {f"{base}.{a.name}" for a in node.names} | {base}
        elif isinstance(node, ast.Import):
            out |= {
                a.name.removeprefix("strm_spark.")
                for a in node.names
                if a.name.startswith("strm_spark.")
            }
    return out


def _package(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _allowed(package: str, imported: str) -> bool:
    top = imported.split(".")[0]
    if top == package or top in BASICS:
        return True
    return any(
        imported == a or imported.startswith(a + ".") or a.startswith(imported + ".") or top == a
        for a in ALLOWED[package]
    )


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_the_layers_below_it(package):
    wrong = {
        f"{path.relative_to(PACKAGE)} imports strm_spark.{name}"
        for path in _modules()
        if _package(path) == package
        for name in _imports(path)
        if not _allowed(package, name)
        # `from strm_spark.pipeline import columns` names the package too
        and name not in ("pipeline", "crypto", "storage", "keys", "contract", "config")
    }
    assert not wrong, sorted(wrong)


def test_nothing_but_the_cli_imports_subjects_or_sql():
    wrong = [
        f"{path.relative_to(PACKAGE)} imports strm_spark.{name}"
        for path in _modules()
        if _package(path) not in ("cli", "subjects", "sql")
        for name in _imports(path)
        if name.split(".")[0] in ("subjects", "sql")
    ]
    assert not wrong


def test_every_package_says_what_it_owns_and_modules_stay_readable():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc) > 20, f"{init.relative_to(PACKAGE)} has no docstring"
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in _modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def test_functions_stay_readable():
    long = {
        f"{p.relative_to(PACKAGE)}:{node.name}": node.end_lineno - node.lineno + 1
        for p in _modules()
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    }
    assert not long, long


def test_the_rules_catch_what_they_forbid(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from strm_spark.subjects import forget\nfrom strm_spark.pipeline import read\n")
    assert _imports(bad) == {"subjects", "subjects.forget", "pipeline", "pipeline.read"}
    assert not _allowed("subjects", "pipeline.read")
    assert _allowed("subjects", "columns")
    assert not _allowed("crypto", "pipeline.columns")
    assert not _allowed("pipeline", "subjects.erasure")


def _calls(path: Path) -> set[str]:
    """Names of the functions and methods `path` calls (`x.load(...)` -> 'load'), but
    `yaml.load`."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute):
            if not (isinstance(func.value, ast.Name) and func.value.id == "yaml"):
                out.add(func.attr)
        elif isinstance(func, ast.Name):
            out.add(func.id)
    return out


def test_contract_never_imports_config_and_crypto_never_the_pipeline():
    wrong = [
        f"{path.relative_to(PACKAGE)} imports strm_spark.{name}"
        for path in _modules()
        for name in _imports(path)
        if (_package(path), name.split(".")[0]) in {("contract", "config"), ("crypto", "pipeline")}
    ]
    assert not wrong


def test_storage_is_asked_only_through_its_layer():
    """No module outside `storage` sets file modes, reads or writes a table or folder itself,
    or imports the modes module; `storage.location` is parsed by the config only (when it
    loads); and the storage layer imports no config, so the two make no cycle."""
    wrong = set()
    for path in _modules():
        package, imports = _package(path), _imports(path)
        rel = str(path.relative_to(PACKAGE))
        if package == "storage" or rel in REGISTERED_SINKS:
            wrong |= {f"{rel} imports {n}" for n in imports if n.split(".")[0] == "config"}
            continue
        calls = _calls(path) - ({"chmod"} if rel in SECRET_FILES else set())
        wrong |= {f"{rel} calls {c}" for c in calls & STORAGE_CALLS}
        wrong |= {f"{rel} imports {n}" for n in imports if n.startswith("storage.modes")}
        if package not in ("config",) and rel != "compat/strm/config.py":
            wrong |= {f"{rel} imports {n}" for n in imports if n.startswith("storage.location")}
    assert not wrong, sorted(wrong)


def test_the_storage_rule_catches_a_stage_that_writes_a_path(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(df, p):\n    df.write.format('delta').save(p)\n    yaml.load(p)\n")
    assert _calls(bad) & STORAGE_CALLS == {"save"}
