"""REST API v1: one APIView per operation, calling the same services and selectors as the pages."""
from __future__ import annotations

import re

from django.http import HttpResponse
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from clinical import access, interpretations, selectors, services
from clinical.api.errors import body_too_large
from clinical.api.parsers import BoundedJSONParser
from clinical.forms import upload_problem
from clinical.intake import MAX_COLUMNS, MAX_FS, MAX_SECONDS, MAX_UPLOAD_BYTES, MIN_SECONDS, shown
from clinical.models import ApiToken, EcgRecord, InferenceJob, Patient, Recommendation
from clinical.models import Finding as FindingRow
from clinical.models import Interpretation as InterpretationRow
from clinical.models import Prediction as PredictionRow
from clinical.reports.pdf import PAPERS
from clinical.reports.services import report_export
from clinical.reviews import MISSED, result_acknowledge
from mlcore.labels import STATEMENT_KEY, SUPERCLASS_KEY, SUPERCLASS_NAMES
from mlcore.preprocess import LEADS

EVIDENCE_POINTS = 100  # per lead: 10 s of evidence at 10 Hz is plenty for an EHR thumbnail
EVIDENCE_HELP = ("Compute the per-lead evidence (Grad-CAM) right after the result (true), or only when it is "
                 "first asked for (false, the default): by the result page's first view, or GET result with "
                 "evidence=1. Either way the findings and actions do not wait for it; evidence costs about twice "
                 "the analysis, and most results sent through the API are never looked at that way.")
# An Idempotency-Key is stored as sent, so one that would not fit or that carries invisible characters is refused
# rather than cut or rewritten: two different keys must never become the same one.
IDEMPOTENCY_KEY = re.compile(r"^[\x20-\x7e]{1,100}$")
IDEMPOTENCY_KEY_RULE = "at most 100 printable ASCII characters"


def _record(request, public_id, state_only: bool = False, with_signal: bool = False) -> EcgRecord:
    """The ECG ``request.user`` may see (NotFound otherwise), without its samples (no API response carries them;
    the reader that needs them reads them); ``state_only``: for its analysis state only; ``with_signal``: with
    them, for a report, which draws them."""
    try:
        return selectors.ecg_get_for_user(user=request.user, public_id=public_id, with_signal=with_signal,
                                          state_only=state_only)
    except EcgRecord.DoesNotExist as exc:
        raise NotFound("No such ECG, or it is not yours to see.") from exc


def _require(request, *perms: str) -> None:
    if not any(request.user.has_perm(f"clinical.{p}") for p in perms):
        raise PermissionDenied("Your role does not allow this operation.")


class ErrorSerializer(serializers.Serializer):
    class Body(serializers.Serializer):
        code = serializers.CharField()
        message = serializers.CharField()
        fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))

        class Meta:
            ref_name = "ErrorBody"

    error = Body()

    class Meta:
        ref_name = "Error"


ERRORS = {code: ErrorSerializer for code in (400, 401, 403, 404, 429)}


# The longest lead the intake parser could accept (MAX_SECONDS at the highest rate), refused before any parsing;
# the parser then checks the length against the document's own "fs".
MAX_SAMPLES_PER_LEAD = int(MAX_SECONDS * MAX_FS)


@extend_schema_field({"type": "object", "maxProperties": MAX_COLUMNS,
                      "additionalProperties": {"type": "array", "maxItems": MAX_SAMPLES_PER_LEAD,
                                               "items": {"type": "number"}}})
class _LeadsField(serializers.Field):
    """Lead name -> list of samples, checked here for shape only.

    Each sample is checked by the intake parser, with numpy and the same messages as an uploaded .json file.
    Validating 60,000 numbers one by one through DRF FloatFields was most of a JSON submit's CPU time.
    """

    default_error_messages = {
        "not_object": "Expected an object mapping lead names to lists of numbers.",
        "max_keys": "At most {max_keys} entries are accepted; got {count}.",
        "not_list": "Lead {lead}: expected a list of numbers, got {kind}.",
        "too_long": "Lead {lead}: at most {most:,} samples are accepted; got {count:,}.",
    }

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("not_object")
        if len(data) > MAX_COLUMNS:
            self.fail("max_keys", max_keys=MAX_COLUMNS, count=len(data))
        for lead, values in data.items():
            if not isinstance(values, list):
                self.fail("not_list", lead=shown(lead), kind=type(values).__name__)
            if len(values) > MAX_SAMPLES_PER_LEAD:
                self.fail("too_long", lead=shown(lead), most=MAX_SAMPLES_PER_LEAD, count=len(values))
        return data

    def to_representation(self, value):
        return value


_ID = "3f2b6a51-8c1e-4b7a-9d0e-2a7f5c9e1b44"
EX_JOB = OpenApiExample("Job", response_only=True, value={
    "id": _ID, "state": "running", "progress": 30, "stage": "Running the ensemble", "error": "",
    "attempts": 1, "result_url": f"/api/v1/ecgs/{_ID}/result/",
    "analysed_window": {"start_s": 12.0, "end_s": 22.0, "record_s": 38.0, "chosen_by": "quality"},
    "reanalysis_of": None, "queued_at": "2026-12-01T09:30:00.120000Z", "started_at": "2026-12-01T09:30:00.310000Z",
    "finished_at": None, "processing_ms": None})
EX_ERROR = OpenApiExample("Error", response_only=True, status_codes=["400"], value={
    "error": {"code": "invalid", "message": "Missing lead(s): V6; a 12-lead ECG is required.",
              "fields": {"file": ["Missing lead(s): V6; a 12-lead ECG is required."]}}})
EX_MISMATCH = OpenApiExample("Idempotency mismatch", response_only=True, status_codes=["422"], value={
    "error": {"code": "idempotency_mismatch", "message": services.IDEMPOTENCY_MISMATCH,
              "fields": {"Idempotency-Key": [services.IDEMPOTENCY_MISMATCH]}}})


WINDOW_HELP = (f"The model reads 10 s. Of a longer recording (up to {MAX_SECONDS:g} s) it reads the cleanest 10 s by "
               "signal quality, unless window_start_s says where the 10 s start (seconds from the start of the "
               "recording, 0 to its length minus 10).")


class AnalysedWindow(serializers.Serializer):
    start_s = serializers.FloatField()
    end_s = serializers.FloatField()
    record_s = serializers.FloatField(help_text="Length of the whole recording")
    chosen_by = serializers.ChoiceField(choices=EcgRecord.WindowChosenBy.values, help_text=(
        "quality: the cleanest 10 s by signal quality; user: the start given at upload or re-analysis; centre: "
        "the central 10 s (ECGs stored before windows were chosen)."))

    class Meta:
        ref_name = "AnalysedWindow"


class _ProcessingMs(serializers.FloatField):
    """finished_at - started_at of a job in ms, rounded to 0.1 ms; None until it finished."""

    def to_representation(self, job):
        ran = job.finished_at and job.started_at and job.finished_at >= job.started_at
        return round((job.finished_at - job.started_at).total_seconds() * 1000, 1) if ran else None


class _ApiUrl(serializers.CharField):
    """The API address of one of a record's operations, from its public id."""

    def __init__(self, url_name: str, **kwargs) -> None:
        self.url_name = url_name
        super().__init__(source="public_id", **kwargs)

    def to_representation(self, value) -> str:
        return reverse(self.url_name, args=[value])


