"""What a refusal must say besides what is wrong: what to do next (issue 13), as an imperative a clinician or an
integrator can act on ("Export the ECG again as ...", "upload the .dat file too", "Record the ECG again").

The verbs are listed once, here; a refusal passes when one of its sentences or clauses starts with one of them.
"""
from __future__ import annotations

import re

NEXT_STEP_VERBS = (
    "Add", "Check", "Choose", "Convert", "Correct", "Crop", "Enter", "Export", "Fill", "Leave", "Move", "Record",
    "Re-export", "Remove", "Rename", "Resample", "Save", "Send", "Set", "Upload", "Use", "Write",
)
# A clause starts a message, follows a sentence end, a semicolon or colon, an opening parenthesis or a dash, or
# an "or"/"then" that offers an alternative ("upload millivolts, or say ...").
_CLAUSE_START = r"(?:^|[.;:!?]\s+|\(|\s[–—]\s|,?\s(?:or|then)\s)"
_STEP = re.compile(_CLAUSE_START + r"(?:" + "|".join(re.escape(v) for v in NEXT_STEP_VERBS) + r")\b",
                   re.IGNORECASE)


def says_what_to_do(message: str) -> bool:
    """Whether ``message`` tells the reader what to do next (a clause that starts with a NEXT_STEP_VERBS verb)."""
    return _STEP.search(message) is not None
