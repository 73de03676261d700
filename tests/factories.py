"""factory_boy factories for the main models: users with roles, patients, ECG records, jobs and stored results.

Each builds a valid row with the fewest fields a test must name; a test states only what it is about
(``PredictionFactory(record=record, top_urgency="immediate")``). Records built here skip intake (no model, no
measurements): tests of intake itself go through ``services.ecg_submit``.
"""
from __future__ import annotations

import functools

import factory
import numpy as np
from django.contrib.auth.models import Group, User
from django.utils import timezone

from clinical import compact, demo
from clinical.models import EcgRecord, Finding, InferenceJob, Patient, Prediction, Recommendation
from clinical.roles import roles_ensure

PASSWORD = "pw-for-tests-1"


class UserFactory(factory.django.DjangoModelFactory):
    """A user in one role's group (``UserFactory(role="reviewer")``); the roles' groups are made on first use."""

    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"user-{n}")
    role = "clinician"

    @classmethod
    def _create(cls, model_class, *args, role: str = "clinician", **kwargs):
        if not Group.objects.filter(name=role).exists():  # after a flush (tests/conftest.py: django_db_setup)
            roles_ensure()
        user = model_class.objects.create_user(*args, password=PASSWORD, **kwargs)
        user.groups.add(Group.objects.get(name=role))
        return user


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient
        django_get_or_create = ("pseudonym",)

    pseudonym = factory.Sequence(lambda n: f"PT-F{n:04d}")
    age = 64
    sex = Patient.Sex.MALE


@functools.lru_cache(maxsize=4)
def _signal_fields(fs: float) -> dict:
    """The first demo case, 10 s at ``fs`` (12, n) mV, encoded as stored; made once per rate."""
    return EcgRecord.signal_fields(demo.synthesize(demo.CASES[0], fs=int(fs), seed=1).astype(np.float32))


class EcgRecordFactory(factory.django.DjangoModelFactory):
    """A stored 10 s, 500 Hz synthetic ECG (the first demo case), its patient's age and sex at acquisition."""

    class Meta:
        model = EcgRecord

    patient = factory.SubFactory(PatientFactory)
    uploaded_by = factory.SubFactory(UserFactory)
    age_at_ecg = factory.SelfAttribute("patient.age")
    sex_at_ecg = factory.SelfAttribute("patient.sex")
    source_format = "json"
    source_files = factory.LazyFunction(lambda: ["ecg.json"])
    upload_sha256 = factory.Sequence(lambda n: f"{n:064x}")
    fs = 500.0
    n_samples = factory.LazyAttribute(lambda o: int(o.fs * 10))
    signal = factory.LazyAttribute(lambda o: _signal_fields(o.fs)["signal"])
    signal_encoding = factory.LazyAttribute(lambda o: _signal_fields(o.fs)["signal_encoding"])
    quality = factory.LazyFunction(lambda: {"usable": True, "issues": []})


class InferenceJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = InferenceJob

    record = factory.SubFactory(EcgRecordFactory)
    state = InferenceJob.State.QUEUED


class PredictionFactory(factory.django.DjangoModelFactory):
    """A stored result with ready (zero) evidence for superclass:MI, without running the model."""

    class Meta:
        model = Prediction

    record = factory.SubFactory(EcgRecordFactory)
    model_version = "test"
    superclass = factory.LazyFunction(lambda: {"MI": 0.9})
    statements = factory.LazyFunction(dict)
    spread = factory.LazyFunction(dict)
    embedding = factory.LazyFunction(list)
    evidence_state = Prediction.EvidenceState.READY
    top_urgency = "immediate"
    inference_ms = 1.0

    @factory.lazy_attribute
    def explanations(self):
        return _mi_evidence()[0]

    @factory.lazy_attribute
    def evidence(self):
        return _mi_evidence()[1]


def _mi_evidence() -> tuple[dict, bytes]:
    return compact.evidence_encode({"superclass:MI": compact.Evidence(
        gradcam=np.zeros(1000), lead_maps=np.zeros((12, 1000)), lead_relevance=np.full(12, 1 / 12))})


class FindingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Finding

    prediction = factory.SubFactory(PredictionFactory)
    head = "superclass"
    code = "MI"
    display = "Myocardial infarction"
    probability = 0.9
    threshold = 0.4
    spread = 0.02
    rank = 0


class RecommendationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Recommendation

    prediction = factory.SubFactory(PredictionFactory)
    rank = 0
    action = "Act now"
    urgency = factory.SelfAttribute("prediction.top_urgency")
    reasoning = "r"
    source = "s"
    triggered_by = "superclass:MI"
    confidence = 0.9
    table_version = "t"
    rule_id = "superclass:MI"


def result_stored(record: EcgRecord, urgency: str = "immediate", created_at=None) -> Prediction:
    """A result for ``record`` with one finding (MI) and one action at ``urgency``, its job done: what a worker would
    have stored, for the workflow tests that are not about the model."""
    pred = PredictionFactory(record=record, top_urgency=urgency)
    if created_at is not None:
        Prediction.objects.filter(pk=pred.pk).update(created_at=created_at)
        pred.refresh_from_db()
    FindingFactory(prediction=pred)
    RecommendationFactory(prediction=pred, urgency=urgency)
    InferenceJob.objects.filter(record=record).update(state="done", progress=100, finished_at=timezone.now())
    return pred