class Timings(serializers.Serializer):
    # When a job was queued, started and finished, and how long it ran: fields of the job and of the result, read
    # from the object's ``job``.
    queued_at = serializers.DateTimeField(source="job.enqueued_at", allow_null=True, help_text=(
        "When the analysis was (last) handed to the queue; null while it waits to be sent (broker down)"))
    started_at = serializers.DateTimeField(source="job.started_at", allow_null=True,
                                           help_text="When a worker (last) started it")
    finished_at = serializers.DateTimeField(source="job.finished_at", allow_null=True,
                                            help_text="When its result (or failure) was stored")
    processing_ms = _ProcessingMs(source="job", allow_null=True, help_text=(
        "finished_at - started_at in ms (worker time, not queue time); null until finished. Evidence is not "
        "in it: it is computed after the result is stored"))


class JobOutput(Timings):
    # An EcgRecord's analysis state (its job); no docstring: it would become the schema's description.
    id = serializers.UUIDField(source="public_id")
    state = serializers.ChoiceField(source="job.state", choices=["queued", "running", "done", "failed"])
    progress = serializers.IntegerField(source="job.progress")
    stage = serializers.CharField(source="job.stage", allow_blank=True)
    error = serializers.CharField(source="job.error", allow_blank=True)
    attempts = serializers.IntegerField(source="job.attempts")
    result_url = _ApiUrl("api:ecg-result")
    analysed_window = AnalysedWindow(help_text="The 10 s of the recording the model reads.")
    reanalysis_of = serializers.UUIDField(source="reanalysis_of.public_id", allow_null=True,
                                          help_text="The ECG this one re-analyses (another window of the same "
                                                    "recording), or null.")

    class Meta:
        ref_name = "Job"


def _idempotency_key(request) -> str:
    key = (request.headers.get("Idempotency-Key") or "").strip()
    if key and not IDEMPOTENCY_KEY.match(key):
        raise serializers.ValidationError({"Idempotency-Key": [
            f"Use {IDEMPOTENCY_KEY_RULE} for the Idempotency-Key (got {len(key)} characters)."]})
    return key


class EcgSubmitApi(APIView):
    parser_classes = [BoundedJSONParser, MultiPartParser]

    class JsonInput(serializers.Serializer):
        class Patient(serializers.Serializer):
            id = serializers.CharField(max_length=64)
            age = serializers.IntegerField(min_value=0, max_value=120, allow_null=True,
                                           help_text="Whole years; null when the age is unknown (required: "
                                                     "send null, not nothing).")
            sex = serializers.ChoiceField(choices=["M", "F", "U"])

            class Meta:
                ref_name = "SubmitPatient"

        fs = serializers.FloatField(min_value=50, max_value=2000)
        units = serializers.ChoiceField(choices=["mV", "uV"], default="mV")
        leads = _LeadsField(help_text="Lead name -> samples; the 12 standard leads, any common spelling.")
        patient = Patient()
        window_start_s = serializers.FloatField(required=False, allow_null=True, help_text=WINDOW_HELP)
        evidence = serializers.BooleanField(required=False, default=False, help_text=EVIDENCE_HELP)

        class Meta:
            ref_name = "SubmitJson"

    class MultipartInput(serializers.Serializer):
        files = serializers.ListField(child=serializers.FileField(), min_length=1, max_length=3,
                                      help_text="A WFDB record (.hea with its .dat or .mat, optionally the .xyz of "
                                                "a PTB record), one .csv / .txt / .json file, or one export: GE "
                                                "MUSE, Philips Sierra or HL7 aECG XML (.xml), DICOM (.dcm), "
                                                "SCP-ECG (.scp) or EDF (.edf). "
                                                f"{MAX_UPLOAD_BYTES // 2**20} MB each at most; "
                                                f"{MAX_SECONDS:g} s of recording at most.")
        pseudonym = serializers.CharField(max_length=64)
        age = serializers.IntegerField(min_value=0, max_value=120, allow_null=True,
                                       help_text="Whole years; an empty value when the age is unknown (required).")
        sex = serializers.ChoiceField(choices=["M", "F", "U"])
        fs = serializers.FloatField(required=False, min_value=50, max_value=2000, help_text="Required for CSV.")
        window_start_s = serializers.FloatField(required=False, allow_null=True, help_text=WINDOW_HELP)
        evidence = serializers.BooleanField(required=False, default=False, help_text=EVIDENCE_HELP)

        class Meta:
            ref_name = "SubmitMultipart"

        def validate_files(self, files):
            # Before anything is read: a 100 MB file is refused by its size, not loaded to find out.
            problem = upload_problem(files)
            if problem:
                raise serializers.ValidationError(problem)
            return files

    def error_fields(self, request) -> dict[str, str]:
        """The service's field names in this API's terms (read by clinical.api.errors): the reader names the JSON
        document "json", as for an uploaded .json file; in a JSON body its fault is in "leads"."""
        return {} if request.content_type.startswith("multipart/") else {"json": "leads"}

    @extend_schema(
        operation_id="ecg_submit",
        summary="Submit a 12-lead ECG for analysis",
        description=(f"One ECG per request: {MIN_SECONDS:g} to {MAX_SECONDS:g} s ({MAX_SECONDS / 60:g} minutes) of "
                     f"recording; files of up to {MAX_UPLOAD_BYTES // 2**20} MB each, or a JSON body of up to "
                     f"{MAX_UPLOAD_BYTES // 2**20} MB (larger: 413, code \"too_large\"). Five minutes of 12 leads "
                     "at 1000 Hz is about 7 MB as WFDB and about 25 MB as CSV or JSON. " + WINDOW_HELP),
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
                                     description=f"{IDEMPOTENCY_KEY_RULE[:1].upper()}{IDEMPOTENCY_KEY_RULE[1:]} "
                                                 "(a longer key, or other characters: 400). Retrying the same "
                                                 "request with the same key returns the first submission; the same "
                                                 "key with a different request (other patient fields or ECG data) "
                                                 "is refused with 422, code \"idempotency_mismatch\".")],
        request={"application/json": JsonInput, "multipart/form-data": MultipartInput},
        responses={202: JobOutput, **ERRORS, 413: ErrorSerializer, 422: ErrorSerializer},
        examples=[EX_JOB, EX_ERROR, EX_MISMATCH, OpenApiExample("JSON", request_only=True, value={
            "fs": 500, "units": "mV", "patient": {"id": "PT-0042", "age": 63, "sex": "F"},
            "leads": {lead: [0.0, 0.01, 0.02] for lead in LEADS}})],
    )
    def post(self, request):
        _require(request, "upload_ecg", "use_api")
        key = _idempotency_key(request)
        json_body = not request.content_type.startswith("multipart/")
        if not json_body:
            s = self.MultipartInput(data=request.data)
            s.is_valid(raise_exception=True)
            d = s.validated_data
            files = {f"f{i}": (f.name, f.read()) for i, f in enumerate(d["files"])}
            args = {"pseudonym": d["pseudonym"], "age": d["age"], "sex": d["sex"], "fs": d.get("fs"),
                    "window_start_s": d.get("window_start_s"), "evidence": d["evidence"]}
        else:
            # The raw body (its bytes: the idempotency and upload hashes) and DRF's parse of it (request.data) go to
            # the same reader as a .json file uploaded in the browser, which reads "fs", "units" and "leads" from
            # the parsed document instead of parsing 1 MB again, and ignores "patient".
            body = request.body
            if len(body) > MAX_UPLOAD_BYTES:  # the body is the ECG document: refused as the body, never as a file
                raise body_too_large(len(body))
            s = self.JsonInput(data=request.data)
            s.is_valid(raise_exception=True)
            d = s.validated_data
            files = {"json": ("api.json", body)}
            p = d["patient"]
            args = {"pseudonym": p["id"], "age": p["age"], "sex": p["sex"], "fs": None,
                    "window_start_s": d.get("window_start_s"), "evidence": d["evidence"], "document": request.data}
        record = services.ecg_submit(actor=request.user, files=files, idempotency_key=key, **args)
        record = selectors.ecg_get_for_user(user=request.user, public_id=record.public_id, state_only=True)
        return Response(JobOutput(record).data, status=status.HTTP_202_ACCEPTED)


