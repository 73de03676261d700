from __future__ import annotations

import pytest

# The web-app personas and uploads, shared with the clinical tests.
from tests.clinical.conftest import clinician, compliance_officer, ecg_500hz, reviewer, wfdb_pair  # noqa: F401


@pytest.fixture(autouse=True)
def media_in_tmp(settings, tmp_path):
    """Report HTML files go to a throwaway folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
