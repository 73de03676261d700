from __future__ import annotations

import datetime as dt
import io

from django import forms
from django.contrib import messages
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.core.validators import MaxValueValidator, MinValueValidator
from django.forms.boundfield import BoundField

from clinical.errors import ApplicationError
from clinical.intake import (
    ACCEPTED_UPLOADS,
    MAX_FS,
    MAX_UPLOAD_BYTES,
    MIN_FS,
    UPLOAD_EXTENSIONS,
    IntakeError,
    check_size,
    display_name,
    extension,
)
from clinical.models import Patient, Recommendation
from mlcore.labels import STATEMENT_KEY

MAX_FILES = 3  # a WFDB record: .hea, its .dat (or .mat) and, for PTB records, the .xyz
NOTE_MAX_LENGTH = 5000  # a review note, on the page and in the API
# Audit filter dates: wide enough for any event this app wrote, and the day after `until` still a valid date.
AUDIT_DATE_MIN = dt.date(1900, 1, 1)
AUDIT_DATE_MAX = dt.date(9998, 12, 31)


def form_error(form: forms.Form, exc: ApplicationError, fallback: str | None = None) -> None:
    """A domain error on the page's form: on its field when the form has one of that name, else on ``fallback``
    (None: the form's own errors). The one way pages show an ApplicationError beside what was entered."""
    form.add_error(exc.field if exc.field in form.fields else fallback, exc.message)


def page_error(request, exc: ApplicationError) -> None:
    """A domain error as the next page's message (for a POST that redirects); the other way pages show one."""
    messages.error(request, exc.message)


def upload_problem(files) -> str | None:
    """What is wrong with a set of uploaded files before anything is read from them (their number and sizes),
    or None. Shared by the upload page and the API, so that a 100 MB file is refused by its size alone."""
    if len(files) > MAX_FILES:
        return f"{len(files)} files were uploaded; upload {ACCEPTED_UPLOADS}."
    for f in files:
        ext = extension(f.name)
        label = f".{ext}" if ext in UPLOAD_EXTENSIONS else display_name(f.name)
        try:
            check_size(f.size, label, "files")
        except IntakeError as exc:
            return exc.message
    return None


class CappedUploadHandler(FileUploadHandler):
    """Keeps the first MAX_UPLOAD_BYTES + 1 bytes of each uploaded file in memory and only counts the rest.

    Every file over the limit is refused by its size (see upload_problem), so its content is never needed: with
    settings.FILE_UPLOAD_HANDLERS (set so in ecgapp.settings.base) a 100 MB upload costs neither 100 MB of
    memory nor of temporary disk (Django's default handlers spool it to a temporary file). The file keeps its true
    size; its content is cut at the limit. At most MAX_FILES files' worth is kept per request, so a request with a
    hundred files (Django's DATA_UPLOAD_MAX_NUMBER_FILES) stays small too. It consumes every chunk, so it is the
    only handler: the app accepts no other uploads, and none larger than MAX_UPLOAD_BYTES.
    """

    chunk_size = 64 * 1024

    def __init__(self, request=None):
        super().__init__(request)
        self.budget = MAX_FILES * (MAX_UPLOAD_BYTES + 1)

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.file = io.BytesIO()
        self.kept = 0

    def receive_data_chunk(self, raw_data, start):
        room = min(MAX_UPLOAD_BYTES + 1 - self.kept, self.budget)
        if room > 0:
            piece = raw_data[:room]
            self.file.write(piece)
            self.kept += len(piece)
            self.budget -= len(piece)
        return None  # the chunk is consumed: no later handler sees it

    def file_complete(self, file_size):
        self.file.seek(0)
        return InMemoryUploadedFile(file=self.file, field_name=self.field_name, name=self.file_name,
                                    content_type=self.content_type, size=file_size, charset=self.charset,
                                    content_type_extra=self.content_type_extra)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": ",".join(f".{e}" for e in UPLOAD_EXTENSIONS)}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, (list, tuple)):
            files = [single(d, initial) for d in data]
        else:
            files = [single(data, initial)] if data else []
        problem = upload_problem(files)
        if problem:
            raise forms.ValidationError(problem, code="upload")
        return files


