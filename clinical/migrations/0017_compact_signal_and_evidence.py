"""Compact storage (issue 17): signals as the device's int16 codes (else zlib'd float32), evidence maps as uint8.

The data migration re-encodes every stored row; it is lossless for signals (clinical.compact checks each one
decodes bit for bit) and rounds evidence maps to 1/255 (the JSON kept 1/100). Reversible: backwards, signals go
back to raw float32 bytes and evidence to the JSON of before (maps rounded to two decimals, as it was written).
"""
import numpy as np
from django.db import migrations, models

from clinical import compact

BATCH = 200


def _compact(apps, schema_editor):
    EcgRecord = apps.get_model("clinical", "EcgRecord")
    Prediction = apps.get_model("clinical", "Prediction")
    rows = EcgRecord.objects.filter(signal_encoding=compact.FLOAT32).values_list("pk", "signal", "n_samples")
    for pk, signal, n in rows.iterator(chunk_size=BATCH):
        if len(bytes(signal)) != 12 * n * 4:  # not a stored upload (e.g. bench_monitoring's empty rows): leave it
            continue
        encoding, data = compact.signal_encode(compact.signal_decode(compact.FLOAT32, signal, n))
        EcgRecord.objects.filter(pk=pk).update(signal=data, signal_encoding=encoding)
    for pk, old in Prediction.objects.filter(evidence=b"").values_list("pk", "explanations").iterator(chunk_size=BATCH):
        if not old or not all(isinstance(v, dict) and "lead_maps" in v for v in old.values()):
            continue
        maps = {key: compact.Evidence(gradcam=np.asarray(v["gradcam"], dtype=np.float32),
                                      lead_maps=np.asarray(v["lead_maps"], dtype=np.float32),
                                      lead_relevance=np.asarray(v["lead_relevance"], dtype=np.float32))
                for key, v in old.items()}
        explanations, evidence = compact.evidence_encode(maps)
        Prediction.objects.filter(pk=pk).update(explanations=explanations, evidence=evidence)


def _expand(apps, schema_editor):
    EcgRecord = apps.get_model("clinical", "EcgRecord")
    Prediction = apps.get_model("clinical", "Prediction")
    rows = EcgRecord.objects.exclude(signal_encoding=compact.FLOAT32).values_list("pk", "signal", "signal_encoding",
                                                                                 "n_samples")
    for pk, signal, encoding, n in rows.iterator(chunk_size=BATCH):
        raw = compact.signal_decode(encoding, signal, n).astype("<f4").tobytes()
        EcgRecord.objects.filter(pk=pk).update(signal=raw, signal_encoding=compact.FLOAT32)
    for pk, index, evidence in Prediction.objects.exclude(evidence=b"").values_list(
            "pk", "explanations", "evidence").iterator(chunk_size=BATCH):
        old = {}
        for key in index:
            ex = compact.evidence_decode(index, evidence, key)
            old[key] = {"gradcam": np.round(ex.gradcam.astype(np.float64), 2).tolist(),
                        "lead_relevance": np.round(ex.lead_relevance.astype(np.float64), 3).tolist(),
                        "lead_maps": np.round(ex.lead_maps.astype(np.float64), 2).tolist()}
        Prediction.objects.filter(pk=pk).update(explanations=old, evidence=b"")


class Migration(migrations.Migration):

    dependencies = [
        ('clinical', '0016_import_evidence_option_uploader_sha256'),
    ]

    operations = [
        migrations.AddField(
            model_name='ecgrecord',
            name='signal_encoding',
            field=models.CharField(db_default='float32', default='float32', max_length=16),
        ),
        migrations.AddField(
            model_name='prediction',
            name='evidence',
            field=models.BinaryField(blank=True, db_default=b'', default=b''),
        ),
        migrations.RunPython(_compact, _expand, elidable=True),
    ]
