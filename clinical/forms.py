from __future__ import annotations

from django import forms

from clinical.ingest import MAX_FS, MIN_FS
from clinical.models import Patient


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": ".hea,.dat,.csv,.json"}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, (list, tuple)):
            return [single(d, initial) for d in data]
        return [single(data, initial)] if data else []


class EcgUploadForm(forms.Form):
    pseudonym = forms.CharField(label="Patient pseudonymous id", max_length=64,
                                help_text="The clinic's pseudonym, never a name.")
    age = forms.IntegerField(label="Age (years)", min_value=0, max_value=120)
    sex = forms.ChoiceField(choices=Patient.Sex.choices)
    files = MultipleFileField(label="ECG file(s)",
                              help_text="A WFDB pair (.hea + .dat), one CSV with a header row of lead names, "
                                        "or one JSON document.")
    fs = forms.FloatField(label="Sampling rate (Hz)", required=False, min_value=MIN_FS, max_value=MAX_FS,
                          help_text="Required for CSV; WFDB and JSON carry their own.")
