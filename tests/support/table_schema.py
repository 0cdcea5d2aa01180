"""A small validator of CSV files against a Frictionless table schema (the subset the
*lieux de médiation numérique* standard uses: required, unique, pattern, maxLength, types
string, number and date), written from the Table Schema specification."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date
from pathlib import Path
from typing import Any


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def validate_csv(schema: dict[str, Any], content: str) -> list[str]:
    """Every problem found, as « row N, field F: … » (an empty list when the file is valid)."""
    problems: list[str] = []
    reader = csv.DictReader(io.StringIO(content))
    fields = schema["fields"]
    names = [f["name"] for f in fields]
    if reader.fieldnames != names:
        problems.append(f"header {reader.fieldnames} is not the schema's {names}")
        return problems
    seen: dict[str, set[str]] = {}
    for n, row in enumerate(reader, start=2):
        for f in fields:
            name = f["name"]
            value = row.get(name) or ""
            constraints = f.get("constraints", {})
            if value == "":
                if constraints.get("required"):
                    problems.append(f"row {n}, field {name}: required")
                continue
            if f.get("type") == "number":
                try:
                    float(value)
                except ValueError:
                    problems.append(f"row {n}, field {name}: not a number ({value!r})")
            if f.get("type") == "date":
                try:
                    date.fromisoformat(value)
                except ValueError:
                    problems.append(f"row {n}, field {name}: not a date ({value!r})")
            pattern = constraints.get("pattern")
            # Table Schema patterns match the whole value (XML Schema regular expressions).
            if pattern and not re.fullmatch(pattern, value):
                problems.append(f"row {n}, field {name}: {value!r} does not match {pattern}")
            if "maxLength" in constraints and len(value) > constraints["maxLength"]:
                problems.append(f"row {n}, field {name}: longer than {constraints['maxLength']}")
            if constraints.get("unique"):
                bucket = seen.setdefault(name, set())
                if value in bucket:
                    problems.append(f"row {n}, field {name}: {value!r} is not unique")
                bucket.add(value)
    return problems
