"""Intake of uploaded ECGs: every format a cart or an ECG management system exports, read into one canonical
record (issue 13). No Django import: the package is unit-tested on its own.

- dispatch: which reader reads an upload, from the uploaded files' extensions (parse_upload)
- readers, one module per format: wfdb_record (WFDB at any rate, .dat/.mat/.xyz), text_table (CSV / TSV / text with
  a preamble), json_doc, xml (sniffs the root element for) ge_muse, philips and hl7_aecg, dicom, scp_ecg, edf
- record: the canonical record (ParsedEcg: 12 × n mV, fs, what the file says besides the waveform) and the checks
  every upload shares; leads: lead names and derivation; limits: what an upload may be; errors: IntakeError and
  the helpers that write its messages; encoding: text or binary, and which text; registry: the single-file readers

Every reader raises IntakeError with a message for the person who uploaded the file: what is wrong, and what to
upload instead.
"""
from clinical.intake.dispatch import ACCEPTED_UPLOADS, UPLOAD_EXTENSIONS, parse_upload
from clinical.intake.errors import HIDDEN_CATEGORIES, IntakeError, display_name, extension, shown
from clinical.intake.limits import MAX_COLUMNS, MAX_FS, MAX_SECONDS, MAX_UPLOAD_BYTES, MIN_FS, MIN_SECONDS
from clinical.intake.record import ParsedEcg, check_size

__all__ = [
    "ACCEPTED_UPLOADS", "HIDDEN_CATEGORIES", "MAX_COLUMNS", "MAX_FS", "MAX_SECONDS", "MAX_UPLOAD_BYTES", "MIN_FS",
    "MIN_SECONDS", "UPLOAD_EXTENSIONS", "IntakeError", "ParsedEcg", "check_size", "display_name", "extension",
    "parse_upload", "shown",
]
