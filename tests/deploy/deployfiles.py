"""Readers for the deployment files (Dockerfile, deploy/compose.yaml, deploy/k8s/), shared by the tests here.

Nothing in here needs a Docker engine or a cluster: the Dockerfile is split into instructions, the compose file's
`${VAR...}` references are interpolated the way Compose does, and a kustomize overlay is rendered for the fields
this repository uses (resources, strategic-merge patches of mappings, namespace, images, replicas).
"""
from __future__ import annotations

import ast
import copy
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "deploy" / "compose.yaml"
K8S = ROOT / "deploy" / "k8s"
K8S_BASE = K8S / "base"
K8S_PROD = K8S / "overlays" / "prod"

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


# ---- names the app reads -------------------------------------------------------------------------------------------

def env_names_read_by_app() -> set[str]:
    """Every variable ecgapp/env.py reads through its env_* helpers, and every one gunicorn.conf.py reads."""
    names: set[str] = set()
    source = (ROOT / "ecgapp" / "env.py").read_text()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.startswith("env_")
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
            if node.func.id == "env_str" and 'f"{name}_FILE"' in source:
                names.add(f"{node.args[0].value}_FILE")  # env_str reads NAME_FILE (a mounted secret) too
    names |= set(re.findall(r"os\.environ\.get\(\s*\"([A-Z0-9_]+)\"", (ROOT / "gunicorn.conf.py").read_text()))
    return names


# Read by Django / the interpreter, not by ecgapp/env.py.
STANDARD_APP_ENV = {"DJANGO_SETTINGS_MODULE"}


# ---- Dockerfile ------------------------------------------------------------------------------------------------------

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

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ins in self.all("ENV"):
            for token in shlex.split(ins.args):
                key, sep, value = token.partition("=")
                assert sep, f"Dockerfile:{ins.line}: use ENV KEY=VALUE ({token!r})"
                out[key] = value
        return out


def dockerfile_instructions(text: str | None = None) -> list[Instruction]:
    """Instructions with continuation lines joined and comment lines dropped (as Docker's parser does)."""
    text = DOCKERFILE.read_text() if text is None else text
    out: list[Instruction] = []
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, args = buf.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buf = ""
    assert not buf, "Dockerfile ends inside a continued instruction"
    return out


def dockerfile_stages(text: str | None = None) -> list[Stage]:
    stages: list[Stage] = []
    for ins in dockerfile_instructions(text):
        if ins.keyword == "FROM":
            parts = ins.args.split()
            parts = [p for p in parts if not p.startswith("--")]
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        else:
            assert stages, f"Dockerfile:{ins.line}: {ins.keyword} before the first FROM"
            stages[-1].instructions.append(ins)
    return stages


def exec_form(ins: Instruction) -> list[str]:
    """CMD/ENTRYPOINT/HEALTHCHECK CMD arguments in exec (JSON) form."""
    args = ins.args
    if ins.keyword == "HEALTHCHECK":
        args = args[args.index("CMD") + 3:].strip()
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), ins
    return value


# ---- compose -------------------------------------------------------------------------------------------------------

_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


class MissingVariable(KeyError):
    pass


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}."""

    def sub(m: re.Match) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4)
        present = name in variables
        val = variables.get(name, "")
        if op in (":-", ":?"):
            unset = not val
        else:
            unset = not present
        if op in (":-", "-"):
            return arg if unset else val
        if op in (":?", "?"):
            if unset:
                raise MissingVariable(f"{name}: {arg}")
            return val
        return val

    return _VAR.sub(sub, value)


def _interpolate_tree(node, variables: dict[str, str]):
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [_interpolate_tree(v, variables) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, variables) for k, v in node.items()}
    return node


def compose_raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def compose(variables: dict[str, str] | None = None) -> dict:
    """The compose file with anchors merged and ${...} interpolated from `variables`."""
    return _interpolate_tree(compose_raw(), variables or {})


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


# ---- kustomize -----------------------------------------------------------------------------------------------------

def load_yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def kustomization(directory: Path) -> dict:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def _merge(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def find(resources: list[dict], kind: str, name: str) -> dict:
    hits = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} found"
    return hits[0]


def containers(resource: dict, init: bool = True) -> list[dict]:
    spec = resource["spec"]["template"]["spec"]
    return list(spec.get("containers", [])) + (list(spec.get("initContainers", [])) if init else [])


def _split_image(image: str) -> tuple[str, str | None]:
    name, _, digest = image.partition("@")
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
        return name, tag
    return name, None


def render(directory: Path) -> list[dict]:
    """A kustomization rendered for the fields used here; anything else is refused rather than ignored."""
    k = kustomization(directory)
    supported = {"apiVersion", "kind", "resources", "patches", "namespace", "images", "replicas"}
    assert set(k) <= supported, f"{directory}: the test renderer does not know {set(k) - supported}"
    resources: list[dict] = []
    for entry in k.get("resources", []):
        path = (directory / entry).resolve()
        resources += render(path) if path.is_dir() else load_yaml_docs(path)
    for patch in k.get("patches", []):
        assert set(patch) == {"path"}, f"only file patches are rendered here: {patch}"
        for doc in load_yaml_docs(directory / patch["path"]):
            target = find(resources, doc["kind"], doc["metadata"]["name"])
            assert doc["apiVersion"] == target["apiVersion"], doc["metadata"]["name"]
            _merge(target, doc)
    if "namespace" in k:
        for r in resources:
            r["metadata"]["namespace"] = k["namespace"]
    for rep in k.get("replicas", []):
        find(resources, "Deployment", rep["name"])["spec"]["replicas"] = rep["count"]
    for img in k.get("images", []):
        for r in resources:
            if r["kind"] not in ("Deployment", "Job"):
                continue
            for c in containers(r):
                name, tag = _split_image(c["image"])
                if name == img["name"]:
                    c["image"] = f"{img.get('newName', name)}:{img.get('newTag', tag)}"
    return resources


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