class EcgJobApi(APIView):
    @extend_schema(operation_id="ecg_job", summary="Analysis state of a submitted ECG",
                   responses={200: JobOutput, **ERRORS}, examples=[EX_JOB])
    def get(self, request, public_id):
        # Not audited: the analysis state only, no patient data (see clinical.access); the result read is.
        return Response(JobOutput(_record(request, public_id, state_only=True)).data)


class EcgReanalyseApi(APIView):
    class Input(serializers.Serializer):
        window_start_s = serializers.FloatField(help_text="Where the 10 s start, in seconds from the start of the "
                                                          "recording: 0 to its length minus 10.")

        class Meta:
            ref_name = "ReanalyseInput"

    @extend_schema(
        operation_id="ecg_reanalyse", summary="Analyse another 10 s of a submitted ECG",
        description="Makes a new ECG (same patient and recording, reanalysis_of this one, window chosen_by "
                    "\"user\") with its own analysis; this ECG and its result stay as they are. Allowed to those "
                    "who may submit ECGs, for an ECG they may see. A start outside the recording, or a window the "
                    "quality gate refuses, is a 400 on window_start_s and nothing is stored. Idempotency-Key works "
                    "as on submit.",
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
                                     description=f"{IDEMPOTENCY_KEY_RULE[:1].upper()}{IDEMPOTENCY_KEY_RULE[1:]}; "
                                                 "the same key with the same request returns the first "
                                                 "re-analysis, with another request 422.")],
        request=Input, responses={201: JobOutput, **ERRORS, 422: ErrorSerializer},
        examples=[OpenApiExample("Re-analyse", request_only=True, value={"window_start_s": 20}), OpenApiExample(
            "Re-analysis", response_only=True, status_codes=["201"], value={
                "id": _ID, "state": "queued", "progress": 0, "stage": "Waiting for a worker", "error": "",
                "attempts": 0, "result_url": f"/api/v1/ecgs/{_ID}/result/",
                "analysed_window": {"start_s": 20.0, "end_s": 30.0, "record_s": 38.0, "chosen_by": "user"},
                "reanalysis_of": "9d3c1e0a-5b7f-4c2e-8a61-0f4b2d7e9c15"}), EX_ERROR])
    def post(self, request, public_id):
        _require(request, "upload_ecg", "use_api")
        key = _idempotency_key(request)
        record = _record(request, public_id)
        s = self.Input(data=request.data)
        s.is_valid(raise_exception=True)
        new = services.ecg_reanalyse(actor=request.user, record=record,
                                     window_start_s=s.validated_data["window_start_s"], idempotency_key=key)
        new.refresh_from_db()
        return Response(JobOutput(new).data, status=status.HTTP_201_CREATED)


def _lead_levels(help_text: str) -> serializers.DictField:
    return serializers.DictField(child=serializers.IntegerField(allow_null=True), allow_null=True, help_text=help_text)


class OperatingPointOutput(serializers.Serializer):
    name = serializers.CharField(help_text=(
        "How the threshold was chosen (training.operating_points): sensitivity_target or specificity_target (the "
        "threshold meeting ``target`` on the calibration folds), f1_optimal (F1-optimal there), floor (the "
        "F1-optimal cut-off fell below the 10 % floor, project policy, so the floor is the threshold); "
        "'_unvalidated_target' appended when a target was set but too few positives exist to check it"))
    metric = serializers.ChoiceField(choices=["sensitivity", "specificity"], allow_null=True, required=False,
                                     help_text="What the target is a value of; null: no target (F1-optimal)")
    target = serializers.FloatField(allow_null=True, help_text="The target the threshold was chosen for "
                                                               "(e.g. sensitivity 0.90); null: none recorded")
    achieved = serializers.FloatField(allow_null=True, help_text="The value achieved on the calibration "
                                                                 "data; null: not recorded")
    achieved_ci90 = serializers.ListField(child=serializers.FloatField(), min_length=2, max_length=2,
                                          allow_null=True, required=False,
                                          help_text="90 % Wilson interval of ``achieved``; null: not recorded")
    achieved_out_of_sample = serializers.FloatField(
        allow_null=True, required=False,
        help_text="The value achieved out of sample (threshold chosen on half the calibration records, measured on "
                  "the other half, both ways, averaged); null: not recorded")
    support = serializers.IntegerField(allow_null=True, help_text="Positives the threshold was chosen "
                                                                  "on; null: not recorded")
    validated = serializers.BooleanField(allow_null=True, help_text="Whether the manifest marks the "
                                                                    "operating point validated; null: it "
                                                                    "does not say")

    class Meta:
        ref_name = "ResultOperatingPoint"

class LabelProbabilityOutput(serializers.Serializer):
    head = serializers.ChoiceField(choices=["superclass", "statements"])
    code = serializers.CharField()
    probability = serializers.FloatField(help_text="Calibrated probability (ensemble mean)")
    spread = serializers.FloatField(allow_null=True, help_text="Std of the members' calibrated probabilities")
    threshold = serializers.FloatField(allow_null=True, help_text="The threshold this result was judged "
                                                                  "against; null: not recorded (see "
                                                                  "thresholds_missing_reason)")
    above_threshold = serializers.BooleanField(allow_null=True, help_text=(
        "probability >= threshold (for NORM, the statement repeats the class, which is the finding "
        "listed)"))
    operating_point = OperatingPointOutput(allow_null=True)

    class Meta:
        ref_name = "ResultLabelProbability"

class ProbabilitiesOutput(serializers.Serializer):
    calibration_method = serializers.CharField(allow_null=True, help_text="As the model manifest says")
    calibration_folds = serializers.ListField(child=serializers.IntegerField(),
                                              help_text="PTB-XL folds the thresholds were fitted on")
    thresholds_missing_reason = serializers.CharField(allow_null=True, help_text=(
        "Why threshold and operating_point are null (a result stored before they were kept); null when "
        "they are given"))
    labels = LabelProbabilityOutput(many=True, help_text="Every diagnostic class and statement, flagged or not")

    class Meta:
        ref_name = "ResultProbabilities"

