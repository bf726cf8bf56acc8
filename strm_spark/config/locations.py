"""Locations in a config: local paths resolved against the config's folder, URIs kept, and the
check that no two outputs (or an output and the source) overlap."""

from __future__ import annotations

import os
import re
from pathlib import Path

from strm_spark.errors import ConfigError

_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://")


def is_uri(path: str) -> bool:
    return bool(_URI.match(path))


def resolve_location(path: str, base_dir: Path) -> str:
    """Cloud URIs stay as they are; local paths are made absolute, relative to the config file."""
    if is_uri(path):
        return path.rstrip("/")
    if path.startswith("file:"):
        path = path[len("file:") :]
    return os.path.normpath(str((base_dir / os.path.expanduser(path)).resolve()))


def _contains(outer: str, inner: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def check_locations(
    source: str, outputs: list[tuple[str, str]], key_store: tuple[str, str], source_path: str
) -> None:
    """Each output owns its location, and the key store lives apart from data and source.

    `outputs` and `key_store` are (config field path, location) pairs."""
    ks_field, ks = key_store
    for i, (path_a, loc_a) in enumerate(outputs):
        for path_b, loc_b in outputs[i + 1 :]:
            if _contains(loc_a, loc_b) or _contains(loc_b, loc_a):
                raise ConfigError(
                    source,
                    path_b,
                    f"same or nested location as {path_a}: each output needs its own location",
                )
        if _contains(loc_a, ks) or _contains(ks, loc_a):
            raise ConfigError(
                source,
                ks_field,
                f"the key store must be kept apart from the data outputs; it overlaps {path_a}",
            )
    if _contains(source_path, ks):
        raise ConfigError(source, ks_field, "the key store must not be inside the source location")
