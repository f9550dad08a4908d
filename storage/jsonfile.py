"""Reading JSON files with an error that names the file and the fix (json's own message names neither)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from storage.errors import CorruptFileError, MissingFileError


def read_json(path: str | Path, what: str = "a JSON file", fix: str = "re-create it") -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MissingFileError(path, f"{what} not found", fix) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptFileError(path, f"{what} cannot be read ({exc})", fix) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptFileError(path, f"{what} is not valid JSON ({exc.msg} at line {exc.lineno})", fix) from None