class NotAssessedOutput(serializers.Serializer):
    code = serializers.CharField(help_text="e.g. not_assessed:PRIOR_ECG")
    pattern = serializers.CharField()
    reason = serializers.CharField()
    source = serializers.CharField()
    labels = serializers.ListField(child=serializers.CharField(),
                                   help_text="The label codes the item is about, if any")

    class Meta:
        ref_name = "ResultNotAssessed"


class InterpretationOutput(serializers.Serializer):
    """One confirmed version of a reading (clinical.models.Interpretation)."""

    class Statement(serializers.Serializer):
        key = serializers.CharField(help_text="head:code, e.g. statements:CLBBB, measurement:WIDE_QRS")
        head = serializers.CharField(help_text="superclass, statements or measurement")
        code = serializers.CharField()
        display = serializers.CharField()
        origin = serializers.ChoiceField(choices=InterpretationRow.Origin.values,
                                         help_text="model / measurement: the computer's; reviewer: added")
        action = serializers.ChoiceField(choices=InterpretationRow.Action.values)

        class Meta:
            ref_name = "InterpretationStatement"

    class Override(serializers.Serializer):
        reviewer = serializers.FloatField(help_text="The reviewer's value (by caliper)")
        computer = serializers.FloatField(allow_null=True, help_text="This system's value, null if not measured")
        derived_from = serializers.CharField(required=False, help_text="Set when the value was derived (a QTc from "
                                                                       "the reviewer's QT and RR)")

        class Meta:
            ref_name = "InterpretationOverride"

    version = serializers.IntegerField()
    status = serializers.ChoiceField(choices=InterpretationRow.Status.values)
    statements = Statement(many=True, help_text="Every computer statement with what the reviewer did, then theirs")
    free_text = serializers.CharField(allow_blank=True)
    measurements = serializers.DictField(child=serializers.FloatField(allow_null=True),
                                         help_text="The scalar measurements as confirmed (ms, /min, degrees)")
    measurement_overrides = serializers.DictField(child=Override())
    comparison = serializers.DictField(help_text=(
        "The serial comparison with the prior ECG stored at confirmation: prior, measurements (each with "
        "significant, rule, source), statements (new / no_longer) and lines (what a report prints); {} without a "
        "prior ECG"))
    prior_ecg = serializers.UUIDField(source="prior_record.public_id", allow_null=True, default=None)
    reviewer = serializers.CharField(source="reviewer.username")
    confirmed_at = serializers.DateTimeField()
    signed_with = serializers.CharField(help_text="password, or api_token:<prefix>")
    reason = serializers.CharField(allow_blank=True, help_text="Why an amendment was made; blank for version 1")
    supersedes = serializers.IntegerField(source="supersedes.version", allow_null=True, default=None)

    class Meta:
        ref_name = "Interpretation"


EX_INTERPRETATION = OpenApiExample("Confirmed", response_only=True, value={
    "version": 2, "status": "amended",
    "statements": [{"key": "superclass:MI", "head": "superclass", "code": "MI", "display": "Myocardial infarction",
                    "origin": "model", "action": "removed"},
                   {"key": "statements:CLBBB", "head": "statements", "code": "CLBBB",
                    "display": "Complete left bundle branch block", "origin": "reviewer", "action": "added"}],
    "free_text": "LBBB, new since 2026-11.", "measurements": {"qrs_ms": 150.0, "qtc_bazett_ms": 470},
    "measurement_overrides": {"qrs_ms": {"reviewer": 150.0, "computer": 138}},
    "comparison": {"lines": ["QRS +40 ms (110 → 150 ms): new QRS widening (now ≥ 120 ms)",
                             "New: Complete left bundle branch block"]},
    "prior_ecg": _ID, "reviewer": "rev-ward-3", "confirmed_at": "2026-12-01T17:02:00Z", "signed_with":
    "api_token:1a2b3c4d5e", "reason": "QRS re-measured in V1", "supersedes": 1})


