"""Small helpers to read untyped YAML/JSON into typed models with precise error paths."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from strm_spark.errors import ConfigError

_MISSING = object()

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    bool: "true or false",
    list: "a list",
    dict: "a mapping",
    float: "a number",
}


def _describe(value: Any) -> str:
    # Describe the *type* of a bad value only: config values can be secrets or data.
    if value is None:
        return "nothing (null)"
    return f"a {type(value).__name__}"


class Node:
    """A value in a config document together with its source file and field path."""

    def __init__(self, source: str, value: Any, path: str = "") -> None:
        self.source = source
        self.value = value
        self.path = path

    def error(self, message: str) -> ConfigError:
        return ConfigError(self.source, self.path or "(top level)", message)

    def _child_path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def mapping(self, allowed: Iterable[str] | None = None) -> Mapping[str, Any]:
        if not isinstance(self.value, Mapping):
            raise self.error(f"expected a mapping, got {_describe(self.value)}")
        if allowed is not None:
            allowed = set(allowed)
            for key in self.value:
                if key not in allowed:
                    raise ConfigError(
                        self.source,
                        self._child_path(str(key)),
                        f"unknown field; expected one of: {', '.join(sorted(allowed))}",
                    )
        return self.value

    def snake_keys(self, names: Iterable[str]) -> Node:
        """This mapping with the lowerCamelCase spellings of `names` (STRM's JSON) renamed to
        them; error paths keep the user's spelling, and both spellings at once is an error."""
        names = set(names)
        data = dict(self.mapping())
        spelled: dict[str, str] = {}
        for key in list(data):
            snake = snake_case(str(key))
            if snake != key and snake in names:
                if snake in data:
                    raise ConfigError(
                        self.source, self._child_path(str(key)), f"given twice (also as {snake})"
                    )
                data[snake] = data.pop(key)
                spelled[snake] = str(key)
        return _SpelledNode(self.source, data, self.path, spelled)

    def has(self, key: str) -> bool:
        return isinstance(self.value, Mapping) and self.value.get(key) is not None

    def child(self, key: str, default: Any = _MISSING) -> Node:
        data = self.mapping()
        if key not in data or data[key] is None:
            if default is _MISSING:
                raise ConfigError(self.source, self._child_path(key), "required field is missing")
            return Node(self.source, default, self._child_path(key))
        return Node(self.source, data[key], self._child_path(key))

    def items(self) -> list[Node]:
        if not isinstance(self.value, list):
            raise self.error(f"expected a list, got {_describe(self.value)}")
        return [Node(self.source, v, self._child_path(i)) for i, v in enumerate(self.value)]

    def entries(self) -> list[tuple[str, Node]]:
        data = self.mapping()
        return [(str(k), Node(self.source, v, self._child_path(str(k)))) for k, v in data.items()]

    def as_type(self, kind: type, what: str | None = None) -> Any:
        value = self.value
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise self.error(f"expected {what or _TYPE_NAMES[kind]}, got {_describe(value)}")
        return value

    def string(self, non_empty: bool = True) -> str:
        value = self.as_type(str)
        if non_empty and not value.strip():
            raise self.error("expected a non-empty string")
        return value

    def integer(self, minimum: int | None = None) -> int:
        value = self.as_type(int)
        if minimum is not None and value < minimum:
            raise self.error(f"expected an integer >= {minimum}, got {value}")
        return value

    def boolean(self) -> bool:
        return self.as_type(bool)

    def choice(self, options: Iterable[str]) -> str:
        options = list(options)
        value = self.string()
        normalized = value.strip().lower()
        for option in options:
            if option.lower() == normalized:
                return option
        raise self.error(f"expected one of {', '.join(options)}, got {value!r}")

    def levels(self) -> tuple[int, ...]:
        """A list of consent/purpose levels: integers >= 0, no duplicates."""
        out: list[int] = []
        for item in self.items():
            level = item.as_type(int, "an integer purpose level >= 0")
            if level < 0:
                raise item.error(f"expected an integer purpose level >= 0, got {level}")
            if level in out:
                raise item.error(f"duplicate purpose level {level}")
            out.append(level)
        return tuple(out)


class _DuplicateKey(Exception):
    def __init__(self, key: str, where: str) -> None:
        super().__init__(key)
        self.key, self.where = key, where


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error, not "last one
    wins" (a second `pii_fields` or `seed_file` would silently replace the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise _DuplicateKey(key, f"line {key_node.start_mark.line + 1}")
            seen.add(key)
        return super().construct_mapping(node, deep)


def _unique_json_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key, "(a JSON object)")
        out[key] = value
    return out


def read_document(path: str | Path) -> Any:
    """Read a YAML or JSON file; errors name the file, never its content."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot read file ({type(exc).__name__})") from None
    try:
        if p.suffix.lower() == ".json":
            return json.loads(text, object_pairs_hook=_unique_json_keys)
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except _DuplicateKey as exc:
        raise ConfigError(
            str(path), exc.where, f"duplicate key {exc.key!r}; each key may appear once"
        ) from None
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        line = getattr(exc, "lineno", None)
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            line = mark.line + 1
        where = f" near line {line}" if line else ""
        raise ConfigError(
            str(path), "", f"not valid {p.suffix.lstrip('.').upper() or 'YAML'}{where}"
        ) from None


class _SpelledNode(Node):
    """A mapping whose keys were renamed: error paths use the names as the user spelled them."""

    def __init__(self, source: str, value: Any, path: str, spelled: dict[str, str]) -> None:
        super().__init__(source, value, path)
        self.spelled = spelled

    def _child_path(self, key: str | int) -> str:
        return super()._child_path(self.spelled.get(key, key) if isinstance(key, str) else key)


_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake_case(key: str) -> str:
    """lowerCamelCase -> snake_case (STRM's JSON spelling -> strm-spark's); snake_case stays."""
    return _CAMEL.sub(r"_\1", key).lower()
