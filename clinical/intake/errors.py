"""IntakeError and the helpers that write its messages: every refusal is read by the person who uploaded
the file, so it says what is wrong and what to do instead, and shows the file's own text safely."""
from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from pathlib import Path, PureWindowsPath

from clinical.errors import ApplicationError

# Characters never shown as such in a message: controls, invisible formatting (bidi overrides), surrogates.
HIDDEN_CATEGORIES = frozenset(["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"])


class IntakeError(ApplicationError, ValueError):
    """An upload that cannot be read as a 12-lead ECG: the application error (code "invalid", a 400 in the API) on
    the upload's field; still a ValueError for the readers' plain-Python callers (training.bench_measure)."""

    def __init__(self, message: str, field: str = "file") -> None:
        super().__init__(message, field)




def join(names: Sequence[str]) -> str:
    """'V4' / 'V4 and V5' / 'V4, V5 and V6'."""
    names = list(names)
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def lead_s(names: Sequence[str]) -> str:
    return f"Lead {names[0]}" if len(names) == 1 else f"Leads {join(names)}"


def shown(text: str, limit: int = 40) -> str:
    """User-supplied text as it may appear in a message: invisible and control characters (a right-to-left
    override would reorder the rest of the sentence on screen; a lone surrogate cannot even be encoded) are
    written as \\uXXXX escapes, and long text is cut."""
    text = str(text)
    out = "".join(f"\\u{ord(ch):04x}" if unicodedata.category(ch) in HIDDEN_CATEGORIES else ch
                  for ch in text[:limit])
    return out + "…" if len(text) > limit else out


def quoted(names: Sequence[str], most: int = 5) -> str:
    """"'a', 'b' and 'c'", or "'a', 'b', 'c', 'd', 'e' and 995 more"."""
    quoted = [f"'{shown(n)}'" for n in names[:most]]
    if len(names) > most:
        return ", ".join(quoted) + f" and {len(names) - most:,} more"
    return join(quoted)


def display_name(name: str) -> str:
    """An uploaded file's name for messages: without any folder a client sent, and safe to show."""
    return shown(basename(name), 80)



def basename(name: str) -> str:
    # Browsers send bare names, but some clients send a Windows or POSIX path.
    return PureWindowsPath(name).name



def json_shown(value: object) -> str:
    text = json.dumps(value, default=str)  # ASCII: non-ASCII characters come out as \u escapes
    return text if len(text) <= 40 else text[:40] + "…"


def extension(name: str) -> str:
    """An uploaded file's extension, lower case and without the dot ('' for none); folders are ignored."""
    return Path(basename(name)).suffix.lower().lstrip(".")
