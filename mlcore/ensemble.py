"""Load the committed ensemble, predict calibrated probabilities, and explain a prediction.

    ens = Ensemble.load("mlcore/weights")          # verifies every member's sha256
    pred = ens.predict([signal], fs=500)           # signal: (12, n) mV in standard lead order
    ex = ens.explain(signal, fs=500, label="MI")   # Grad-CAM over time + per-lead relevance
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from captum.attr import LayerAttribution
from torch.nn.utils.fusion import fuse_conv_bn_eval

from mlcore.calibration import HEADS, MANIFEST_CALIBRATION, operating_points, sigmoid
from mlcore.labels import LabelSpace
from mlcore.model import EcgResNet, ModelConfig
from mlcore.preprocess import LEADS, N_SAMPLES, TARGET_FS, Standardizer, preprocess

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights"
# Per-lead evidence is smoothed over 0.2 s so a single noisy sample does not light up a lead.
_SMOOTH = 21


class EnsembleLoadError(RuntimeError):
    """The weights directory is missing, incomplete or corrupt; the message says which file and why."""


@dataclass
class EnsembleOutput:
    """What :meth:`Ensemble.predict` returns for a batch of b ECGs (clinical.models.Prediction is the stored row).
    Probabilities are calibrated; spread is the std across members."""

    superclass: np.ndarray  # (b, 5)
    statements: np.ndarray  # (b, 71)
    superclass_spread: np.ndarray  # (b, 5)
    statements_spread: np.ndarray  # (b, 71)
    superclass_flags: np.ndarray  # (b, 5) bool: probability >= the class threshold
    statements_flags: np.ndarray  # (b, 71) bool
    embedding: np.ndarray  # (b, d) penultimate features, averaged over members (for drift monitoring)
    # (b, k) int: how many members' own calibrated probability reaches the threshold. Some but not all: the members
    # disagree about the label (whatever the ensemble's mean says).
    superclass_members_above: np.ndarray | None = None
    statements_members_above: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.superclass)


@dataclass
class Explanation:
    label: str
    head: str
    probability: float
    gradcam: np.ndarray  # (1000,) in [0, 1]: Grad-CAM over time at 100 Hz, averaged over members
    lead_relevance: np.ndarray  # (12,) sums to 1: share of |input x gradient| per lead
    lead_maps: np.ndarray  # (12, 1000) in [0, 1]: per-lead evidence over time


def _fuse(model: EcgResNet) -> EcgResNet:
    """Fold every BatchNorm into the preceding conv (eval only): same outputs, ~15 % faster on CPU."""
    for module in model.modules():
        for name, child in list(module.named_children()):
            if (isinstance(child, torch.nn.Sequential) and len(child) == 2
                    and isinstance(child[0], torch.nn.Conv1d) and isinstance(child[1], torch.nn.BatchNorm1d)):
                setattr(module, name, fuse_conv_bn_eval(child[0], child[1]))
    return model


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_member(path: Path) -> tuple[EcgResNet, dict]:
    """Load one member checkpoint written by training (config, state_dict, standardizer, seed)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model = EcgResNet(ModelConfig.from_dict(ckpt["config"]))
        model.load_state_dict(ckpt["state_dict"])
    except Exception as exc:  # torch raises many types for a damaged file
        raise EnsembleLoadError(f"Cannot load ensemble member {path.name}: {exc}") from exc
    return model.eval(), ckpt


