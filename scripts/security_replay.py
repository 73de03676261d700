#!/usr/bin/env python3
"""Replay issue 12's security table against a running ECG-DS server on this machine; one line per row.

    make run                                   # in another terminal: http://127.0.0.1:8000
    python scripts/security_replay.py --manage manage.py

Each row is checked against the secure behaviour the fix must have: "row N PASS/FAIL/SKIP: <what it checked>".
The exit status is 1 when any row FAILs. It only talks to loopback addresses (127.0.0.0/8, ::1; refused in code
otherwise), sends a fixed number of requests and stops at --time-limit. It uses the demo accounts (clinician,
reviewer, compliance, admin / demo-password-1) and creates what it needs through the HTTP API and pages; with
--manage it also runs `manage.py` to create clinician2, victim1 and victim2 and to run audit_verify (row 12).

Plain Python (urllib): no dependency beyond the standard library.
"""
from __future__ import annotations

import argparse
import csv
import functools
import http.client
import http.cookiejar
import io
import ipaddress
import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field

PASSWORD = "demo-password-1"
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
THROTTLED = re.compile(r"too many|throttl|locked|try again", re.I)
BOM = b"\xef\xbb\xbf"
# Loopback source addresses the rows use, so one row's failed logins never throttle another row's address.
SRC = {"main": "127.0.0.1", "row1": "127.0.0.11", "row2": "127.0.0.12", "row3-attacker": "127.0.0.13",
       "row3-victim": "127.0.0.14", "row8": "127.0.0.9"}


class NotLoopback(ValueError):
    pass


