"""Train one ensemble member on PTB-XL folds 1-8, selecting the epoch on fold 9."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mlcore.metrics import macro_auc
from mlcore.model import EcgResNet, ModelConfig, count_parameters
from mlcore.preprocess import Standardizer, preprocess
from mlcore.ptbxl import Split, fingerprint, load_folds
from training.runrecord import git_commit, seed_everything
from training.tracking import tracked_run

TRAIN_FOLDS = tuple(range(1, 9))
VALID_FOLDS = (9,)


@dataclass
class TrainConfig:
    seed: int = 1
    epochs: int = 25
    batch_size: int = 128
    lr: float = 5e-3
    weight_decay: float = 1e-2
    bf16: bool = True  # autocast on CPUs with AMX/AVX-512 BF16 roughly halves step time; weights stay fp32
    threads: int = 0  # 0: all cores
    model: ModelConfig = ModelConfig()


def standardized(split: Split, st: Standardizer) -> np.ndarray:
    """Every signal through the one preprocess() the web app uses; (n, 12, 1000) float32."""
    return np.stack([preprocess(s, 100, st) for s in split.signals])


def augment(x: torch.Tensor, pad_value: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Amplitude scaling, light noise, and random 8-10 s crops padded as preprocess() pads short uploads.

    x: (b, 12, 1000) standardised; pad_value: (12, 1) the standardised 0 mV level of each lead.
    """
    b, _, n = x.shape
    x = x * torch.empty(b, 1, 1).uniform_(0.85, 1.15, generator=gen)
    x = x + 0.03 * torch.randn(x.shape, generator=gen)
    crop = torch.rand(b, generator=gen) < 0.3
    for i in torch.nonzero(crop).flatten().tolist():
        length = int(torch.randint(800, n, (1,), generator=gen))
        start = int(torch.randint(0, n - length + 1, (1,), generator=gen))
        seg = x[i, :, start:start + length].clone()
        before = (n - length) // 2
        x[i] = pad_value
        x[i, :, before:before + length] = seg
    return x


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    sup, stm = [], []
    for i in range(0, len(x), batch):
        out = model.forward_all(torch.from_numpy(x[i:i + batch]))
        sup.append(out.superclass.float().numpy())
        stm.append(out.statements.float().numpy())
    return np.concatenate(sup), np.concatenate(stm)


def train_member(*, data_dir: str, cache_dir: str, out_dir: str, cfg: TrainConfig) -> dict:
    """Train, keep the best fold-9 epoch, write ``member-<seed>.pt`` and its run record; return the record."""
    started = time.time()
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train = load_folds(data_dir, TRAIN_FOLDS, cache_dir)
    valid = load_folds(data_dir, VALID_FOLDS, cache_dir)
    st = Standardizer.fit(train.signals)
    x_train, x_valid = standardized(train, st), standardized(valid, st)
    pad_value = torch.from_numpy(((0 - np.array(st.mean)) / np.array(st.std)).astype(np.float32))[:, None]
    y_sup = torch.from_numpy(train.superclass)
    y_stm = torch.from_numpy(train.statements)
    has_sup = torch.from_numpy(train.has_superclass.astype(np.float32))

    # Head sizes follow the label space the data was encoded with (5 and 71 for PTB-XL).
    cfg = replace(cfg, model=replace(cfg.model, n_superclasses=train.superclass.shape[1],
                                     n_statements=train.statements.shape[1]))
    model = EcgResNet(cfg.model)
    steps_per_epoch = int(np.ceil(len(train) / cfg.batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.25)
    bce = nn.BCEWithLogitsLoss(reduction="none")
    gen = torch.Generator().manual_seed(cfg.seed)
    print(f"member seed={cfg.seed}: {count_parameters(model):,} parameters, {len(train)} train / "
          f"{len(valid)} valid records, {cfg.epochs} epochs")

    commit = git_commit()
    data_fp = {"train": fingerprint(train), "valid": fingerprint(valid)}
    tags = {"kind": "train_member", "git_commit": commit, "data_fingerprint.train": data_fp["train"],
            "data_fingerprint.valid": data_fp["valid"], "torch": torch.__version__}
    params = {"config": {**asdict(cfg), "model": cfg.model.to_dict()}, "train_folds": TRAIN_FOLDS,
              "valid_folds": VALID_FOLDS, "n_train": len(train), "n_valid": len(valid),
              "parameters": count_parameters(model)}
    with tracked_run(f"train member-{cfg.seed}", params=params, tags=tags) as run:
        best: dict = {"score": -1.0}
        history = []
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            t0 = time.time()
            order = torch.randperm(len(train), generator=gen)
            total = 0.0
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{cfg.epochs}", leave=False, unit="step")
            for step in bar:
                idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                xb = augment(torch.from_numpy(x_train[idx.numpy()]), pad_value, gen)  # (b, 12, 1000)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                    o = model.forward_all(xb)
                mask = has_sup[idx][:, None]
                loss_sup = ((bce(o.superclass.float(), y_sup[idx]) * mask).sum()
                            / (mask.sum() * y_sup.shape[1]).clamp(min=1))
                loss_stm = bce(o.statements.float(), y_stm[idx]).mean()
                loss = loss_sup + loss_stm
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item()
                bar.set_postfix(loss=f"{total / (step + 1):.4f}")
            sup_logits, stm_logits = predict_logits(model, x_valid)
            m = valid.has_superclass
            auc_sup = macro_auc(valid.superclass[m], sup_logits[m])
            auc_stm = macro_auc(valid.statements, stm_logits)
            score = (auc_sup + auc_stm) / 2
            history.append({"epoch": epoch, "loss": total / steps_per_epoch, "valid_superclass_auc": auc_sup,
                            "valid_statements_auc": auc_stm, "seconds": time.time() - t0})
            mark = ""
            if score > best["score"]:
                best = {"score": score, "epoch": epoch, "superclass_auc": auc_sup, "statements_auc": auc_stm}
                torch.save({"config": cfg.model.to_dict(), "state_dict": model.state_dict(),
                            "standardizer": st.to_dict(), "seed": cfg.seed}, out / f"member-{cfg.seed}.pt")
                mark = " *"
            run.metrics({k: v for k, v in history[-1].items() if k != "epoch"}, step=epoch)
            print(f"epoch {epoch:2d}/{cfg.epochs} loss {total / steps_per_epoch:.4f}  fold-9 AUC superclass "
                  f"{auc_sup:.4f} statements {auc_stm:.4f}  {time.time() - t0:.0f}s{mark}", flush=True)

        record = {
            "kind": "train_member",
            "config": {**asdict(cfg), "model": cfg.model.to_dict()},
            "train_folds": list(TRAIN_FOLDS),
            "valid_folds": list(VALID_FOLDS),
            "data_fingerprint": data_fp,
            "n_train": len(train),
            "n_valid": len(valid),
            "parameters": count_parameters(model),
            "git_commit": commit,
            "torch": torch.__version__,
            "best": best,
            "history": history,
            "seconds": round(time.time() - started, 1),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        record_path = out / f"member-{cfg.seed}.run.json"
        record_path.write_text(json.dumps(record, indent=2))
        run.metrics({f"best_{k}": v for k, v in best.items()} | {"run_seconds": record["seconds"]})
        run.artifact(record_path)
    print(f"best epoch {best['epoch']}: fold-9 superclass AUC {best['superclass_auc']:.4f}, "
          f"statements AUC {best['statements_auc']:.4f}; {record['seconds']:.0f}s")
    return record
