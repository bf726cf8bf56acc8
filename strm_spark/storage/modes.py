"""Owner-only files on local file systems.

What strm-spark writes holds keys (the key store, `keys.csv`), secrets (`hash_keys`,
`audit_keys`), plaintext PII (derived tables, exports) or subject ids (data subjects). On a
local file system these are made owner-only: folders 0700, files 0600. strm-spark's own
sessions write them so from their creation (Hadoop's umask 077, `strm_spark.session`); a
session someone else started may not, so the modes are also set here: before a table is first
written, its folder is created 0700 (which already keeps other users out), and after a run
every file is made 0600. Folders are created just before their first write, so
input errors found earlier leave nothing behind. Paths on object storage (`s3a://`,
`abfss://`, `gs://`, `dbfs:/`) and volumes are left alone: there the bucket's or catalog's
grants protect them (docs/security.md). Only the storage layer calls this module: a named
table's folder is found by `storage.tables` and passed here as a path.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from strm_spark.storage.location import Location, file_path

FILE_MODE, DIR_MODE = 0o600, 0o700


def local_path(location: str) -> Path | None:
    """The local folder or file whose modes this process sets: a path Location's `local` (not
    a volume: its grants protect it), or a plain string's `file_path`."""
    return location.local if isinstance(location, Location) else file_path(location)


def prepare(locations: Iterable[str], create: bool = True) -> None:
    """Make each local output folder 0700 before anything is written into it: created so
    (`create`), or an existing one changed. A one-file output (STRM's CSV) is left to `seal`."""
    for location in locations:
        path = local_path(location)
        if path is None or path.suffix.lower() == ".csv" or path.is_file():
            continue
        if create:
            _make_dirs(path)
        if path.is_dir():
            _chmod(path, DIR_MODE)


def seal(locations: Iterable[str]) -> int:
    """Make every local file under `locations` 0600 and every folder 0700; returns how many
    modes were changed. Only modes are read: no file is opened."""
    changed = 0
    for location in locations:
        path = local_path(location)
        if path is None or not path.exists():
            continue
        if path.is_file():
            changed += _chmod(path, FILE_MODE)
            continue
        changed += _chmod(path, DIR_MODE)
        for root, dirs, files in os.walk(path):
            for name in dirs:
                changed += _chmod(Path(root, name), DIR_MODE)
            for name in files:
                changed += _chmod(Path(root, name), FILE_MODE)
    return changed


def _make_dirs(path: Path) -> None:
    """`path` and its missing parents, each created 0700 (`mkdir`'s mode leaves out parents)."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        _chmod(folder, DIR_MODE)


def _chmod(path: Path, mode: int) -> int:
    try:
        if stat.S_IMODE(path.lstat().st_mode) == mode or path.is_symlink():
            return 0
        path.chmod(mode)
        return 1
    except FileNotFoundError:  # removed meanwhile (a VACUUM, a temporary file)
        return 0
