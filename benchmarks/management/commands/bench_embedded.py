"""Load on the embedded default exactly as a new user runs it: `manage.py serve` (SQLite, filesystem broker, one
supervised worker) in a fresh folder, N clients for S seconds, half uploading through the page (log in, upload
form, result page, status polls) and half through the API (JSON submit, job polls, result). One upload in five is
bad on purpose (a lead missing) and must be refused with 400 and audited. Every accepted upload must get its
result. Prints requests, responses >= 500, transport errors and p50/p95 per kind of request."""
from __future__ import annotations

import http.cookiejar
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import defaultdict

import numpy as np
from django.core.management.base import BaseCommand, CommandError

from clinical import demo
from clinical.audit import AuditAction
from clinical.management.embedded import EmbeddedApp
from mlcore.preprocess import LEADS

PASSWORD = "embedded-password-1"


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[int, int] = defaultdict(int)
        self.server_errors: list[str] = []
        self.transport_errors: list[str] = []
        self.accepted: list[str] = []
        self.refused = 0
        self.unexpected: list[str] = []

    def add(self, kind: str, status: int, seconds: float, what: str = "") -> None:
        with self.lock:
            self.latency[kind].append(seconds)
            self.status[status] += 1
            if status >= 500:
                self.server_errors.append(f"{kind} {status} {what}")


class Client:
    """One person (page) or integration (API), with its own cookies or token."""

    def __init__(self, base: str, tally: Tally, token: str = "") -> None:
        self.base, self.tally, self.token = base, tally, token
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)

    def request(self, kind: str, method: str, path: str, data: bytes | None = None,
                headers: dict | None = None) -> tuple[int, bytes, dict]:
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        t0 = time.perf_counter()
        try:
            with self.opener.open(req, timeout=120) as resp:
                status, body, h = resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            status, body, h = exc.code, exc.read(), dict(exc.headers)
        except OSError as exc:
            with self.tally.lock:
                self.tally.transport_errors.append(f"{kind}: {exc}")
            raise
        self.tally.add(kind, status, time.perf_counter() - t0, body[:200].decode(errors="replace"))
        return status, body, h

    def csrf(self) -> str:
        return next((c.value for c in self.jar if c.name == "csrftoken"), "")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = []
    for k, v in fields.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for field, name, data in files:
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
                   f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


def _signals(n: int = 6) -> list[np.ndarray]:
    return [demo.synthesize(demo.CASES[i % len(demo.CASES)], fs=500, seed=i) for i in range(n)]


def page_client(c: Client, username: str, stop: threading.Event, sigs, poll: float, n: list[int]) -> None:
    c.request("page", "GET", "/login/")
    body = urllib.parse.urlencode({"username": username, "password": PASSWORD,
                                   "csrfmiddlewaretoken": c.csrf()}).encode()
    status, _, _ = c.request("login", "POST", "/login/", body, {"Content-Type": "application/x-www-form-urlencoded",
                                                                "Referer": c.base + "/login/"})
    if status != 302:
        raise CommandError(f"login as {username} answered {status}")
    i = 0
    while not stop.is_set():
        i += 1
        bad = i % 5 == 0
        sig = sigs[i % len(sigs)]
        csv = demo.as_csv(sig[:11] if bad else sig)  # bad: V6 missing
        if bad:
            csv = re.sub(rb",V6\n", b"\n", csv, count=1)
        c.request("page", "GET", "/ecgs/new/")
        data, ctype = _multipart({"csrfmiddlewaretoken": c.csrf(), "pseudonym": f"LOAD-{username}-{i}",
                                  "age": "61", "sex": "F", "fs": "500"}, [("files", "ecg.csv", csv)])
        status, _, headers = c.request("submit_page", "POST", "/ecgs/new/", data,
                                       {"Content-Type": ctype, "Referer": c.base + "/ecgs/new/"})
        if bad:
            _expect_refusal(c.tally, status, "page")
            continue
        if status != 302:
            c.tally.unexpected.append(f"page upload answered {status}")
            continue
        detail = urllib.parse.urlparse(headers["Location"]).path
        c.tally.accepted.append(detail.strip("/").split("/")[-1])
        c.request("page", "GET", detail)  # the result page while the worker writes the result
        while not stop.is_set():
            _, body, _ = c.request("poll", "GET", detail + "status/")
            if json.loads(body)["state"] in ("done", "failed"):
                c.request("page", "GET", detail)
                break
            time.sleep(poll)
        with c.tally.lock:
            n[0] += 1


