from __future__ import annotations

# The web-app personas and uploads, shared with the clinical tests.
from tests.clinical.conftest import clinician, ecg_500hz, wfdb_pair  # noqa: F401