class EcgResultApi(APIView):
    class Output(Timings):
        class Finding(serializers.Serializer):
            head = serializers.ChoiceField(
                choices=FindingRow.Head.values,
                help_text="superclass / statements: the model's; measurement: a criterion met by this system's "
                          "measurements (mlcore.criteria), with no probability or threshold")
            code = serializers.CharField()
            display = serializers.CharField()
            probability = serializers.FloatField(allow_null=True, help_text="Calibrated; null by measurement")
            threshold = serializers.FloatField(allow_null=True, help_text="The class threshold; null by measurement")
            needs_review = serializers.BooleanField()
            validated = serializers.BooleanField(
                allow_null=True, required=False,
                help_text="false: above the model's threshold, but its operating point is not validated (too few "
                          "such ECGs in the validation data; the page lists it as 'not validated', not as a "
                          "finding); null by measurement or for results stored before operating points were kept")
            evidence = serializers.DictField(required=False, help_text="lead -> relevance share and map")

            class Meta:
                ref_name = "ResultFinding"

        class Measurements(serializers.Serializer):
            heart_rate_bpm = serializers.IntegerField(allow_null=True, help_text="From the median RR, /min")
            rr_ms = serializers.IntegerField(allow_null=True, help_text="Median RR interval, ms")
            p_ms = serializers.IntegerField(allow_null=True, help_text="P-wave duration, ms")
            pr_ms = serializers.IntegerField(allow_null=True, help_text="Earliest P onset to earliest QRS onset, ms")
            qrs_ms = serializers.IntegerField(allow_null=True, help_text="Earliest QRS onset to latest QRS offset, ms")
            qt_ms = serializers.IntegerField(allow_null=True, help_text="Earliest QRS onset to latest T offset, ms")
            qtc_bazett_ms = serializers.IntegerField(allow_null=True, help_text="QT / sqrt(RR in s), ms")
            qtc_fridericia_ms = serializers.IntegerField(allow_null=True, help_text="QT / cbrt(RR in s), ms")
            p_axis_deg = serializers.IntegerField(allow_null=True, help_text="Frontal P axis, degrees")
            qrs_axis_deg = serializers.IntegerField(allow_null=True, help_text="Frontal QRS axis, degrees")
            t_axis_deg = serializers.IntegerField(allow_null=True, help_text="Frontal T axis, degrees")
            st_j_uv = _lead_levels("ST level at J per lead (I ... V6), µV from the PR segment; null where noisy")
            st_j60_uv = _lead_levels("ST level at J+60 ms per lead, µV from the PR segment; null where noisy")
            reasons = serializers.DictField(child=serializers.CharField(),
                                            help_text="Why a value is null (or partly null), by field name")

            class Meta:
                ref_name = "ResultMeasurements"

        class Action(serializers.Serializer):
            rank = serializers.IntegerField()
            action = serializers.CharField()
            urgency = serializers.ChoiceField(choices=Recommendation.Urgency.values)
            reasoning = serializers.CharField()
            source = serializers.CharField()
            triggered_by = serializers.CharField()
            confidence = serializers.FloatField()
            table_version = serializers.CharField()
            kind = serializers.ChoiceField(
                choices=Recommendation.Kind.values,
                help_text="rule: from the action table; quality: repeat the ECG (recording problem); fallback: no "
                          "specific rule or nothing flagged; caveat: how far to trust the findings, never first and "
                          "setting no urgency")
            rule_id = serializers.CharField(help_text="The action table's rule, e.g. statement:AFIB, "
                                                      "combination:AF_RAPID_RATE, caveat:MODELS_DISAGREE")

            class Meta:
                ref_name = "ResultAction"

        id = serializers.UUIDField(source="record.public_id")
        state = serializers.CharField(source="record.job.state")
        model_version = serializers.CharField(source="prediction.model_version", allow_null=True)
        calibration_version = serializers.CharField(source="prediction.calibration_shown", allow_null=True, help_text=(
            "The calibration the probabilities and thresholds came from: \"manifest\" (the model's own, PTB-XL fold "
            "9) or a site version (e.g. site-2) that compliance staff activated; null until the analysis is done"))
        needs_review = serializers.BooleanField()
        top_urgency = serializers.CharField(source="prediction.top_urgency", allow_null=True)
        quality_warnings = serializers.ListField(child=serializers.CharField(), source="quality_warning_messages")
        device_reading = serializers.DictField(
            help_text="What an exported file (GE MUSE, Philips, HL7 aECG, DICOM, SCP-ECG, ...) says besides the "
                      "waveform: device, acquired, the device's own statements and measurements (GE MUSE names, e.g. "
                      "PRInterval), and units: the unit of each measurement (ms, /min, °; '' when the file names "
                      "a measurement we do not know); {} for WFDB, CSV, JSON uploads. Not this system's analysis.")
        analysed_window = AnalysedWindow(source="record.analysed_window",
                                         help_text="The 10 s of the recording these findings are about.")
        reanalysis_of = serializers.UUIDField(source="record.reanalysis_of.public_id", allow_null=True,
                                              help_text="The ECG this one re-analyses, or null.")
        measurements = Measurements(help_text="This system's measurements of the analysed window (mlcore.measure, "
                                               "QRS boundaries as interpretation programs read them); not the "
                                               "device's (device_reading)")
        findings = Finding(many=True, help_text="The model's findings, then those by measurement")
        recommendations = Action(many=True)
        acknowledged_by = serializers.CharField(source="acknowledgement.reviewer.username", allow_null=True)
        acknowledged_at = serializers.DateTimeField(source="acknowledgement.at", allow_null=True)
        probabilities = ProbabilitiesOutput(allow_null=True, help_text=(
            "Every calibrated probability with its threshold and operating point, so that an integrator can apply "
            "its own; null until the analysis is done"))
        evidence_state = serializers.ChoiceField(
            source="prediction.evidence_state", choices=PredictionRow.EvidenceState.values, allow_null=True, help_text=(
                "The per-lead evidence of the findings, computed after the result is stored: pending (findings "
                "and actions are final, evidence=1 gives maps once ready), ready, off (not computed yet: the "
                "submission did not ask for it, e.g. a bulk import; evidence=1, or the result page's first "
                "view, computes it), failed (the result stands without it); null until the analysis is done"))
        evidence_ms = serializers.FloatField(source="prediction.evidence_ms", allow_null=True,
                                             help_text="How long the evidence took on its worker")
        not_assessed = NotAssessedOutput(many=True, help_text=(
            "What this system cannot detect (always given), then the statements of this result without a "
            "validated operating point"))
        interpretation_status = serializers.ChoiceField(choices=["preliminary", "final", "amended"], help_text=(
            "preliminary: the computer's reading, not confirmed; final / amended: a reviewer's signed reading"))
        interpretation = InterpretationOutput(allow_null=True, help_text=(
            "The latest confirmed version of the reading, or null; all versions at .../interpretations/"))

        class Meta:
            ref_name = "Result"

    @extend_schema(operation_id="ecg_result", summary="Findings, ranked actions and (optionally) evidence",
                   parameters=[OpenApiParameter("evidence", bool, description=f"Include per-lead evidence maps "
                                                f"({EVIDENCE_POINTS} points per lead). Of a result whose "
                                                "evidence_state is off, this asks for them: they are computed "
                                                "(pending) and given by a later request.")],
                   responses={200: Output, **ERRORS}, examples=[OpenApiExample("Result", response_only=True, value={
                       "id": _ID, "state": "done", "model_version": "resnet1d-ens3-20261127",
                       "calibration_version": "manifest", "needs_review": False, "top_urgency": "routine",
                       "quality_warnings": [],
                       "device_reading": {"device": "MAC5500", "statements": ["Sinus rhythm"],
                                          "measurements": {"VentricularRate": 48},
                                          "units": {"VentricularRate": "/min"}},
                       "analysed_window": {"start_s": 12.0, "end_s": 22.0, "record_s": 38.0, "chosen_by": "quality"},
                       "reanalysis_of": None, "queued_at": "2026-12-01T09:30:00.120000Z",
                       "started_at": "2026-12-01T09:30:00.310000Z", "finished_at": "2026-12-01T09:30:00.352000Z",
                       "processing_ms": 42.0, "evidence_state": "ready", "evidence_ms": 61.5,
                       "measurements": {"heart_rate_bpm": 72, "rr_ms": 833, "p_ms": 104, "pr_ms": 160, "qrs_ms": 92,
                                        "qt_ms": 380, "qtc_bazett_ms": 416, "qtc_fridericia_ms": 404,
                                        "p_axis_deg": 60, "qrs_axis_deg": 45, "t_axis_deg": 40,
                                        "st_j_uv": {"I": 10, "II": 20, "V2": 60},
                                        "st_j60_uv": {"I": 30, "II": 40, "V2": 110}, "reasons": {}},
                       "findings": [{"head": "superclass", "code": "STTC", "display": "ST/T change",
                                     "probability": 0.71, "threshold": 0.39, "needs_review": False, "validated": True},
                                    {"head": "measurement", "code": "AVB1",
                                     "display": "First-degree AV block, PR 216 ms (> 200)", "probability": None,
                                     "threshold": None, "needs_review": False, "validated": None}],
                       "recommendations": [{"rank": 0, "action": "ST/T changes: correlate with symptoms, drugs and "
                                            "electrolytes and compare with a prior ECG; if chest pain, serial ECGs "
                                            "and hs-troponin", "urgency": "routine",
                                            "reasoning": "ST-T changes are non-specific.", "source": "2023 ESC ACS",
                                            "triggered_by": "superclass:STTC", "confidence": 0.71,
                                            "table_version": "2026.12-3", "kind": "rule",
                                            "rule_id": "superclass:STTC"}],
                       "acknowledged_by": None, "acknowledged_at": None,
                       "probabilities": {
                           "calibration_method": "per-class temperature scaling; thresholds by target (...)",
                           "calibration_folds": [9], "thresholds_missing_reason": None,
                           "labels": [{"head": "superclass", "code": "STTC", "probability": 0.71, "spread": 0.04,
                                       "threshold": 0.393, "above_threshold": True,
                                       "operating_point": {"name": "f1_optimal", "metric": None, "target": None,
                                                           "achieved": None, "achieved_ci90": None,
                                                           "achieved_out_of_sample": None, "support": 231,
                                                           "validated": True}},
                                      {"head": "statements", "code": "AFIB", "probability": 0.03, "spread": 0.01,
                                       "threshold": 0.349, "above_threshold": False,
                                       "operating_point": {"name": "sensitivity_target", "metric": "sensitivity",
                                                           "target": 0.9, "achieved": 0.9,
                                                           "achieved_ci90": [0.85, 0.93],
                                                           "achieved_out_of_sample": 0.89, "support": 151,
                                                           "validated": True}}]},
                       "not_assessed": [{"code": "not_assessed:PRIOR_ECG",
                                         "pattern": "Change from the patient's earlier ECGs",
                                         "reason": "Each ECG is read alone: nothing is compared with a prior ECG.",
                                         "source": "Fourth Universal Definition of Myocardial Infarction (2018)",
                                         "labels": []}],
                       "interpretation_status": "preliminary", "interpretation": None})])
    def get(self, request, public_id):
        record = _record(request, public_id)
        want = str(request.query_params.get("evidence", "")).lower() in ("1", "true", "yes")
        access.ecg_view_audit(actor=request.user, record=record, via=access.API, view="ecg_result", evidence=want)
        prediction = getattr(record, "prediction", None)
        if want and prediction is not None and prediction.evidence_state == PredictionRow.EvidenceState.OFF:
            # Asked for and never computed: computed now (evidence_state "pending"; ask again for the maps).
            prediction = record.prediction = services.evidence_request(prediction=prediction, actor=request.user)
        result = selectors.ecg_result(record=record, evidence_points=EVIDENCE_POINTS if want else None)
        return Response(self.Output(result).data)