def api_client(c: Client, tag: str, stop: threading.Event, sigs, poll: float, n: list[int]) -> None:
    i = 0
    while not stop.is_set():
        i += 1
        bad = i % 5 == 0
        sig = sigs[i % len(sigs)]
        leads = {lead: np.round(sig[j], 3).tolist() for j, lead in enumerate(LEADS) if not (bad and lead == "V6")}
        body = json.dumps({"fs": 500, "units": "mV", "patient": {"id": f"LOAD-{tag}-{i}", "age": 58, "sex": "M"},
                           "leads": leads}).encode()
        status, resp, _ = c.request("submit_api", "POST", "/api/v1/ecgs/", body, {"Content-Type": "application/json"})
        if bad:
            _expect_refusal(c.tally, status, "api")
            continue
        if status != 202:
            c.tally.unexpected.append(f"API submit answered {status}: {resp[:200]!r}")
            continue
        job = json.loads(resp)
        c.tally.accepted.append(job["id"])
        while not stop.is_set():
            _, resp, _ = c.request("poll", "GET", f"/api/v1/ecgs/{job['id']}/job/")
            job = json.loads(resp)
            if job["state"] in ("done", "failed"):
                c.request("result_api", "GET", job["result_url"])
                break
            time.sleep(poll)
        with c.tally.lock:
            n[0] += 1


def _expect_refusal(tally: Tally, status: int, where: str) -> None:
    with tally.lock:
        if status == 400:
            tally.refused += 1
        else:
            tally.unexpected.append(f"bad {where} upload answered {status}, not 400")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q)) if values else float("nan")