class EcgUploadForm(forms.Form):
    pseudonym = forms.CharField(label="Patient pseudonymous id", max_length=64,
                                help_text="The clinic's pseudonym, never a name.")
    # Unknown is a choice like the others, made on purpose: a blank age or sex is an error, never a default.
    age = forms.IntegerField(label="Age (years)", min_value=0, max_value=120, required=False)
    age_unknown = forms.BooleanField(label="Age unknown", required=False,
                                     help_text="Tick only when the patient's age is not known.")
    sex = forms.ChoiceField(choices=[("", "Choose…"), *Patient.Sex.choices],
                            error_messages={"required": "Choose male, female or unknown."})
    files = MultipleFileField(label="ECG file(s)",
                              help_text="A WFDB pair (.hea + .dat), one CSV with a header row of lead names, "
                                        "one JSON document, or one export from an ECG cart or management "
                                        "system: GE MUSE, Philips Sierra or HL7 aECG XML (.xml), DICOM (.dcm), "
                                        "SCP-ECG (.scp) or EDF (.edf).")
    fs = forms.FloatField(label="Sampling rate (Hz)", required=False, min_value=MIN_FS, max_value=MAX_FS,
                          help_text="Required for CSV; WFDB and JSON carry their own.",
                          error_messages={key: f"Enter the sampling rate as a number of Hz between {MIN_FS:g} and "
                                               f"{MAX_FS:g}." for key in ("invalid", "min_value", "max_value")})

    def clean(self):
        d = super().clean()
        if "age" in self.errors:
            return d
        if d.get("age") is None and not d.get("age_unknown"):
            self.add_error("age", "Enter the age in years, or tick 'Age unknown'.")
        elif d.get("age") is not None and d.get("age_unknown"):
            self.add_error("age", "Enter an age or tick 'Age unknown', not both.")
        return d


class ReanalyseForm(forms.Form):
    """Another 10 s of a stored ECG; whether the record has a window there is the service's check
    (mlcore.window.user_window), so the page and the API say the same."""

    window_start_s = forms.FloatField(
        label="Analyse another 10 s: start at", widget=forms.NumberInput(attrs={"step": "0.1", "min": "0"}),
        error_messages={key: "Enter the start of the window as a number of seconds, such as 20 or 12.5."
                        for key in ("required", "invalid")})


class AcknowledgeForm(forms.Form):
    verdict = forms.ChoiceField(choices=[("agree", "I agree with the findings"), ("disagree", "I disagree")],
                                widget=forms.RadioSelect)
    # The same bounds as the API's note (EcgAcknowledgeApi.Input).
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), min_length=3, max_length=NOTE_MAX_LENGTH,
                           help_text="Required: what you checked and what you decided.")

    def __init__(self, *args, findings=(), missable=(), missable_statements=(), **kwargs):
        """findings: the result's Finding rows; missable / missable_statements: (key, name) of the diagnostic
        classes and the dangerous statements it did not flag (clinical.reviews.missable_keys)."""
        super().__init__(*args, **kwargs)
        self.finding_keys = []
        for f in findings:
            name = f"finding__{f.overlay_key}"
            self.fields[name] = forms.ChoiceField(
                label=f"{f.display} ({'by measurement' if f.probability is None else f'{f.probability:.0%}'})",
                required=False, widget=forms.RadioSelect,
                choices=[("agree", "Agree"), ("disagree", "Disagree")])
            self.finding_keys.append((name, f.overlay_key))
        self.missed_keys, self.missed_statement_names = [], []
        for key, display in [*missable, *missable_statements]:
            head, code = key.split(":", 1)  # a form field name holds no ':'
            name = f"missed__{code}" if head == "superclass" else f"missed__statement__{code}"
            self.fields[name] = forms.BooleanField(label=display, required=False)
            self.missed_keys.append((name, key))
            if key.startswith(STATEMENT_KEY):
                self.missed_statement_names.append(name)

    def finding_verdicts(self) -> dict[str, str]:
        verdicts = {key: self.cleaned_data[name] for name, key in self.finding_keys if self.cleaned_data.get(name)}
        verdicts.update({key: "missed" for name, key in self.missed_keys if self.cleaned_data.get(name)})
        return verdicts


AUDIT_DATE_RANGE = [MinValueValidator(AUDIT_DATE_MIN), MaxValueValidator(AUDIT_DATE_MAX)]
AUDIT_DATE_ERRORS = {key: f"Enter a date between {AUDIT_DATE_MIN:%Y-%m-%d} and {AUDIT_DATE_MAX:%Y-%m-%d}."
                     for key in ("invalid", "min_value", "max_value")}


def audit_day_start(day: dt.date) -> dt.datetime:
    """Midnight at the start of ``day`` in the current time zone: the audit filters' bound for a date."""
    from django.utils import timezone

    return dt.datetime.combine(day, dt.time.min, timezone.get_current_timezone())


