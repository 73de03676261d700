"""Property-based fuzzing of the whole API against its own OpenAPI schema, on a live server."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from django.contrib.auth.models import Group, User

from clinical.roles import roles_ensure
from clinical.tokens import api_token_create


def test_schemathesis_finds_no_server_error_and_no_schema_violation(live_server, transactional_db, weights_dir):
    roles_ensure()
    admin = User.objects.create_user("fuzz-admin", password="fuzz-password-1")
    admin.groups.add(Group.objects.get(name="admin"))
    token = api_token_create(user=admin, name="schemathesis")[1]
    st = Path(sys.executable).parent / "st"
    run = subprocess.run(
        [str(st), "run", f"{live_server.url}/api/v1/schema/?format=json", "-H", f"Authorization: Bearer {token}",
         "-c", "not_a_server_error,response_schema_conformance", "-n", "60", "--seed", "20261127", "--no-color"],
        capture_output=True, text=True, timeout=600)
    out = run.stdout + run.stderr
    generated = re.search(r"(\d+) generated, (\d+) passed", out)
    assert run.returncode == 0, out[-4000:]
    assert generated, out[-4000:]
    assert int(generated.group(1)) >= 500 and generated.group(1) == generated.group(2), generated.group(0)
