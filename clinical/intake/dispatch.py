"""Which reader reads an upload, from the uploaded files' extensions."""
from __future__ import annotations

# Each reader module registers the extensions it reads when imported.
from clinical.intake import dicom, edf, registry, scp_ecg, xml  # noqa: F401
from clinical.intake.errors import IntakeError, extension, join, shown
from clinical.intake.json_doc import parse_json
from clinical.intake.limits import WFDB_SIGNAL_EXTENSIONS
from clinical.intake.record import ParsedEcg, assemble, check_content_size
from clinical.intake.text_table import parse_csv
from clinical.intake.wfdb_record import parse_wfdb

UPLOAD_EXTENSIONS = ("hea", *WFDB_SIGNAL_EXTENSIONS, "csv", "txt", "json", *sorted(registry.READERS))
ACCEPTED_UPLOADS = ("either a WFDB record (a .hea header and its .dat signal file together), one .csv, .txt or "
                    ".json file, or one export file: " + ", ".join(f"{d} (.{e})" for e, d in
                                                           sorted(registry.DESCRIPTIONS.items())))


def parse_upload(*, files: dict[str, tuple[str, bytes]], fs: float | None, document: object = None) -> ParsedEcg:
    """Pick the parser from the uploaded files' extensions.

    ``files`` maps a form field to ``(file name, content)``; the file name's extension decides (the key is used
    only for a name without one). A .hea with a .dat is WFDB, one .csv or .txt is CSV/text
    (``fs`` unless the file gives it), one .json is
    JSON (its own "fs" is used). ``document``: that one .json file already parsed (see parse_json).
    """
    by_ext: dict[str, list[tuple[str, bytes]]] = {}
    for key, (name, content) in files.items():
        ext = extension(name) or key.lower().lstrip(".")
        by_ext.setdefault(ext, []).append((name, content))
    if not by_ext:
        raise IntakeError(f"No file was uploaded. Upload {ACCEPTED_UPLOADS}.")
    unsupported = sorted(e for e in by_ext if e not in UPLOAD_EXTENSIONS)
    if unsupported:
        shown_types = join([f".{shown(e, 12)}" if e else "(no extension)" for e in unsupported[:5]])
        raise IntakeError(f"Files of type {shown_types} are not accepted. Upload {ACCEPTED_UPLOADS}.")
    counts = {e: len(v) for e, v in by_ext.items()}
    if counts.get("hea") == 1 and len(counts) > 1 and all(e in ("hea", *WFDB_SIGNAL_EXTENSIONS) for e in counts):
        # A header with the signal files it names (.dat, .mat, PTB's .xyz), matched by name in parse_wfdb.
        hea_name, hea = by_ext["hea"][0]
        signal_files = [f for e in WFDB_SIGNAL_EXTENSIONS for f in by_ext.get(e, [])]
        return parse_wfdb(hea, hea_name=hea_name, signal_files=signal_files)
    if counts == {"hea": 1}:
        raise IntakeError("A WFDB header (.hea) was uploaded without its signal file; upload the .dat file too.", "dat")
    if counts == {"dat": 1}:
        raise IntakeError("A WFDB signal file (.dat) was uploaded without its header; upload the .hea file too.", "hea")
    if counts in ({"csv": 1}, {"txt": 1}):
        ext = next(iter(counts))
        return parse_csv(by_ext[ext][0][1], fs=fs, label=f".{ext}")
    if counts == {"json": 1}:
        return parse_json(by_ext["json"][0][1], document)
    if len(counts) == 1 and next(iter(counts.values())) == 1 and next(iter(counts)) in registry.READERS:
        ext = next(iter(counts))
        name, content = by_ext[ext][0]
        check_content_size(content, f".{ext}", "file")
        reading = registry.READERS[ext](content, name)
        return assemble(reading.columns, reading.fs, reading.source_format, "file", device=reading.device,
                         notes=reading.notes)
    raise IntakeError(f"Upload one ECG at a time: {ACCEPTED_UPLOADS}.")
