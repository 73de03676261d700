from tests.clinical.conftest import clinician, compliance_officer, ecg_500hz, reviewer, wfdb_pair  # noqa: F401
