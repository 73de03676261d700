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


class AcknowledgeForm(forms.Form):
    verdict = forms.ChoiceField(choices=[("agree", "I agree with the findings"), ("disagree", "I disagree")],
                                widget=forms.RadioSelect)
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), min_length=3,
                           help_text="Required: what you checked and what you decided.")

    def __init__(self, *args, findings=(), missable=(), **kwargs):
        """findings: the result's Finding rows; missable: (code, name) of diagnostic classes it did not flag."""
        super().__init__(*args, **kwargs)
        self.finding_keys = []
        for f in findings:
            name = f"finding__{f.overlay_key}"
            self.fields[name] = forms.ChoiceField(
                label=f"{f.display} ({f.probability:.0%})", required=False, widget=forms.RadioSelect,
                choices=[("agree", "Agree"), ("disagree", "Disagree")])
            self.finding_keys.append((name, f.overlay_key))
        self.missed_keys = []
        for code, display in missable:
            name = f"missed__{code}"
            self.fields[name] = forms.BooleanField(label=display, required=False)
            self.missed_keys.append((name, f"superclass:{code}"))

    def finding_verdicts(self) -> dict[str, str]:
        verdicts = {key: self.cleaned_data[name] for name, key in self.finding_keys if self.cleaned_data.get(name)}
        verdicts.update({key: "missed" for name, key in self.missed_keys if self.cleaned_data.get(name)})
        return verdicts


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=150)
    action = forms.CharField(required=False, max_length=64)
    patient = forms.CharField(required=False, max_length=64, label="Patient pseudonym")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="Until (inclusive)", widget=forms.DateInput(attrs={"type": "date"}))

    def filters(self) -> dict:
        import datetime as dt

        from django.utils import timezone

        d = self.cleaned_data
        tz = timezone.get_current_timezone()
        since = dt.datetime.combine(d["since"], dt.time.min, tz) if d.get("since") else None
        until = dt.datetime.combine(d["until"] + dt.timedelta(days=1), dt.time.min, tz) if d.get("until") else None
        return {"actor": d.get("actor", ""), "action": d.get("action", ""), "patient": d.get("patient", ""),
                "since": since, "until": until}