class _Newest(CursorPagination):
    page_size = 50
    ordering = "-uploaded_at"
    invalid_cursor_message = "This cursor is not one this API gave out; follow a page's 'next' or 'previous' link."

    def decode_cursor(self, request):
        """DRF's cursor, checked before it reaches a query: its position is an upload time or the cursor is a 400
        (DRF answers 404 for an undecodable cursor, and passes a forged position to the filter, a 500)."""
        try:
            cursor = super().decode_cursor(request)
            if cursor is not None and cursor.position is not None and parse_datetime(cursor.position) is None:
                raise ValueError(cursor.position)
        except (NotFound, ValueError) as exc:
            raise serializers.ValidationError({"cursor": [self.invalid_cursor_message]}) from exc
        return cursor


class PatientEcgListApi(APIView):
    class Output(serializers.Serializer):
        id = serializers.UUIDField(source="public_id")
        uploaded_at = serializers.DateTimeField()
        state = serializers.CharField(source="job.state")
        age_at_ecg = serializers.IntegerField(allow_null=True)  # null: unknown
        sex_at_ecg = serializers.ChoiceField(choices=Patient.Sex.choices, help_text="As given with this ECG.")
        source_format = serializers.CharField()
        analysed_window = AnalysedWindow(read_only=True)
        reanalysis_of = serializers.UUIDField(source="reanalysis_of.public_id", allow_null=True, read_only=True)
        job_url = serializers.SerializerMethodField()

        class Meta:
            ref_name = "PatientEcg"

        def get_job_url(self, obj) -> str:
            return reverse("api:ecg-job", args=[obj.public_id])

    class Filter(serializers.Serializer):
        pseudonym = serializers.CharField(max_length=64, trim_whitespace=False)  # as uploads accept it
        state = serializers.ChoiceField(choices=InferenceJob.State.values, allow_blank=True, required=False)

        class Meta:
            ref_name = "PatientEcgFilter"

    @extend_schema(operation_id="patient_ecg_list", summary="ECGs of one patient, newest first",
                   parameters=[OpenApiParameter("state", str, enum=["queued", "running", "done", "failed"]),
                               OpenApiParameter("cursor", str)],
                   responses={200: inline_serializer("PatientEcgPage", {
                       "next": serializers.CharField(allow_null=True),
                       "previous": serializers.CharField(allow_null=True),
                       "results": Output(many=True)}), **ERRORS},
                   examples=[OpenApiExample("Page", response_only=True, value={
                       "next": "/api/v1/patients/PT-0042/ecgs/?cursor=cD0yMDI2", "previous": None,
                       "results": [{"id": _ID, "uploaded_at": "2026-11-27T16:50:15Z", "state": "done",
                                    "age_at_ecg": 63, "sex_at_ecg": "F", "source_format": "json",
                                    "analysed_window": {"start_s": 0.0, "end_s": 10.0, "record_s": 10.0,
                                                        "chosen_by": "quality"}, "reanalysis_of": None,
                                    "job_url": f"/api/v1/ecgs/{_ID}/job/"}]})])
    def get(self, request, pseudonym):
        f = self.Filter(data={"pseudonym": pseudonym, "state": request.query_params.get("state", "")})
        f.is_valid(raise_exception=True)
        pseudonym = f.validated_data["pseudonym"]
        qs = selectors.ecg_list_for_user(user=request.user).filter(patient__pseudonym=pseudonym)
        if state := f.validated_data.get("state"):
            qs = qs.filter(job__state=state)
        paginator = _Newest()
        page = paginator.paginate_queryset(qs, request, view=self)
        access.ecg_list_audit(actor=request.user, records=page, via=access.API, view="patient_ecgs",
                              patient=pseudonym)
        return paginator.get_paginated_response(self.Output(page, many=True).data)


class EcgAcknowledgeApi(APIView):
    class Input(serializers.Serializer):
        verdict = serializers.ChoiceField(choices=["agree", "disagree"])
        note = serializers.CharField(min_length=3, max_length=5000)
        findings = serializers.DictField(child=serializers.ChoiceField(choices=["agree", "disagree"]), required=False,
                                         help_text="'superclass:MI' -> agree/disagree")
        missed = serializers.ListField(
            child=serializers.CharField(max_length=16), required=False, max_length=32,
            help_text="Diagnostic classes (superclass codes: "
                      f"{', '.join(SUPERCLASS_NAMES)}) and dangerous statements (e.g. AFIB, STE_, 3AVB; the "
                      "action table's dangerous set) present on the ECG that the model did not flag, recorded as "
                      "missed. Only one this result did not flag is accepted; any other code is refused with 400.")

        class Meta:
            ref_name = "AcknowledgeInput"

    class Output(serializers.Serializer):
        # An Acknowledgement (no docstring: it would become the schema's description).
        acknowledged_by = serializers.CharField(source="reviewer.username")
        acknowledged_at = serializers.DateTimeField(source="at")

        class Meta:
            ref_name = "Acknowledged"

    @extend_schema(operation_id="ecg_acknowledge", summary="Acknowledge an urgent result (reviewers)",
                   request=Input, responses={200: Output, **ERRORS, 409: ErrorSerializer},
                   examples=[OpenApiExample("Acknowledge", request_only=True, value={
                       "verdict": "disagree", "note": "Old inferior Q waves, unchanged from 2024.",
                       "findings": {"superclass:MI": "agree", "statements:STE_": "disagree"},
                       "missed": ["HYP", "AFIB"]}),
                             OpenApiExample("Acknowledged", response_only=True, value={
                                 "acknowledged_by": "rev-ward-3", "acknowledged_at": "2026-11-27T17:02:00Z"})])
    def post(self, request, public_id):
        _require(request, "acknowledge_result")
        record = _record(request, public_id)
        prediction = getattr(record, "prediction", None)
        if prediction is None:
            raise NotFound("This ECG has no result yet.")
        s = self.Input(data=request.data)
        s.is_valid(raise_exception=True)
        d = s.validated_data
        # The page's "present but not flagged" boxes, in the service's terms.
        verdicts = dict(d.get("findings") or {}) | {
            (f"{SUPERCLASS_KEY}{code}" if code in SUPERCLASS_NAMES else f"{STATEMENT_KEY}{code}"): MISSED
            for code in d.get("missed", [])}
        ack = result_acknowledge(prediction=prediction, reviewer=request.user, verdict=d["verdict"],
                                 note=d["note"], finding_verdicts=verdicts)
        return Response(self.Output(ack).data)