class RunningApp:
    """An app already serving (e.g. `make run`) at base_url, on this process's settings and database: the
    benchmark adds its own users and tokens to it and reads the outcome from the same database."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")
        self.token = ""

    def prepare(self, users: tuple[tuple[str, str], ...] = ()) -> None:
        from django.contrib.auth.models import Group, User

        from clinical.roles import roles_ensure

        roles_ensure()
        tag = uuid.uuid4().hex[:6]
        api = User.objects.create_user(f"load-api-{tag}", password=None)
        api.groups.add(Group.objects.get(name="integrator"))
        self.api_user = api.username
        for username, role in users:
            u, _ = User.objects.get_or_create(username=username)
            u.set_password(PASSWORD)
            u.save()
            u.groups.add(Group.objects.get(name=role))
        self.token = self.new_token("load0")

    def new_token(self, name: str) -> str:
        from django.contrib.auth.models import User

        from clinical.tokens import api_token_create

        return api_token_create(user=User.objects.get(username=self.api_user), name=name)[1]

    def start(self) -> None:
        from django.db import connection

        connection.close()  # SQLite: let the server's writers have the file

    def jobs(self, public_ids: list[str] | None = None) -> dict[str, int]:
        """States of the benchmark's own uploads (the app holds others: the demo's)."""
        from django.db.models import Count

        from clinical.models import InferenceJob

        rows = InferenceJob.objects.filter(record__public_id__in=public_ids or [])
        return {r["state"]: r["n"] for r in rows.values("state").annotate(n=Count("id"))}

    def refusals(self) -> int:
        from clinical.models import AuditEvent

        return AuditEvent.objects.filter(action=AuditAction.ECG_UPLOAD_REFUSED).count()

    def audit_verify(self) -> str:
        from clinical.audit import audit_verify

        return audit_verify()[2]

    def close(self) -> None:
        pass


class FreshApp(EmbeddedApp):
    def jobs(self, public_ids: list[str] | None = None) -> dict[str, int]:
        return super().jobs()  # a fresh app holds only the benchmark's uploads

    def new_token(self, name: str) -> str:
        return self.manage("api_token", "create", "--user", "embedded-api", "--name", name).split()[0]

    def refusals(self) -> int:
        return self.sql("SELECT count(*) FROM clinical_auditevent WHERE action = 'ecg.upload_refused'")[0][0]

    def audit_verify(self) -> str:
        return self.manage("audit_verify").strip()


class Command(BaseCommand):
    help = "Load the embedded default (manage.py serve) with concurrent page and API users; prints errors and latency."

    def add_arguments(self, parser):
        parser.add_argument("--clients", type=int, default=10, help="half page users, half API clients")
        parser.add_argument("--seconds", type=float, default=60)
        parser.add_argument("--poll", type=float, default=0.5, help="seconds between status polls")
        parser.add_argument("--settle", type=float, default=600, help="seconds to wait for the last results")
        parser.add_argument("--url", default="",
                            help="load an app that is already serving here (e.g. `make run`: run this command "
                                 "with the same environment, so it shares the database) instead of a fresh one")

    def handle(self, *args, clients: int, seconds: float, poll: float, settle: float, url: str, **options):
        n_page = clients // 2
        n_api = clients - n_page
        app = RunningApp(url) if url else FreshApp()
        tally = Tally()
        try:
            app.prepare(users=tuple((f"load-dr{k}", "clinician") for k in range(n_page)))
            tokens = [app.token] + [app.new_token(f"load{k}") for k in range(1, n_api)]
            refused_before = app.refusals()
            app.start()
            sigs = _signals()
            stop = threading.Event()
            done = [0]
            threads = [threading.Thread(target=page_client, args=(Client(app.base, tally), f"load-dr{k}", stop,
                                                                   sigs, poll, done)) for k in range(n_page)]
            threads += [threading.Thread(target=api_client, args=(Client(app.base, tally, tokens[k]), f"api{k}",
                                                                  stop, sigs, poll, done)) for k in range(n_api)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            time.sleep(seconds)
            stop.set()
            for t in threads:
                t.join(180)
            wall = time.perf_counter() - started
            # Every accepted upload must reach its result (the clients stopped polling at the deadline).
            deadline = time.monotonic() + settle
            while time.monotonic() < deadline:
                states = app.jobs(tally.accepted)
                if sum(v for k, v in states.items() if k not in ("done", "failed")) == 0:
                    break
                time.sleep(1)
            states = app.jobs(tally.accepted)
            refusals_audited = app.refusals() - refused_before
            chain_ok = app.audit_verify()
        finally:
            app.close()
        total = sum(tally.status.values())
        where = f"the app at {url}" if url else "a fresh embedded default (manage.py serve: SQLite, filesystem broker)"
        self.stdout.write(f"{where}, {n_page} page users + {n_api} API clients for {seconds:.0f} s "
                          f"({wall:.0f} s with the last requests):")
        self.stdout.write(f"  requests {total}; responses >= 500: {len(tally.server_errors)}; transport errors: "
                          f"{len(tally.transport_errors)}; status counts {dict(sorted(tally.status.items()))}")
        for kind in ("login", "page", "submit_page", "submit_api", "poll", "result_api"):
            lat = tally.latency.get(kind, [])
            if lat:
                self.stdout.write(f"  {kind:<11} n={len(lat):<5} p50 {_pct(lat, 50):7.0f} ms   "
                                  f"p95 {_pct(lat, 95):7.0f} ms")
        self.stdout.write(f"  uploads accepted {len(tally.accepted)}, results {states.get('done', 0)} done / "
                          f"{states.get('failed', 0)} failed / "
                          f"{sum(v for k, v in states.items() if k not in ('done', 'failed'))} unfinished; "
                          f"bad uploads refused {tally.refused}, refusals audited {refusals_audited}; {chain_ok}")
        problems = tally.server_errors[:5] + tally.transport_errors[:5] + tally.unexpected[:5]
        for p in problems:
            self.stderr.write(f"  {p}")
        ok = (not tally.server_errors and not tally.transport_errors and not tally.unexpected
              and states.get("done", 0) == len(tally.accepted) and refusals_audited == tally.refused)
        self.stdout.write("PASS" if ok else "FAIL")
        if not ok:
            raise CommandError("the embedded default did not hold up (see above)")