class AuditFilterForm(forms.Form):
    """The form of the audit trail's filters; its fields are clinical.filters.AuditEventFilter's."""

    def clean(self):
        d = super().clean()
        if d.get("since") and d.get("until") and d["since"] > d["until"]:
            self.add_error("until", "Until must be on or after From.")
        return d

    def filters(self) -> dict:
        """What was asked, as the audit event of a read of the trail records it (dates as their bounds)."""
        d = self.cleaned_data
        since = audit_day_start(d["since"]) if d.get("since") else None
        until = audit_day_start(d["until"] + dt.timedelta(days=1)) if d.get("until") else None
        return {"actor": d.get("actor", ""), "action": d.get("action", ""), "patient": d.get("patient", ""),
                "since": since, "until": until}


class ReadingForm(forms.Form):
    """Over-read: keep or remove each computer statement, add statements, free text, caliper values, the password.

    The service (clinical.interpretations) checks what is kept, added and measured, and the signature; the form
    only turns the fields into its arguments, so that the page and the API are refused with the same messages."""

    intent = forms.ChoiceField(choices=[("confirm", "Confirm"), ("amend", "Amend")], widget=forms.HiddenInput)
    added = forms.MultipleChoiceField(required=False, label="Add statements",
                                      widget=forms.SelectMultiple(attrs={"size": 8}))
    free_text = forms.CharField(required=False, label="Free text", max_length=NOTE_MAX_LENGTH,
                                widget=forms.Textarea(attrs={"rows": 3}))
    reason = forms.CharField(required=False, label="Reason for the amendment", max_length=NOTE_MAX_LENGTH,
                             widget=forms.Textarea(attrs={"rows": 2}))
    password = forms.CharField(required=False, label="Your password (signs the reading)", strip=False,
                               widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))

    def __init__(self, *args, statements=(), choices=None, editable=None, computer_values=None, **kwargs):
        """statements: the computer's [{key, display, ...}]; choices: key -> display of what may be added;
        editable: key -> clinical.interpretations.Editable; computer_values: key -> this system's value."""
        super().__init__(*args, **kwargs)
        self.keep_names = []
        for s in statements:
            name = "keep__" + s["key"].replace(":", "__")  # a form field name holds no ':'
            self.fields[name] = forms.BooleanField(required=False, initial=True, label=s["display"])
            self.keep_names.append((name, s["key"]))
        # The statement's code beside its name: several names differ by a word only.
        self.fields["added"].choices = [(k, f"{v} ({k.split(':', 1)[1]})" if k.startswith(STATEMENT_KEY) else v)
                                        for k, v in (choices or {}).items()]
        self.measure_names = []
        for key, spec in (editable or {}).items():
            value = (computer_values or {}).get(key)
            name = f"m__{key}"
            self.fields[name] = forms.FloatField(
                required=False, label=f"{spec.label} ({spec.unit})",
                widget=forms.NumberInput(attrs={"step": "1", "placeholder": "—" if value is None else f"{value:g}"}))
            self.measure_names.append((name, key, value))

    def keep_fields(self) -> list[tuple[BoundField, str]]:
        return [(self[name], key) for name, key in self.keep_names]

    def measure_fields(self) -> list[BoundField]:
        return [self[name] for name, _, _ in self.measure_names]

    def service_arguments(self) -> dict:
        d = self.cleaned_data
        return {"removed": [key for name, key in self.keep_names if not d.get(name)],
                "added": list(d.get("added") or []), "free_text": d.get("free_text", ""),
                "overrides": {key: d[name] for name, key, _ in self.measure_names if d.get(name) is not None},
                "password": d.get("password") or None}


class WorklistFilterForm(forms.Form):
    """The reviewers' worklist: ECGs analysed and not yet confirmed, filtered and sorted."""

    SORTS = [("urgency", "Most urgent first, then longest waiting"), ("oldest", "Longest waiting first"),
             ("newest", "Newest first"), ("patient", "Patient")]
    AGES = [("", "Any age"), ("1h", "Waiting over 1 hour"), ("24h", "Waiting over 24 hours"),
            ("7d", "Waiting over 7 days")]
    urgency = forms.ChoiceField(required=False, choices=[("", "Any urgency"), *Recommendation.Urgency.choices])
    waiting = forms.ChoiceField(required=False, choices=AGES, label="Age of result")
    uploader = forms.CharField(required=False, max_length=150, label="Uploaded by")
    finding = forms.CharField(required=False, max_length=16, label="Finding code",
                              help_text="A code the computer flagged, e.g. MI, AFIB, WIDE_QRS")
    site = forms.CharField(required=False, max_length=100, label="Device / site",
                           help_text="Part of the recording device's name as the file gave it")
    sort = forms.ChoiceField(required=False, choices=SORTS)