def loopback_only(host: str) -> str:
    """The address to use for host, refusing anything that is not 127.0.0.0/8 or ::1 (names are not resolved,
    so a DNS answer cannot send the replay elsewhere; "localhost" means 127.0.0.1)."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError as exc:
        raise NotLoopback(f"refusing {host!r}: only loopback addresses (127.0.0.0/8, ::1) are replayed against") \
            from exc
    if not addr.is_loopback:
        raise NotLoopback(f"refusing {host}: only loopback addresses (127.0.0.0/8, ::1) are replayed against")
    return str(addr)


def target_check(url: str) -> str:
    """The base URL with its host checked (http only: nothing here needs TLS to a loopback server)."""
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise NotLoopback(f"refusing {url!r}: give http://127.0.0.1:PORT (or another loopback address)")
    host = loopback_only(u.hostname)
    netloc = f"[{host}]" if ":" in host else host
    return f"http://{netloc}:{u.port or 80}"


class Budget:
    """A fixed number of requests and a wall-clock limit for the whole replay."""

    def __init__(self, max_requests: int, seconds: float):
        self.left = max_requests
        self.deadline = time.monotonic() + seconds

    def spend(self) -> float:
        remaining = self.deadline - time.monotonic()
        if self.left <= 0 or remaining <= 0:
            raise TimeoutError("request budget or time limit reached")
        self.left -= 1
        return min(20.0, remaining)


@dataclass
class Resp:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    request_id: str = ""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # the rows look at the 302 itself


class _SourceHTTPHandler(urllib.request.HTTPHandler):
    """Connects from a chosen loopback source address, to stand for a second client."""

    def __init__(self, source: str):
        super().__init__()
        self.source = source

    def http_open(self, req):
        return self.do_open(functools.partial(http.client.HTTPConnection, source_address=(self.source, 0)), req)


@dataclass
class Client:
    base: str
    budget: Budget
    source: str = "127.0.0.1"
    token: str = ""
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def __post_init__(self):
        loopback_only(self.source)
        if ":" in urllib.parse.urlsplit(self.base).hostname:  # ::1 target: no IPv4 source addresses
            self.source = "::1"
        self.opener = urllib.request.build_opener(_SourceHTTPHandler(self.source), _NoRedirect(),
                                                  urllib.request.HTTPCookieProcessor(self.jar))

    def cookie(self, name: str) -> str:
        return next((c.value for c in self.jar if c.name == name), "")

    def request(self, method: str, path: str, *, body: bytes | None = None, headers: dict | None = None,
                form: dict | None = None, json_body=None, raw_path: bool = False) -> Resp:
        if not path.startswith("/"):
            raise NotLoopback(f"refusing {path!r}: paths only, the target is fixed")
        hdrs = {"X-Request-ID": f"replay{uuid.uuid4().hex}", "Referer": self.base + "/"}
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        if method != "GET" and self.cookie("csrftoken"):
            hdrs["X-CSRFToken"] = self.cookie("csrftoken")
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        hdrs.update(headers or {})
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=hdrs)
        timeout = self.budget.spend()
        try:
            with self.opener.open(req, timeout=timeout) as r:
                out = Resp(r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            out = Resp(e.code, e.headers, e.read())
        out.request_id = out.headers.get("X-Request-ID", hdrs["X-Request-ID"])
        return out

    def login(self, username: str, password: str, path: str = "/login/") -> Resp:
        page = self.request("GET", path)
        m = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
        token = m.group(1).decode() if m else self.cookie("csrftoken")
        return self.request("POST", path, form={"csrfmiddlewaretoken": token, "username": username,
                                                "password": password, "next": ""})


def logged_in(r: Resp) -> bool:
    return r.status == 302 and "login" not in (r.headers.get("Location") or "")


def synthetic_leads(fs: int = 100, seconds: int = 10, hr: float = 72.0) -> dict[str, list[float]]:
    """A plausible 12-lead ECG in mV: a QRS spike and a T wave per beat, a different gain per lead."""
    n, period = fs * seconds, 60.0 / hr
    out = {}
    for k, lead in enumerate(LEADS):
        gain = 0.4 + 0.1 * k if k % 3 else -0.6
        samples = []
        for i in range(n):
            phase = (i / fs % period) / period
            v = 1.2 * math.exp(-((phase - 0.3) / 0.02) ** 2) + 0.3 * math.exp(-((phase - 0.6) / 0.08) ** 2)
            samples.append(round(gain * v + 0.01 * math.sin(i * 0.7 + k), 4))
        out[lead] = samples
    return out


def submit_json(c: Client, patient: str, age, sex: str, key: str = "") -> Resp:
    body = {"fs": 100, "units": "mV", "patient": {"id": patient, "age": age, "sex": sex}, "leads": synthetic_leads()}
    return c.request("POST", "/api/v1/ecgs/", json_body=body, headers={"Idempotency-Key": key} if key else None)


def audit_csv(c: Client, query: str = "") -> tuple[Resp, list[dict]]:
    r = c.request("GET", "/ecgs/audit/export.csv" + (f"?{query}" if query else ""))
    rows = list(csv.DictReader(io.StringIO(r.body.decode("utf-8-sig", errors="replace")))) if r.status == 200 else []
    return r, rows


def fullwidth(name: str, mask: int) -> str:
    """A look-alike of name: the letters whose bit is set in mask become their fullwidth forms (NFKC folds back)."""
    return "".join(chr(ord(ch) + 0xFEE0) if ch.isascii() and ch.isalnum() and mask >> i & 1 else ch
                   for i, ch in enumerate(name))


class Replay:
    def __init__(self, base: str, budget: Budget, manage: str | None, python: str):
        self.base, self.budget = base, budget
        # manage.py runs in its own folder: relative paths are taken from here first.
        self.manage = os.path.abspath(manage) if manage else None
        self.python = os.path.abspath(python) if os.sep in python else python
        self.sessions: dict[str, Client] = {}
        self.results: list[tuple[int, str, str]] = []

    def client(self, source_key: str = "main") -> Client:
        return Client(self.base, self.budget, SRC[source_key])

    def manage_run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([self.python, self.manage, *args], capture_output=True, text=True, timeout=timeout,
                              cwd=os.path.dirname(os.path.abspath(self.manage)))

    def setup(self) -> None:
        if self.manage:
            code = ("from django.contrib.auth.models import Group, User\n"
                    "from clinical.roles import roles_ensure\nroles_ensure()\n"
                    "for name in ('clinician2', 'victim1', 'victim2'):\n"
                    "    u, _ = User.objects.get_or_create(username=name)\n"
                    f"    u.set_password({PASSWORD!r}); u.save(); u.groups.add(Group.objects.get(name='clinician'))\n")
            try:
                p = self.manage_run("shell", "-c", code)
            except (OSError, subprocess.SubprocessError) as exc:
                print(f"setup: manage.py could not run: {exc}", file=sys.stderr)
            else:
                if p.returncode:
                    print(f"setup: manage.py shell failed: {p.stderr.strip()[-300:]}", file=sys.stderr)
        # Sign in first: rows 1-3 may lock accounts out (on the vulnerable code, for everyone).
        for user in ("clinician", "reviewer", "compliance", "admin", "clinician2"):
            c = self.client()
            if logged_in(c.login(user, PASSWORD)):
                self.sessions[user] = c

    def session(self, user: str) -> Client:
        if user not in self.sessions:
            raise LookupError(f"cannot sign in as {user}" + (" (create it with --manage)" if user == "clinician2"
                                                               else ""))
        return self.sessions[user]

    def record(self, n: int, ok: bool | None, what: str) -> None:
        verdict = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        self.results.append((n, verdict, what))
        print(f"row {n} {verdict}: {what}", flush=True)

    def run(self, rows: list[int]) -> int:
        try:
            self.setup()
        except (TimeoutError, OSError) as exc:
            print(f"setup failed: {exc}", file=sys.stderr)
        for n in rows:
            try:
                ok, what = getattr(self, f"row{n}")()
            except (TimeoutError, OSError, LookupError, KeyError, ValueError, subprocess.SubprocessError) as exc:
                ok, what = False, f"could not run: {type(exc).__name__}: {exc}"
            self.record(n, ok, what)
        return 1 if any(v == "FAIL" for _, v, _ in self.results) else 0

    # -- helpers over the demo data ------------------------------------------------------------------------------

    def ecgs_of(self, user: str, patient: str) -> list[dict]:
        r = self.session(user).request("GET", f"/api/v1/patients/{urllib.parse.quote(patient)}/ecgs/")
        return (r.json() or {}).get("results", []) if r.status == 200 else []

    def any_ecg(self) -> str:
        for patient in ("DEMO-0001", "DEMO-0002", "DEMO-0003", "PT-0042"):
            results = self.ecgs_of("clinician", patient)
            if results:
                return results[-1]["id"]
        raise LookupError("the clinician has no ECG (seed the demo: manage.py seed_demo)")

    def awaiting_review(self) -> list[str]:
        r = self.session("reviewer").request("GET", "/ecgs/review/")
        seen = []
        for m in re.finditer(r"/ecgs/([0-9a-f-]{36})/", r.text):
            if m.group(1) not in seen:
                seen.append(m.group(1))
        return seen

    # -- the rows ------------------------------------------------------------------------------------------------

    def row1(self):
        c = self.client("row1")
        for _ in range(6):
            c.login("victim1", "wrong-password-x")
        r = c.login(fullwidth("victim1", 0b1), PASSWORD)  # U+FF56 for the "v"
        got_in = logged_in(r)
        variants = [fullwidth("victim2", mask) for mask in range(1, 21)]  # 20 look-alikes, each folds to victim2
        last = None
        for name in variants:
            last = c.login(name, "wrong-password-x")
        throttled = last is not None and (last.status == 429 or bool(THROTTLED.search(last.text)))
        what = (f"locked victim1 with 6 failures, then 'ｖictim1' + right password: "
                f"{'signed in' if got_in else 'refused'} (HTTP {r.status}); 20 wrong guesses as look-alikes of "
                f"victim2 (ｖictim2, ...): last one {'throttled' if throttled else 'not throttled'} "
                f"(HTTP {last.status})")
        return (not got_in and throttled), what

    def row2(self):
        c = self.client("row2")
        first = c.request("GET", "/admin/login/")
        where = first.headers.get("Location") or ""
        if first.status in (301, 302) and urllib.parse.urlsplit(where).path.rstrip("/").endswith("/login") \
                and "/admin/" not in urllib.parse.urlsplit(where).path:
            return True, f"/admin/login/ redirects to the one login page ({where})"
        last = None
        for _ in range(12):
            last = c.login("compliance", "wrong-password-x", path="/admin/login/")
        throttled = last.status == 429 or bool(THROTTLED.search(last.text))
        return throttled, (f"/admin/login/ is its own form (HTTP {first.status}); 12 wrong passwords for compliance "
                           f"there: the 12th {'throttled' if throttled else 'not throttled'} (HTTP {last.status})")

    def row3(self):
        if self.base.startswith("http://["):
            return None, "needs a second IPv4 loopback source address; the target is ::1"
        attacker = self.client("row3-attacker")
        for _ in range(5):
            # The forwarded-for header names the victim's address: a server that trusted it would lock them out.
            page = attacker.request("GET", "/login/")
            m = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
            attacker.request("POST", "/login/", headers={"X-Forwarded-For": SRC["row3-victim"]},
                             form={"csrfmiddlewaretoken": m.group(1).decode() if m else "",
                                   "username": "reviewer", "password": "wrong-password-x"})
        r = self.client("row3-victim").login("reviewer", PASSWORD)
        return r.status == 302 and logged_in(r), (
            f"5 failures for reviewer from {SRC['row3-attacker']} (X-Forwarded-For: {SRC['row3-victim']}), then "
            f"reviewer from {SRC['row3-victim']} with the right password: HTTP {r.status}"
            f"{'' if logged_in(r) else ' (not signed in)'}")

    def row4(self):
        c = self.session("clinician")
        ecg = self.any_ecg()
        reads = {"API result": c.request("GET", f"/api/v1/ecgs/{ecg}/result/"),
                 "patient-list API": c.request("GET", "/api/v1/patients/DEMO-0001/ecgs/"),
                 "ECG list page": c.request("GET", "/ecgs/")}
        _, rows = audit_csv(self.session("compliance"), "actor=clinician")
        found = {}
        for name, r in reads.items():
            actions = sorted({row["action"] for row in rows if row.get("request_id") == r.request_id})
            found[name] = [a for a in actions if a.startswith("ecg.") and ("view" in a or "list" in a)]
        ok = all(found.values())
        return ok, "audit events for " + "; ".join(
            f"{name} (HTTP {reads[name].status}): {', '.join(acts) or 'none'}" for name, acts in found.items())

    def row5(self):
        c = self.session("clinician")
        key = f"replay-{uuid.uuid4().hex}"
        first = submit_json(c, "PT-0042", 63, "F", key)
        second = submit_json(c, "PT-9999", 40, "M", key)
        long_key = submit_json(c, "PT-0042", 63, "F", "k" * 101)
        ok = first.status == 202 and second.status == 422 and long_key.status == 400
        return ok, (f"Idempotency-Key with PT-0042: HTTP {first.status}; same key with PT-9999: HTTP {second.status} "
                    f"(422 expected); a 101-character key: HTTP {long_key.status} (400 expected)")

    def row6(self):
        earlier = self.ecgs_of("clinician", "DEMO-0003")
        if not earlier:
            return False, "the clinician has no DEMO-0003 ECG (seed the demo)"
        ecg = earlier[-1]["id"]
        before = self.session("clinician").request("GET", f"/ecgs/{ecg}/")
        head_before = _h1(before.text)
        sub = submit_json(self.session("clinician2"), "DEMO-0003", 5, "U")
        after = self.session("clinician").request("GET", f"/ecgs/{ecg}/")
        head_after = _h1(after.text)
        _, rows = audit_csv(self.session("compliance"), "actor=clinician2")
        audited = [row["action"] for row in rows if row.get("request_id") == sub.request_id
                   and row["action"] not in ("ecg.upload",) and "DEMO-0003" in (row["object_id"] + row["details"])]
        kept = head_before == head_after and "5 y" not in head_after
        return (sub.status == 202 and kept and bool(audited)), (
            f"clinician2 submitted DEMO-0003 aged 5, sex U (HTTP {sub.status}); the earlier ECG's page shows "
            f"'{head_before}' before and '{head_after}' after; the patient change audited as: "
            f"{', '.join(audited) or 'nothing'}")

    def row7(self):
        comp, clin = self.session("compliance"), self.session("clinician")
        cursor = urllib.parse.quote("cD0yMDI2LTEzLTQ1IDk5Ojk5Ojk5")  # base64 of "p=2026-13-45 99:99:99"
        probes = [
            (comp, "GET", "/ecgs/audit/?cursor=%C2%B2", None, None),
            (comp, "GET", "/ecgs/audit/?until=9999-12-31", None, None),
            (comp, "GET", "/ecgs/audit/export.csv?until=9999-12-31", None, None),
            (clin, "GET", f"/api/v1/patients/DEMO-0001/ecgs/?cursor={cursor}", None, None),
            (clin, "GET", "/api/v1/patients/%00/ecgs/", None, None),
            (clin, "GET", "/api/v1/patients/DEMO-0001/ecgs/?state=%00", None, None),
            (clin, "POST", "/api/v1/ecgs/", {"Idempotency-Key": "k\x00²"}, None),
        ]
        seen = []
        for c, method, path, headers, _ in probes:
            body = json.dumps({"fs": 100, "patient": {"id": "PT-0042", "age": 1, "sex": "U"}, "leads": {}}).encode() \
                if method == "POST" else None
            r = c.request(method, path, body=body, headers=(headers or {}) | (
                {"Content-Type": "application/json"} if body else {}))
            seen.append((path if not headers else "Idempotency-Key with NUL", r.status))
        anon = self.client()
        r = anon.login("a\x00b", "x")
        seen.append(("anonymous login username with NUL", r.status))
        bad = [f"{p} -> {s}" for p, s in seen if s >= 500]
        return not bad, ("500s: " + "; ".join(bad)) if bad else (
            "no 500 for " + "; ".join(f"{p} ({s})" for p, s in seen))

    def row8(self):
        out, ok = [], True
        for source in (SRC["row8"], SRC["main"]):
            c = Client(self.base, self.budget, source)
            for path in ("/metrics", "/api/v1/schema/"):
                r = c.request("GET", path)
                out.append(f"{path} from {source}: {r.status}")
                if source == SRC["row8"] and r.status not in (401, 403, 404):
                    ok = False
        hint = "" if ok else (" (readable anonymously from an address that should not be allow-listed; the default "
                              "ECGAPP_METRICS_ALLOW allows none)")
        return ok, "anonymous reads: " + "; ".join(out) + hint

    def row9(self):
        c = self.session("clinician")
        ecg = self.any_ecg()
        page = c.request("GET", f"/ecgs/{ecg}/")
        api = c.request("GET", f"/api/v1/ecgs/{ecg}/result/")
        cc_page, cc_api = page.headers.get("Cache-Control", ""), api.headers.get("Cache-Control", "")
        ok = "no-store" in cc_page and "no-store" in cc_api
        fresh = self.client()
        login = fresh.login("clinician", PASSWORD)
        cookies = login.headers.get_all("Set-Cookie") or []
        session = next((h for h in cookies if h.startswith("sessionid=")), "")
        m = re.search(r"Max-Age=(\d+)", session, re.I)
        idle = (f"session cookie Max-Age={m.group(1)} s" if m else
                "idle timeout: skipped, the session cookie carries no Max-Age (a production setting)")
        return ok, f"Cache-Control on the result page: '{cc_page}', on the API result: '{cc_api}'; {idle}"

    def row10(self):
        queue = self.awaiting_review()
        if not queue:
            return False, "no result awaits review (every seeded urgent result is acknowledged; reseed the demo)"
        rev = self.session("reviewer")
        ecg = queue[0]
        page = rev.request("GET", f"/ecgs/{ecg}/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
        form = {"csrfmiddlewaretoken": token.group(1).decode() if token else rev.cookie("csrftoken"),
                "verdict": "agree"}
        big = rev.request("POST", f"/ecgs/{ecg}/acknowledge/", form=form | {"note": "x" * (10 * 1024 * 1024)})
        still_open = ecg in self.awaiting_review()
        marker = f"replay-{uuid.uuid4().hex[:8]}"
        rev.request("POST", f"/ecgs/{ecg}/acknowledge/", form=form | {"note": f"{marker} abc\u202edcb"})
        shown = rev.request("GET", f"/ecgs/{ecg}/").text
        raw = "\u202e" in shown
        displayed = marker in shown
        ok = big.status == 400 and still_open and displayed and not raw
        return ok, (f"10 MB note: HTTP {big.status} (400 expected), result {'still' if still_open else 'no longer'} "
                    f"awaiting review; note with U+202E "
                    f"{'not shown' if not displayed else ('shown raw' if raw else 'shown escaped')}")

    def row11(self):
        r, rows = audit_csv(self.session("compliance"))
        ctype = r.headers.get("Content-Type", "")
        details_json = True
        for row in rows[:200]:
            try:
                json.loads(row["details"])
            except (ValueError, KeyError):
                details_json = False
                break
        clin = self.session("clinician")
        nope = clin.request("GET", "/api/v1/nope/")
        boundary = uuid.uuid4().hex
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="f{i}.csv"\r\n'
                 f"Content-Type: text/csv\r\n\r\n0\r\n" for i in range(101)]
        body = ("".join(parts) + f"--{boundary}--\r\n").encode()
        many = clin.request("POST", "/api/v1/ecgs/", body=body,
                            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        shapes = {name: _error_shape(x) for name, x in (("/api/v1/nope/", nope), ("101-file upload", many))}
        ok = ("charset=utf-8" in ctype.lower() and r.body.startswith(BOM) and details_json and bool(rows)
              and all(shapes.values()))
        return ok, (f"audit CSV Content-Type '{ctype}', BOM {'present' if r.body.startswith(BOM) else 'missing'}, "
                    f"details JSON {'yes' if details_json and rows else 'no'}; "
                    + "; ".join(f"{n}: HTTP {x.status} {'' if shapes[n] else 'not '}the JSON error shape"
                                for n, x in (("/api/v1/nope/", nope), ("101-file upload", many))))

    def row12(self):
        if not self.manage:
            return None, "needs server-side access: give --manage path/to/manage.py"
        p = self.manage_run("audit_verify")
        message = (p.stdout.strip() or p.stderr.strip()).splitlines()[-1:] or ["(no output)"]
        return p.returncode == 0, f"manage.py audit_verify exit {p.returncode}: {message[0][:300]}"

    def row13(self):
        rev = self.session("reviewer")
        schema = rev.request("GET", "/api/v1/schema/?format=json").json() or {}
        props = {}
        for name, comp in (schema.get("components", {}).get("schemas", {})).items():
            if "acknowledge" in name.lower() and "properties" in comp:
                props.update(comp["properties"])
        field_name = next((n for n, p in props.items() if p.get("type") == "array"
                           and re.search(r"miss|present|not_flagged|unflagged", n, re.I)), None)
        if not field_name:
            return False, f"the acknowledge input has no 'present but not flagged' field (fields: {sorted(props)})"
        queue = self.awaiting_review()
        if not queue:
            return False, f"field '{field_name}' in the schema, but no result awaits review to try it on"
        ecg = queue[-1]
        result = rev.request("GET", f"/api/v1/ecgs/{ecg}/result/").json() or {}
        flagged = {f["code"] for f in result.get("findings", []) if f.get("head") == "superclass"}
        missed = next((c for c in ("MI", "STTC", "CD", "HYP", "NORM") if c not in flagged), "MI")
        r = rev.request("POST", f"/api/v1/ecgs/{ecg}/acknowledge/", json_body={
            "verdict": "disagree", "note": f"Replay: {missed} present but not flagged.", field_name: [missed]})
        _, rows = audit_csv(self.session("compliance"), "actor=reviewer")
        recorded = any(row.get("request_id") == r.request_id and missed in row.get("details", "") for row in rows)
        return r.status == 200 and recorded, (f"POST acknowledge with '{field_name}': ['{missed}']: HTTP {r.status}; "
                                              f"{'recorded' if recorded else 'not recorded'} in the audit trail")


def _h1(html: str) -> str:
    m = re.search(r"<h1>(.*?)</h1>", html, re.S)
    return re.sub(r"<[^>]+>|\s+", " ", m.group(1)).strip()[:120] if m else "(no heading)"


def _error_shape(r: Resp) -> bool:
    body = r.json()
    return (isinstance(body, dict) and isinstance(body.get("error"), dict) and "code" in body["error"]
            and "message" in body["error"] and "json" in r.headers.get("Content-Type", ""))


ROWS = list(range(1, 14))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000",
                        help="the server (loopback only; default %(default)s)")
    parser.add_argument("--manage", help="path to the server's manage.py: creates clinician2/victim1/victim2, "
                                         "runs audit_verify (row 12)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter for --manage (its virtualenv's)")
    parser.add_argument("--rows", default="", help="comma-separated rows to run (default: all 13)")
    parser.add_argument("--time-limit", type=float, default=180.0, help="seconds for the whole replay")
    parser.add_argument("--max-requests", type=int, default=600, help="requests for the whole replay")
    args = parser.parse_args(argv)
    try:
        base = target_check(args.url)
    except NotLoopback as exc:
        print(exc, file=sys.stderr)
        return 2
    rows = [int(r) for r in args.rows.split(",") if r.strip()] or ROWS
    replay = Replay(base, Budget(args.max_requests, args.time_limit), args.manage, args.python)
    return replay.run(rows)


if __name__ == "__main__":
    sys.exit(main())
