"""Small synthetic data for the data subjects tests: distinctive ids and PII values, so that a
byte scan of the outputs finds them only where they really are."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from strm_spark.config.load import parse_job_config
from strm_spark.config.model import JobConfig

FORGET = "forget.me.7731@example.org"
FORGET_NAME = "Zebulon Forgettable-Quixote"
FORGET_NOTE = "fgt-marker-5521"
KEEP = "keep.me.4410@example.org"
KEEP_NAME = "Keeper Stayingpower"
OTHERS = [f"user{i:02d}.x9@example.org" for i in range(8)]
HEADER = ["event_id", "email", "name", "note", "amount", "ts"]
RETENTION_DAYS = 30

FORGET_DAYS = [date(2024, 1, 3), date(2024, 1, 5), date(2024, 1, 9), date(2024, 1, 12)]
KEEP_DAYS = [date(2024, 1, 3), date(2024, 1, 4), date(2024, 1, 12)]
ALL_DAYS = [date(2024, 1, d) for d in range(2, 15)]

CONTRACT: dict[str, Any] = {
    "schema": {
        "name": "subjects test",
        "nodes": [
            {"name": "event_id", "type": "STRING", "required": True},
            {"name": "email", "type": "STRING"},
            {"name": "name", "type": "STRING"},
            {"name": "note", "type": "STRING"},
            {"name": "amount", "type": "INTEGER"},
            {"name": "ts", "type": "STRING"},
        ],
    },
    "key_field": "email",
    "pii_fields": {"email": 1, "name": 2},
    "data_subject_field": "email",
}


def rows() -> tuple[list[dict[str, str]], list[str]]:
    """Valid rows (as dicts) and the raw lines of the CSV file (header first)."""
    out: list[dict[str, str]] = []
    n = 0

    def add(email: str, name: str, note: str, day: date, hour: int, amount: str = "1") -> None:
        nonlocal n
        n += 1
        out.append(
            {
                "event_id": f"ev-{n:04d}",
                "email": email,
                "name": name,
                "note": note,
                "amount": amount,
                "ts": f"{day.isoformat()} {hour:02d}:{n % 60:02d}:00",
            }
        )

    for day in FORGET_DAYS:
        for hour in (8, 13, 21):
            add(FORGET, FORGET_NAME, FORGET_NOTE, day, hour, str(hour))
    for day in KEEP_DAYS:
        for hour in (9, 17):
            add(KEEP, KEEP_NAME, "keep-note", day, hour, str(hour * 2))
    for i, email in enumerate(OTHERS):
        for j, day in enumerate(ALL_DAYS[i % 3 :: 3]):
            add(email, f"Other Person {i}", f"note-{i}-{j}", day, 10 + j % 10)
    for day in ALL_DAYS[::4]:
        add("", "", "anonymous", day, 12)  # no subject: one entity of its own
    valid = list(out)
    lines = [",".join(HEADER)] + [",".join(r[h] for h in HEADER) for r in out]
    # Rejected rows of the forgotten subject: a bad amount on a known day (row key, linked), a bad
    # timestamp and a malformed record (both under the run's quarantine key, not linked).
    lines.append(f"ev-bad1,{FORGET},{FORGET_NAME},{FORGET_NOTE},abc,2024-01-05 10:00:00")
    lines.append(f"ev-bad2,{FORGET},{FORGET_NAME},{FORGET_NOTE},3,2024-13-45 99:99:99")
    lines.append(f"ev-bad3,{FORGET},{FORGET_NAME},{FORGET_NOTE},3,2024-01-05 10:00:00,surplus")
    # A keeper's quarantined row, which forget must leave alone.
    lines.append(f"ev-bad4,{KEEP},{KEEP_NAME},keep-note,3,not a time")
    return valid, lines


def job_document(root: Path, master_key: str | None = None) -> dict[str, Any]:
    """A job config with paths relative to `root` (so a copied folder is a new, independent run)."""
    keys: dict[str, Any] = {
        "group_id": "subjects-test",
        "store": "out/keystore",
        "retention_days": RETENTION_DAYS,
    }
    if master_key:
        keys["master_key"] = {"keyset_file": master_key}
    return {
        "name": "subjects_test",
        "contract": json.loads(json.dumps(CONTRACT)),
        "source": {"path": "in.csv", "format": "csv"},
        "consent": {"default_levels": [1, 2]},
        "timestamp": {"field": "ts", "pattern": "yyyy-MM-dd HH:mm:ss", "default_time_zone": "UTC"},
        "keys": keys,
        "outputs": {
            "encrypted": "out/encrypted",
            "data_subjects": "out/data_subjects",
            "rejected": "out/rejected",
            "derived": [
                {
                    "name": "all",
                    "path": "out/derived/all",
                    "consent_type": "CUMULATIVE",
                    "consent_levels": [2],
                },
                {
                    "name": "min",
                    "path": "out/derived/min",
                    "consent_type": "GRANULAR",
                    "consent_levels": [1],
                },
            ],
        },
    }


def write_inputs(root: Path, master_key: str | None = None) -> JobConfig:
    root.mkdir(parents=True, exist_ok=True)
    _, lines = rows()
    (root / "in.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    doc = job_document(root, master_key)
    (root / "job.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return config_at(root)


def config_at(root: Path) -> JobConfig:
    doc = json.loads((root / "job.json").read_text(encoding="utf-8"))
    return parse_job_config(doc, str(root / "job.json"), root)


def clone(src: Path, dst: Path) -> JobConfig:
    """A copy of a finished run (input, config, every output) at `dst`."""
    shutil.copytree(src, dst)
    return config_at(dst)


def expires(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1 + RETENTION_DAYS)


# --- scanning every byte the project wrote ------------------------------------------------------


def _cells(value: Any, out: list[bytes]) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _cells(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _cells(v, out)
    elif isinstance(value, (bytes, bytearray)):
        out.append(bytes(value))
    elif value is not None:
        out.append(str(value).encode("utf-8"))


def file_contents(path: Path) -> bytes:
    """The raw bytes of a file, plus, for Parquet (data files and Delta checkpoints), every
    decompressed cell value."""
    raw = path.read_bytes()
    if path.suffix != ".parquet":
        return raw
    cells: list[bytes] = []
    _cells(pq.read_table(path).to_pylist(), cells)
    return raw + b"\x00" + b"\x00".join(cells)


def scan(
    roots: list[Path], needles: dict[str, bytes], data_files_only: bool = False
) -> tuple[dict[str, list[str]], int]:
    """Which needles occur in which files under `roots`; and how many files were read.
    `data_files_only` skips `_delta_log` (where non-PII columns keep min/max statistics)."""
    found: dict[str, list[str]] = {}
    files = 0
    for root in roots:
        for path in sorted(root.rglob("*")):
            if not path.is_file() or (data_files_only and "_delta_log" in path.parts):
                continue
            files += 1
            data = file_contents(path)
            for name, needle in needles.items():
                if needle in data:
                    found.setdefault(name, []).append(str(path.relative_to(root.parent)))
    return found, files


def key_material(keyset_json: bytes) -> dict[str, bytes]:
    """The parts of a cleartext Tink AES-SIV keyset worth searching for: the keyset itself, the
    base64 key value and the raw 64-byte key."""
    doc = json.loads(keyset_json)
    value = doc["key"][0]["keyData"]["value"]
    raw = base64.b64decode(value)[-64:]
    return {"keyset": keyset_json, "key value (base64)": value.encode("ascii"), "raw key": raw}


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))
