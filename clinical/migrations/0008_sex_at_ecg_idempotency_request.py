"""Each ECG keeps the sex given with it; an Idempotency-Key keeps the hash of the request it was first used with."""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def sex_at_ecg_from_patient(apps, schema_editor):
    """Existing ECGs take their patient's current sex: the best that is known of what was given with them."""
    EcgRecord = apps.get_model("clinical", "EcgRecord")
    Patient = apps.get_model("clinical", "Patient")
    EcgRecord.objects.update(sex_at_ecg=Subquery(Patient.objects.filter(pk=OuterRef("patient_id")).values("sex")[:1]))


class Migration(migrations.Migration):

    dependencies = [
        ('clinical', '0007_age_unknown'),
    ]

    operations = [
        migrations.AddField(
            model_name='idempotencykey',
            name='request_sha256',
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddField(
            model_name='ecgrecord',
            name='sex_at_ecg',
            field=models.CharField(choices=[('M', 'Male'), ('F', 'Female'), ('U', 'Unknown')], default='U',
                                   max_length=1),
            preserve_default=False,
        ),
        migrations.RunPython(sex_at_ecg_from_patient, migrations.RunPython.noop, elidable=True),
    ]
