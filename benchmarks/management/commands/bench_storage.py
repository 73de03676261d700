"""Bytes per ECG in the database, before and after compact storage (issue 17), for 10 s 500 Hz uploads.

`manage.py bench_storage [--records500 DIR] [--n 20]`: each upload (PTB-XL records500 WFDB records when DIR is given,
else synthetic 500 Hz ECGs from clinical.demo) goes through ecg_submit and inference with evidence, into a
throwaway database. Per ECG: the signal, the evidence (JSON index + maps) and the measurements as stored now, and
as the same values were stored before (float32 signal bytes; evidence JSON with two-decimal maps), and the ratio
of the total to the upload's own signal as int16 (12 × n × 2 bytes). On PostgreSQL it also prints
pg_column_size, the bytes on disk after PostgreSQL's own TOAST compression.
"""
from __future__ import annotations

import json
import statistics
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection

from benchmarks.stack import throwaway_database


def _json_bytes(value) -> int:
    return len(json.dumps(value, separators=(", ", ": ")).encode())  # as Django writes a JSONField


class Command(BaseCommand):
    help = "Bytes per ECG stored (signal, evidence, measurements) before/after compact storage, 10 s at 500 Hz."

    def add_arguments(self, parser):
        parser.add_argument("--records500", type=Path, default=None,
                            help="a folder of 500 Hz WFDB records (PTB-XL records500); else synthetic ECGs")
        parser.add_argument("--n", type=int, default=20)

    def handle(self, *args, records500: Path | None, n: int, **options):
        if connection.vendor == "sqlite":
            tmp = Path(tempfile.mkdtemp(prefix="ecgapp-bench-storage-"))
            settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = str(tmp / "ecgapp.sqlite3")
        with throwaway_database():
            rows = self._run(records500, n)
        keys = ("signal", "evidence", "measurements", "total")
        source = f"PTB-XL records500 ({records500})" if records500 else "synthetic clinical.demo ECGs"
        self.stdout.write(f"bytes per ECG, median of {len(rows)} 10 s 500 Hz uploads ({source}, {connection.vendor}, "
                          f"evidence for the top findings, median {statistics.median(r['explained'] for r in rows)}):")
        int16 = statistics.median(r["int16"] for r in rows)
        for when in ("before", "after"):
            med = {k: statistics.median(r[when][k] for r in rows) for k in keys}
            self.stdout.write(f"  {when:<7}" + "".join(f"{k} {med[k]:>9,.0f}   " for k in keys)
                              + f"total / int16 signal {med['total'] / int16:.2f}x")
        if rows and "disk" in rows[0]:
            med = {k: statistics.median(r["disk"][k] for r in rows) for k in keys}
            self.stdout.write("  on disk (pg_column_size, after TOAST) "
                              + "".join(f"{k} {med[k]:>9,.0f}   " for k in keys)
                              + f"total / int16 signal {med['total'] / int16:.2f}x")
        worst = max(rows, key=lambda r: r["after"]["total"])
        self.stdout.write(f"  largest after: {worst['after']['total']:,} bytes ({worst['explained']} findings with "
                          f"evidence): {worst['after']['total'] / worst['int16']:.2f}x its int16 signal")
        names = sorted({k for r in rows for k in r["alternatives"]})
        self.stdout.write("  the signal in other encodings (median): " + ", ".join(
            f"{k} {statistics.median(r['alternatives'][k] for r in rows if k in r['alternatives']):,.0f}"
            for k in names) + f"; stored (delta-coded codes + zlib) "
            f"{statistics.median(r['after']['signal'] for r in rows):,.0f}")
        encodings = sorted({r["encoding"] for r in rows})
        self.stdout.write(f"  the upload's own signal as int16: {int16:,.0f} bytes; signal encodings: {encodings}; "
                          f"every signal read back bit for bit: {all(r['exact'] for r in rows)}")

    def _run(self, records500: Path | None, n: int) -> list[dict]:
        from django.contrib.auth.models import Group, User

        from clinical import compact, demo, services
        from clinical.intake import parse_upload
        from clinical.models import Prediction
        from clinical.roles import roles_ensure

        roles_ensure()
        actor = User.objects.create_user("bench-storage", password="bench-password-1")
        actor.groups.add(Group.objects.get(name="clinician"))
        if records500:
            uploads = [{"hea": (h.name, h.read_bytes()), "dat": (h.with_suffix(".dat").name,
                                                                h.with_suffix(".dat").read_bytes())}
                       for h in sorted(records500.rglob("*.hea"))[:n]]
        else:
            uploads = [{"json": (f"s{i}.json", demo.as_json(demo.synthesize(demo.CASES[i % len(demo.CASES)], fs=500,
                                                                            seed=i), 500))} for i in range(n)]
        rows = []
        for i, files in enumerate(uploads):
            record = services.ecg_submit(actor=actor, pseudonym=f"BENCH-{i}", age=60, sex="F", files=files, fs=None,
                                         queue_inference=False)
            services.inference_run(job_id=record.job.id)
            record.refresh_from_db()
            pred = Prediction.objects.get(record=record)
            signal = parse_upload(files=files, fs=None).signal
            old_evidence = {}
            for key in pred.explanations:
                ex = pred.evidence_for(key)
                old_evidence[key] = {"gradcam": np.round(ex.gradcam.astype(np.float64), 2).tolist(),
                                     "lead_relevance": np.round(ex.lead_relevance.astype(np.float64), 3).tolist(),
                                     "lead_maps": np.round(ex.lead_maps.astype(np.float64), 2).tolist()}
            measurements = _json_bytes(record.measurements)
            before = {"signal": signal.size * 4, "evidence": _json_bytes(old_evidence), "measurements": measurements}
            after = {"signal": len(bytes(record.signal)),
                     "evidence": _json_bytes(pred.explanations) + len(bytes(pred.evidence)),
                     "measurements": measurements}
            alternatives = {"float32 + zlib": len(zlib.compress(signal.tobytes(), compact.ZLIB_LEVEL))}
            if record.signal_encoding == compact.INT16_DELTA_ZLIB:  # the same codes without the differencing
                gains = np.asarray(struct.unpack_from("<12d", bytes(record.signal)))[:, None]
                codes = np.round(signal.astype(np.float64) * gains).astype("<i2")
                alternatives["int16 + zlib"] = len(zlib.compress(codes.tobytes(), compact.ZLIB_LEVEL))
            row = {"int16": signal.size * 2, "alternatives": alternatives, "explained": len(pred.explanations),
                   "encoding": record.signal_encoding,
                   "exact": np.array_equal(record.signal_array(), signal),
                   "before": before | {"total": sum(before.values())}, "after": after | {"total": sum(after.values())}}
            if connection.vendor == "postgresql":
                with connection.cursor() as cur:
                    cur.execute("SELECT pg_column_size(r.signal), pg_column_size(p.explanations) + "
                                "pg_column_size(p.evidence), pg_column_size(r.measurements) FROM clinical_ecgrecord r "
                                "JOIN clinical_prediction p ON p.record_id = r.id WHERE r.id = %s", [record.pk])
                    s, e, m = cur.fetchone()
                row["disk"] = {"signal": s, "evidence": e, "measurements": m, "total": s + e + m}
            rows.append(row)
        return rows