class _ReadingInput(serializers.Serializer):
    removed = serializers.ListField(child=serializers.CharField(max_length=40), required=False, max_length=100,
                                    help_text="Keys of the computer's statements to remove (the rest are accepted)")
    added = serializers.ListField(child=serializers.CharField(max_length=40), required=False, max_length=100,
                                  help_text="Keys to add from the label space: superclass:CD, statements:CLBBB, "
                                            "measurement:WIDE_QRS")
    free_text = serializers.CharField(required=False, allow_blank=True, max_length=5000, default="")
    measurements = serializers.DictField(child=serializers.FloatField(), required=False, help_text=(
        f"Caliper values that replace the computer's: {', '.join(interpretations.EDITABLE)}"))
    password = serializers.CharField(required=False, write_only=True, help_text=(
        "Only for a browser session: a request with a reviewer's API token is signed by the token"))


def _reading_arguments(request, data: dict) -> dict:
    token = request.auth if isinstance(request.auth, ApiToken) else None
    return {"removed": data.get("removed", []), "added": data.get("added", []), "free_text": data["free_text"],
            "overrides": data.get("measurements") or {}, "api_token": token,
            "password": None if token else data.get("password")}


class EcgInterpretationListApi(APIView):
    @extend_schema(operation_id="ecg_interpretation_list", summary="Every confirmed version of an ECG's reading",
                   responses={200: InterpretationOutput(many=True), **ERRORS}, examples=[EX_INTERPRETATION])
    def get(self, request, public_id):
        record = _record(request, public_id)
        access.ecg_view_audit(actor=request.user, record=record, via=access.API, view="ecg_interpretations")
        return Response(InterpretationOutput(interpretations.interpretation_versions(record=record), many=True).data)


class EcgConfirmApi(APIView):
    class Input(_ReadingInput):
        class Meta:
            ref_name = "ConfirmInput"

    @extend_schema(operation_id="ecg_confirm", summary="Confirm the reading of an ECG (reviewers; signed by the token)",
                   request=Input, responses={201: InterpretationOutput, **ERRORS, 409: ErrorSerializer},
                   examples=[OpenApiExample("Confirm", request_only=True, value={
                       "removed": ["superclass:MI"], "added": ["statements:CLBBB"], "free_text": "LBBB",
                       "measurements": {"qrs_ms": 150}}), EX_INTERPRETATION])
    def post(self, request, public_id):
        _require(request, "acknowledge_result")
        record = _record(request, public_id)
        s = self.Input(data=request.data)
        s.is_valid(raise_exception=True)
        done = interpretations.interpretation_confirm(record=record, reviewer=request.user,
                                                      **_reading_arguments(request, s.validated_data))
        return Response(InterpretationOutput(done).data, status=status.HTTP_201_CREATED)


class EcgAmendApi(APIView):
    class Input(_ReadingInput):
        reason = serializers.CharField(required=False, allow_blank=True, max_length=5000, default="",
                                       help_text="Required: why the confirmed reading is amended")

        class Meta:
            ref_name = "AmendInput"

    @extend_schema(operation_id="ecg_amend", summary="Amend a confirmed reading: a new version with its reason",
                   request=Input, responses={201: InterpretationOutput, **ERRORS, 409: ErrorSerializer},
                   examples=[OpenApiExample("Amend", request_only=True, value={
                       "reason": "QRS re-measured in V1", "removed": ["superclass:MI"],
                       "added": ["statements:CLBBB"], "measurements": {"qrs_ms": 160}}), EX_INTERPRETATION])
    def post(self, request, public_id):
        _require(request, "acknowledge_result")
        record = _record(request, public_id)
        s = self.Input(data=request.data)
        s.is_valid(raise_exception=True)
        done = interpretations.interpretation_amend(record=record, reviewer=request.user,
                                                    reason=s.validated_data["reason"],
                                                    **_reading_arguments(request, s.validated_data))
        return Response(InterpretationOutput(done).data, status=status.HTTP_201_CREATED)


class ModelInfoApi(APIView):
    class Output(serializers.Serializer):
        # selectors.model_info: the served ensemble.
        model_version = serializers.CharField()
        calibration_version = serializers.CharField()
        members = serializers.IntegerField()
        superclasses = serializers.ListField(child=serializers.CharField())
        statements = serializers.DictField(child=serializers.CharField())
        metrics_fold9 = serializers.DictField()
        input = serializers.DictField()

        class Meta:
            ref_name = "ModelInfo"

    @extend_schema(operation_id="model_info", summary="Model version, label space and validation metrics",
                   responses={200: Output, **ERRORS},
                   examples=[OpenApiExample("Model", response_only=True, value={
                       "model_version": "resnet1d-ens3-20261127", "calibration_version": "manifest", "members": 3,
                       "superclasses": ["NORM", "MI", "STTC", "CD", "HYP"], "statements": {"SR": "sinus rhythm"},
                       "metrics_fold9": {"superclass_macro_auc": 0.9365, "statements_macro_auc": 0.8995},
                       "input": {"fs": 100, "n_samples": 1000}})])
    def get(self, request):
        return Response(self.Output(selectors.model_info(ensemble=services.get_ensemble())).data)


class ModelComparisonApi(APIView):
    class Output(serializers.Serializer):
        # monitoring.shadow.comparison: a shadow version against the serving results it ran beside.
        version = serializers.CharField(help_text="The shadowed model version")
        state = serializers.CharField(help_text="Its registry state now (shadow, candidate, serving, retired)")
        n_shadowed = serializers.IntegerField(help_text="ECGs the version analysed in shadow")
        serving_versions = serializers.ListField(child=serializers.CharField(),
                                                 help_text="The serving versions it was compared with")
        agreement = serializers.ListField(child=serializers.DictField(), help_text=(
            "Per label either model flagged: both, neither, only_serving, only_shadow, agreement_pct"))
        urgency_changes = serializers.DictField(help_text="Top urgency, serving x shadow: counts, and how many changed")
        outcomes = serializers.DictField(help_text=(
            "Per superclass on reviewer-confirmed outcomes: each model's AUC (bootstrap CI), sensitivity and "
            "specificity at its own threshold (Wilson CIs), n positives/negatives; too_few below min_outcomes"))
        drift = serializers.DictField(help_text=(
            "Per superclass: the shadow's probability histogram against its fold-9 reference, chi-square p-value"))
        latency_ms = serializers.DictField(help_text="Inference p50/p95 in ms, serving and shadow")

        class Meta:
            ref_name = "ModelComparison"

    @extend_schema(operation_id="model_comparison", summary="Shadow evaluation of a model version against serving",
                   responses={200: Output, **ERRORS})
    def get(self, request, version: str):
        from monitoring import shadow  # monitoring reads clinical's models
        from monitoring.models import ModelVersion

        if not (request.user.has_perm("monitoring.manage_models") or request.user.has_perm("clinical.view_monitoring")):
            raise PermissionDenied("Your role does not allow this operation.")
        row = ModelVersion.objects.filter(version=version).first()
        if row is None:
            raise NotFound("No such model version.")
        return Response(self.Output(shadow.comparison(row)).data)


