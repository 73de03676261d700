from tests.clinical.conftest import clinician, ecg_500hz, wfdb_pair  # noqa: F401
