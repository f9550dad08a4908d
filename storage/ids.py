"""Validation of subject/expression identifiers, so that no key can escape its dataset root."""
from __future__ import annotations

import re

from storage.errors import InvalidIdError

_SUBJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_EXPRESSION_RE = re.compile(r"^([1-9][0-9]?)_([a-z][a-z_]*)$")


def validate_subject_id(subject: str) -> str:
    """Return `subject` unchanged if it is a safe folder name (letters, digits, '_' and '-', no dots or slashes)."""
    if not isinstance(subject, str) or not _SUBJECT_RE.match(subject):
        raise InvalidIdError(
            None,
            f"invalid subject id {subject!r}: ids are 1-64 letters, digits, '_' or '-' (no '/', '..' or spaces)",
            "use the folder name of the subject as it appears under the dataset root, e.g. '212' or '0526'",
        )
    return subject


def parse_expression_folder(name: str) -> tuple[int, str]:
    """Split a FaceScape expression folder name such as '6_jaw_right' into (6, 'jaw_right')."""
    m = _EXPRESSION_RE.match(name)
    if not m:
        raise InvalidIdError(
            None,
            f"invalid FaceScape expression name {name!r}: expected '<index>_<name>' like '1_neutral'",
            "rename the folder to the FaceScape convention (see docs/datasets.md)",
        )
    return int(m.group(1)), m.group(2)


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_name(name: str, what: str = "name") -> str:
    """Return `name` if it is safe as one folder name (letters, digits, '.', '_', '-'; no '/', '..' or spaces)."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise InvalidIdError(None, f"invalid {what} {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting "
                                   "with a letter or digit (no '/', '..' or spaces)", "choose a plain name")
    return name