class Ensemble:
    def __init__(self, members: list[EcgResNet], manifest: dict) -> None:
        self.members = members
        self.manifest = manifest
        self.version: str = manifest["model_version"]
        self.labels = LabelSpace.from_dict(manifest["labels"])
        self.standardizer = Standardizer.from_dict(manifest["standardizer"])
        self._calibrate(manifest["calibration"], MANIFEST_CALIBRATION)

    def _calibrate(self, cal: dict, version: str) -> None:
        self.calibration_version = version
        self.temperature = {h: np.asarray(cal[h]["temperature"], dtype=np.float64) for h in HEADS}
        self.threshold = {h: np.asarray(cal[h]["threshold"], dtype=np.float64) for h in HEADS}
        # Threshold and how it was chosen, per label: stored with each prediction so that a later refit does not
        # change what an old result was judged against.
        self.operating_points = operating_points(cal, {"superclass": self.labels.superclasses,
                                                       "statements": self.labels.statements})

    def with_calibration(self, calibration: dict, version: str) -> Ensemble:
        """The same members under another calibration block (the manifest's "calibration" shape: per head
        "temperature", "threshold" and optionally "operating_points"), e.g. a site's refit. The members are shared,
        not copied; this ensemble is left as it was."""
        for head, codes in (("superclass", self.labels.superclasses), ("statements", self.labels.statements)):
            for key in ("temperature", "threshold"):
                if len(calibration[head][key]) != len(codes):
                    raise ValueError(f"calibration {version}: {head} {key} has {len(calibration[head][key])} "
                                     f"values for {len(codes)} labels")
        other = copy.copy(self)
        other._calibrate(calibration, version)
        return other

    @classmethod
    def load(cls, path: str | Path = DEFAULT_WEIGHTS, threads: int | None = None) -> Ensemble:
        """Read ``manifest.json`` in ``path``, verify each member's sha256 and load it for CPU inference.

        threads: if given, sets torch's intra-op threads for this process (serving uses 1).
        """
        if threads:
            torch.set_num_threads(threads)
        path = Path(path)
        manifest_path = path / "manifest.json"
        if not manifest_path.exists():
            raise EnsembleLoadError(f"No manifest.json in {path}: train and export the ensemble first.")
        try:
            manifest = json.loads(manifest_path.read_text())
        except ValueError as exc:
            raise EnsembleLoadError(f"{manifest_path} is not valid JSON: {exc}") from exc
        members = []
        for m in manifest["members"]:
            f = path / m["file"]
            if not f.exists():
                raise EnsembleLoadError(f"Ensemble member {m['file']} is missing from {path}.")
            digest = sha256_file(f)
            if digest != m["sha256"]:
                raise EnsembleLoadError(
                    f"Ensemble member {m['file']} is corrupt: sha256 {digest[:12]}… does not match the "
                    f"manifest's {m['sha256'][:12]}…")
            members.append(_fuse(load_member(f)[0]))
        if not members:
            raise EnsembleLoadError(f"The manifest in {path} lists no members.")
        return cls(members, manifest)

    # -- inference -------------------------------------------------------------------------------

    def prepare(self, signals: Sequence[np.ndarray], fs: float, leads: Sequence[str] | None = None) -> torch.Tensor:
        """preprocess() every signal: (b, 12, 1000) float32 tensor."""
        return torch.from_numpy(np.stack([preprocess(s, fs, self.standardizer, leads) for s in signals]))

    def predict(self, signals: Sequence[np.ndarray], fs: float, leads: Sequence[str] | None = None) -> EnsembleOutput:
        """Calibrated probabilities for a batch of ECGs, each (12, n) in mV sampled at ``fs``."""
        x = self.prepare(signals, fs, leads)  # (b, 12, 1000)
        with torch.inference_mode():
            outs = [m.forward_all(x) for m in self.members]
        emb = torch.stack([o.embedding for o in outs]).mean(0).numpy()
        result: dict[str, np.ndarray] = {"embedding": emb}
        for head in HEADS:
            logits = torch.stack([getattr(o, head) for o in outs]).double().numpy()  # (members, b, k)
            t = self.temperature[head]
            member_p = sigmoid(logits / t)
            p = sigmoid(logits.mean(0) / t)
            result[head] = p
            result[f"{head}_spread"] = member_p.std(0)
            result[f"{head}_flags"] = p >= self.threshold[head]
            result[f"{head}_members_above"] = (member_p >= self.threshold[head]).sum(0)
        return EnsembleOutput(**result)

    # -- explanation ------------------------------------------------------------------------------

    def label_index(self, label: str, head: str = "superclass") -> int:
        names = self.labels.superclasses if head == "superclass" else self.labels.statements
        if head not in HEADS or label not in names:
            raise KeyError(f"Unknown {head} label {label!r}.")
        return names.index(label)

    def explain(self, signal: np.ndarray, fs: float, label: str, head: str = "superclass",
                leads: Sequence[str] | None = None) -> Explanation:
        """Evidence for one label on one ECG; see :meth:`explain_many`."""
        return self.explain_many(signal, fs, [(head, label)], leads)[0]

    def explain_many(self, signal: np.ndarray, fs: float, targets: Sequence[tuple[str, str]],
                     leads: Sequence[str] | None = None) -> list[Explanation]:
        """Evidence for several (head, label) targets on one ECG, on the tensor that predict() uses.

        Grad-CAM: each member's last conv stage activations A (channels, 63) are weighted by the time-mean of
        d logit / dA, summed over channels and ReLU'd (captum ``LayerGradCam``'s definition; the tests assert
        equality with it), upsampled to 1000 samples with captum's ``LayerAttribution.interpolate``, averaged
        over members and scaled to [0, 1]. Per-lead evidence: |input x gradient| of the ensemble's mean logit,
        smoothed over 0.2 s; its per-lead share gives ``lead_relevance``. Both gradients come from one
        backward pass (captum would need two per target, which breaks the 30 ms budget), and the targets
        share it as rows of one batch: members run in eval mode, so rows do not interact. Runs with autograd
        on: never under inference_mode.
        """
        idx = [self.label_index(label, head) for head, label in targets]
        cols = [i if head == "superclass" else len(self.labels.superclasses) + i
                for (head, _), i in zip(targets, idx)]
        k = len(targets)
        x = self.prepare([signal], fs, leads).expand(k, -1, -1).clone().requires_grad_(True)  # (k, 12, 1000)
        rows = torch.arange(k)
        col = torch.tensor(cols)
        acts: list[torch.Tensor] = []
        hooks = [m.last_conv_stage.register_forward_hook(lambda _m, _i, out: acts.append(out))
                 for m in self.members]
        try:
            with torch.enable_grad():
                logits = torch.stack([m(x)[rows, col] for m in self.members])  # (members, k)
                grads = torch.autograd.grad(logits.sum(), [*acts, x])
        finally:
            for h in hooks:
                h.remove()
        cams = []
        for a, g in zip(acts, grads[:-1]):  # a, g: (k, channels, 63)
            cam = torch.relu((g.mean(dim=-1, keepdim=True) * a).sum(dim=1, keepdim=True))  # (k, 1, 63)
            cams.append(LayerAttribution.interpolate(cam, (N_SAMPLES,), interpolate_mode="linear")[:, 0])
        gradcams = torch.stack(cams).mean(0).detach().numpy()  # (k, 1000)

        ixg = (x * grads[-1] / len(self.members)).abs().detach()  # (k, 12, 1000)
        kernel = torch.ones(1, 1, _SMOOTH) / _SMOOTH
        smooth = torch.nn.functional.conv1d(ixg.reshape(-1, 1, N_SAMPLES), kernel, padding=_SMOOTH // 2)
        smooth = smooth.reshape(k, len(LEADS), N_SAMPLES).numpy()
        z = logits.detach().mean(0).numpy()  # (k,) mean member logit
        out = []
        for r, (head, label) in enumerate(targets):
            cam, sm = gradcams[r], smooth[r]
            cam = cam / cam.max() if cam.max() > 0 else cam
            total = sm.sum()
            relevance = sm.sum(axis=1) / total if total > 0 else np.full(len(LEADS), 1 / len(LEADS))
            maps = sm / sm.max() if sm.max() > 0 else sm
            p = float(sigmoid(z[r] / self.temperature[head][idx[r]]))
            out.append(Explanation(label, head, p, cam.astype(np.float32), relevance.astype(np.float32),
                                   maps.astype(np.float32)))
        return out


@functools.lru_cache(maxsize=4)
def load_cached(path: str = str(DEFAULT_WEIGHTS), threads: int | None = None) -> Ensemble:
    """One Ensemble per process and path: workers call this instead of Ensemble.load."""
    return Ensemble.load(path, threads)


__all__ = ["Ensemble", "EnsembleLoadError", "EnsembleOutput", "MANIFEST_CALIBRATION", "Explanation", "load_cached",
           "TARGET_FS", "LEADS"]
