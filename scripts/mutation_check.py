#!/usr/bin/env python
"""Mutation checks: break one clinical rule at a time in a copy of the tree and show which fast tests notice.

Each mutation below is a small, realistic regression (a rule switched off, a step deleted). For each one, this
script copies the repository's files (tracked and untracked, not ignored ones) into a temporary directory, applies
the one edit there (the checkout is never touched), runs the fast tests that guard the rule and prints which of
them failed. A mutation that no test notices "survived": the script then exits 1.

    DATABASE_URL=... REDIS_URL=... .venv/bin/python scripts/mutation_check.py            # all, as a table
    .venv/bin/python scripts/mutation_check.py --only sweeper-send --only audit-chain    # some
    .venv/bin/python scripts/mutation_check.py --list

The tests run with the environment this script gets (DATABASE_URL, REDIS_URL, PTBXL_DIR as for `make test`).
First the chosen tests run once on the unchanged copy: they must pass there, or a failure would prove nothing.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str  # the regression, in words
    path: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]  # the fast tests that guard the rule


MUTATIONS = [
    Mutation(
        "review-rule", "members never counted as 'some, not all' above a threshold: no result is put up for review "
        "(today's form of issue 18's NEEDS_REVIEW_SPREAD = 99)",
        "mlcore/ensemble.py",
        'result[f"{head}_members_above"] = (member_p >= self.threshold[head]).sum(0)',
        'result[f"{head}_members_above"] = np.where((member_p >= self.threshold[head]).any(0), len(member_p), 0)',
        ("tests/mlcore/test_members_disagree.py", "tests/clinical/test_needs_review.py")),
    Mutation(
        "sweeper-send", "the sweeper marks lost jobs re-sent but no longer sends them (its send step removed)",
        "clinical/services.py",
        'stage="Waiting for a worker (re-sent)")\n            _enqueue(job)\n',
        'stage="Waiting for a worker (re-sent)")\n',
        ("tests/clinical/test_sweeper.py",)),
    Mutation(
        "overview-title", "monitoring/overview.html renders the alerts section inside <title>",
        "templates/monitoring/overview.html",
        '{% block title %}Monitoring{% endblock %}',
        '{% block title %}Monitoring{% include "monitoring/_alerts.html" %}{% endblock %}',
        ("tests/monitoring/test_overview_title.py",
         "tests/monitoring/test_pages.py::test_the_overview_title_is_plain_text")),
    Mutation(
        "urgent-ack-permission", "anyone, not only reviewers, may acknowledge an urgent result",
        "clinical/reviews.py",
        'if not reviewer.has_perm("clinical.acknowledge_result"):',
        'if False:',
        ("tests/clinical/test_reviews.py",)),
    Mutation(
        "flat-lead-gate", "flat leads no longer count towards refusing an ECG (the quality gate lets 4 flat leads "
        "through to the model)",
        "mlcore/quality.py",
        'refuse_bad = len(flat) + len(clipped) >= REFUSE_BAD_LEADS',
        'refuse_bad = len(clipped) >= REFUSE_BAD_LEADS',
        ("tests/mlcore/test_quality.py", "tests/clinical/test_refusals_say_what_to_do.py")),
    Mutation(
        "audit-chain", "an audit event's hash no longer covers its predecessor's (the chain is no longer a chain)",
        "clinical/audit.py",
        'return hashlib.sha256((prev_hash + body).encode()).hexdigest()',
        'return hashlib.sha256(body.encode()).hexdigest()',
        ("tests/clinical/test_audit.py", "tests/clinical/test_audit_anchor.py")),
]


def copy_tree(dest: Path) -> None:
    """The files git would commit (tracked, and untracked ones it does not ignore), as they are on disk now."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         check=True, capture_output=True).stdout
    for rel in filter(None, out.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def run_tests(tree: Path, tests: tuple[str, ...], extra: list[str]) -> tuple[int, list[str], float, str]:
    """pytest on ``tests`` inside ``tree``: (exit code, failed test ids, seconds, the output's last lines)."""
    env = os.environ | {"PYTHONDONTWRITEBYTECODE": "1"}  # an edited module is never read from a stale .pyc
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", *tests, "-q", "-rfE", "-p", "no:cacheprovider", *extra],
                          cwd=tree, env=env, capture_output=True, text=True)
    failed = sorted({m.group(2) for m in re.finditer(r"^(FAILED|ERROR) (\S+)", proc.stdout, re.M)})
    return proc.returncode, failed, time.monotonic() - started, "\n".join(proc.stdout.splitlines()[-15:])


def imports_from(tree: Path) -> str:
    """Where the copy's Python imports the project from (it must be the copy, not an installed checkout)."""
    code = "import clinical, mlcore; print(clinical.__file__); print(mlcore.__file__)"
    return subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, check=True).stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", metavar="NAME", help="run only this mutation (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--no-baseline", action="store_true", help="skip the run on the unchanged copy")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --), e.g. -- -n 2")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list or not chosen:
        for m in MUTATIONS:
            print(f"{m.name:24} {m.path}: {m.what}")
        return 0 if args.list else 2

    tree = Path(tempfile.mkdtemp(prefix="ecgapp-mutation-"))
    try:
        copy_tree(tree)
        where = imports_from(tree)
        if not all(line.startswith(str(tree)) for line in where.split()):
            print(f"the copy imports the project from elsewhere:\n{where}", file=sys.stderr)
            return 2
        for m in chosen:  # each edit must still apply: fail loudly when the code it breaks has moved
            if (n := (tree / m.path).read_text().count(m.old)) != 1:
                print(f"{m.name}: expected the text once in {m.path}, found it {n} times; update MUTATIONS",
                      file=sys.stderr)
                return 2
        if not args.no_baseline:
            tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
            rc, failed, secs, tail = run_tests(tree, tests, args.pytest_args)
            print(f"baseline (no mutation): {len(tests)} test files, exit {rc}, {secs:.0f} s")
            if rc != 0:
                print(tail, file=sys.stderr)
                return 2
        rows = []
        for m in chosen:
            target = tree / m.path
            original = target.read_text()
            target.write_text(original.replace(m.old, m.new))
            try:
                rc, failed, secs, tail = run_tests(tree, m.tests, args.pytest_args)
            finally:
                target.write_text(original)
            if rc not in (0, 1):  # 2+: interrupted, usage or collection error: the mutation proved nothing
                print(f"{m.name}: pytest exit {rc}\n{tail}", file=sys.stderr)
            rows.append((m, rc, failed, secs))
    finally:
        if args.keep:
            print(f"copy kept in {tree}")
        else:
            shutil.rmtree(tree, ignore_errors=True)

    print()
    print(f"{'mutation':24} {'file':36} {'failed':>6} {'secs':>5}  verdict")
    for m, rc, failed, secs in rows:
        verdict = "killed" if failed and rc == 1 else "SURVIVED"
        print(f"{m.name:24} {m.path:36} {len(failed):6d} {secs:5.0f}  {verdict}")
    for m, _rc, failed, _ in rows:
        print(f"\n{m.name}: {m.what}")
        for t in failed:
            print(f"  FAILED {t}")
        if not failed:
            print("  no test failed")
    return 0 if all(failed and rc == 1 for _, rc, failed, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
