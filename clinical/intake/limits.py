"""What an upload may be: sizes, durations, rates and amplitudes every reader enforces (one place, so the
form, the API and the docs say the same)."""
from __future__ import annotations

MIN_SECONDS = 8.0  # the model reads a 10 s window; shorter records would be mostly padding
# Five minutes: what hospitals export besides the 10 s resting ECG (PTB's 38 s records, 60-300 s rhythm strips and
# monitor exports). The model reads one 10 s window of it, chosen by signal quality (mlcore.window) or by the
# user. Longer recordings (a 24 h Holter) need beat-by-beat analysis of the whole, a different examination.
MAX_SECONDS = 300.0
# Per file, and the API's JSON body (ecgapp.settings DATA_UPLOAD_MAX_MEMORY_SIZE is the same number). Sized for
# MAX_SECONDS of 12 leads at 1000 Hz: 7.2 MB as WFDB format 16 (2 bytes a sample), about 25 MB as CSV or JSON
# text (6-9 characters a sample, e.g. "-0.1234,"). The text readers stop keeping samples past MAX_SECONDS.
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
# Accepted WFDB sampling rates, lowest and highest (Hz): any rate between, e.g. 240 Hz GE MAC-LAB, 257 Hz INCART,
# 360 Hz MIT-BIH; mlcore.preprocess resamples to the model rate.
WFDB_RATES = (100.0, 2000.0)
# Signal files a WFDB header may name: .dat, CinC 2020/2021 .mat (format 16 after a 24-byte MATLAB v4 header), and
# PTB's second file .xyz (Frank leads, ignored).
WFDB_SIGNAL_EXTENSIONS = ("dat", "mat", "xyz")
MIN_FS, MAX_FS = 50.0, 2000.0  # accepted for CSV/JSON (given in the form / document)
# A 12-lead header is under 2 KB; PhysioNet headers with long comment blocks stay well below this.
MAX_HEADER_BYTES = 64 * 1024
# Columns of a CSV / entries of a JSON "leads" object: 12 leads (and a time column) with room for the extra leads
# we name in the message; beyond this the file is not a 12-lead export at all.
MAX_COLUMNS = 32
# A CSV row is one sample of each lead: a few hundred characters. Longer lines are refused before the csv module
# splits them into millions of cells.
MAX_CSV_LINE_CHARS = 10_000
# Amplitude plausibility, in mV. On PTB-XL (19,601 records) the widest 1st-99th percentile range of any lead is
# 16 mV and no sample lies more than 18 mV from its lead's median; values in microvolts read as millivolts are a
# thousand times larger. Beyond MAX_DEVIATION_MV a single sample is an export error, not an artefact.
MAX_TYPICAL_RANGE_MV = 50.0
MAX_DEVIATION_MV = 1000.0