class _ReportApi(APIView):
    """A report download: the document itself on success, the API's JSON error shape otherwise.

    Content negotiation always picks JSON: the success response is a plain HttpResponse in the document's own type
    (so an Accept of application/pdf is not refused with 406), and errors keep the one error shape.
    """

    fmt = ""

    def perform_content_negotiation(self, request, force=False):
        renderer = JSONRenderer()
        return renderer, renderer.media_type

    def _download(self, request, public_id) -> HttpResponse:
        record = _record(request, public_id, with_signal=True)
        out = report_export(actor=request.user, record=record, fmt=self.fmt, via=access.API,
                            paper=request.query_params.get("paper", "A4"))
        response = HttpResponse(out.content, content_type=out.content_type)
        response["Content-Disposition"] = f'attachment; filename="{out.filename}"'
        response["Cache-Control"] = "no-store"
        response["X-Report-Status"] = out.status
        return response


REPORT_PAPER = OpenApiParameter("paper", str, enum=list(PAPERS), description=(
    "Paper of the PDF (and of the PDF inside the FHIR bundle and the HL7 message): A4 (default) or Letter, "
    "landscape; printed at 100 % it is at true scale (25 mm/s, 10 mm/mV)."))
REPORT_DESCRIPTION = (
    "The same access as the result: the ECG's uploader, or a role that sees every ECG (404 otherwise). 409, code "
    "\"result_not_ready\", while the analysis has no result. Each download is audited (report.downloaded, with "
    "format, paper, report status and version, and the sha256 of the bytes sent). The report is preliminary "
    "(computer statements, unconfirmed) until a reviewer confirms it; header X-Report-Status says which.")
REPORT_ERRORS = {**ERRORS, 409: ErrorSerializer}
EX_NOT_READY = OpenApiExample("Not ready", response_only=True, status_codes=["409"], value={
    "error": {"code": "result_not_ready", "message": "This ECG has no result yet; a report can be made once the "
              "analysis is done.", "fields": {"non_field_errors": ["This ECG has no result yet; a report can be "
                                                                   "made once the analysis is done."]}}})


class EcgReportPdfApi(_ReportApi):
    fmt = "pdf"

    @extend_schema(operation_id="ecg_report_pdf", summary="The report as a one-page PDF (12-lead at paper scale)",
                   description=REPORT_DESCRIPTION, parameters=[REPORT_PAPER],
                   responses={(200, "application/pdf"): OpenApiTypes.BINARY, **REPORT_ERRORS},
                   examples=[EX_NOT_READY])
    def get(self, request, public_id):
        return self._download(request, public_id)


class EcgReportFhirApi(_ReportApi):
    fmt = "fhir"

    @extend_schema(
        operation_id="ecg_report_fhir", summary="The report as a FHIR R4 Bundle (collection)",
        description=REPORT_DESCRIPTION + " The bundle: Patient (pseudonym identifier only), DiagnosticReport "
        "(LOINC 11524-6, category v2-0074 EC, status preliminary/final/amended, conclusion, conclusionCode, the PDF "
        "as presentedForm) and one Observation per measured value (LOINC, UCUM). Validated before it is sent.",
        parameters=[REPORT_PAPER], responses={(200, "application/fhir+json"): OpenApiTypes.OBJECT, **REPORT_ERRORS},
        examples=[EX_NOT_READY, OpenApiExample("Bundle", response_only=True, media_type="application/fhir+json",
                                               value={
            "resourceType": "Bundle", "type": "collection", "timestamp": "2026-12-01T09:31:00+00:00", "entry": [
                {"fullUrl": "urn:uuid:a281c8b4-23ef-5552-9478-176548b82dad", "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:ecgapp:patient-pseudonym", "value": "PT-0042"}]}},
                {"fullUrl": "urn:uuid:8d8026b2-d7fb-5e69-b8c3-fc30add93c90", "resource": {
                    "resourceType": "DiagnosticReport", "status": "preliminary",
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                                              "code": "EC"}]}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": "11524-6",
                                         "display": "EKG study"}]},
                    "subject": {"reference": "urn:uuid:a281c8b4-23ef-5552-9478-176548b82dad"},
                    "issued": "2026-12-01T09:31:00+00:00",
                    "result": [{"reference": "urn:uuid:e26ac5f5-1401-5bc8-a848-47996afd3c9a"}],
                    "conclusion": "PRELIMINARY, not confirmed by a clinician. Computer statements: ST/T change.",
                    "conclusionCode": [{"coding": [{"system": "urn:ecgapp:statement:ptbxl-scp", "code": "STTC",
                                                    "display": "ST/T change"}], "text": "ST/T change"}],
                    "presentedForm": [{"contentType": "application/pdf", "data": "JVBERi0xLjQK...",
                                       "size": 174092}]}},
                {"fullUrl": "urn:uuid:e26ac5f5-1401-5bc8-a848-47996afd3c9a", "resource": {
                    "resourceType": "Observation", "status": "preliminary",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
                    "subject": {"reference": "urn:uuid:a281c8b4-23ef-5552-9478-176548b82dad"},
                    "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org",
                                      "code": "/min"}}}]})])
    def get(self, request, public_id):
        return self._download(request, public_id)


class EcgReportHl7Api(_ReportApi):
    fmt = "hl7"

    @extend_schema(
        operation_id="ecg_report_hl7", summary="The report as an HL7 v2.5 ORU^R01 message (ER7)",
        description=REPORT_DESCRIPTION + " MSH, PID (pseudonym only), OBR (LOINC 11524-6; OBR-25 P/F/C), NTE, OBX "
        "NM per measured value with UCUM units, OBX CE/TX per statement (LOINC 8601-7), OBX ED with the PDF in "
        "Base64. Segments end with CR.",
        parameters=[REPORT_PAPER], responses={(200, "x-application/hl7-v2+er7"): OpenApiTypes.STR, **REPORT_ERRORS},
        examples=[EX_NOT_READY, OpenApiExample("ORU^R01", response_only=True, media_type="x-application/hl7-v2+er7",
                                               value="\r".join((
            "MSH|^~\\&|ECG-DS||||20261201093100+0000||ORU^R01^ORU_R01|14a32603a1724945bf5e|P|2.5",
            "PID|1||PT-0042^^^ECG-DS^PI||PT-0042^^^^^^S",
            "OBR|1||3f2b6a51-8c1e-4b7a-9d0e-2a7f5c9e1b44^ECG-DS|11524-6^EKG study^LN||||||||||||||||||"
            "20261201093100+0000|||P",
            "NTE|1||Preliminary: not confirmed by a clinician. Decision support only: ...",
            "OBX|1|NM|8867-4^Heart rate^LN||72|/min^/min^UCUM|||||P",
            "OBX|2|CE|8601-7^EKG impression^LN|computer|STTC^ST/T change^99ECGSCP||||||P",
            "OBX|3|ED|11524-6^EKG study^LN||ECG-DS^AP^PDF^Base64^JVBERi0xLjQK...||||||P")))])
    def get(self, request, public_id):
        return self._download(request, public_id)
