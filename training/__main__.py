"""python -m training {cache,train,calibrate,export,reference,evaluate,bench} ... (see --help of each)."""
from __future__ import annotations

import argparse
import sys

DEFAULT_CACHE = ".cache/ptbxl"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.replace(",", " ").split())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("cache", help="read PTB-XL records once into per-fold arrays")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--cache-dir", default=DEFAULT_CACHE)
    p.add_argument("--folds", type=_ints, default=tuple(range(1, 10)))

    p = sub.add_parser("train", help="train one ensemble member on folds 1-8, select on fold 9")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--cache-dir", default=DEFAULT_CACHE)
    p.add_argument("--out", default="runs")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--widths", type=_ints, default=(64, 128, 192))
    p.add_argument("--depths", type=_ints, default=(1, 2, 2))
    p.add_argument("--kernel", type=int, default=5)
    p.add_argument("--no-bf16", action="store_true", help="train in fp32 (slower; for CPUs without BF16)")
    p.add_argument("--threads", type=int, default=0)

    p = sub.add_parser("calibrate", help="fit per-class temperatures and thresholds on fold 9")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--cache-dir", default=DEFAULT_CACHE)
    p.add_argument("--members", nargs="+", required=True, help="member-*.pt files written by train")
    p.add_argument("--out", default="runs/calibration.json")

    p = sub.add_parser("export", help="write members, manifest and fold-9 report to a weights directory")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--cache-dir", default=DEFAULT_CACHE)
    p.add_argument("--members", nargs="+", required=True)
    p.add_argument("--calibration", default="runs/calibration.json")
    p.add_argument("--out", default="mlcore/weights")
    p.add_argument("--version", required=True, help="model version, e.g. resnet1d-ens3-2026.11")

    p = sub.add_parser("reference", help="fold-9 drift features, probabilities and labels for monitoring")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--cache-dir", default=DEFAULT_CACHE)
    p.add_argument("--weights", default=None, help="weights directory (default: mlcore/weights)")

    p = sub.add_parser("evaluate", help="score the exported ensemble on any folds (default 10)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--cache-dir", default=DEFAULT_CACHE, help="'' to read records without caching")
    p.add_argument("--folds", type=_ints, nargs="+", default=[(10,)])
    p.add_argument("--weights", default=None, help="weights directory (default: mlcore/weights)")
    p.add_argument("--out", default=None, help="write the JSON report here")
    p.add_argument("--bootstrap", type=int, default=200, help="test-set resamples for the 90%% CI")

    p = sub.add_parser("bench", help="latency, throughput, Grad-CAM time and memory of the exported ensemble")
    p.add_argument("--weights", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)

    args = ap.parse_args(argv)
    if args.cmd == "cache":
        from mlcore.ptbxl import load_folds
        split = load_folds(args.data_dir, args.folds, args.cache_dir)
        print(f"{len(split)} records of folds {list(args.folds)} cached under {args.cache_dir}")
    elif args.cmd == "train":
        from mlcore.model import ModelConfig
        from training.train import TrainConfig, train_member
        cfg = TrainConfig(seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          weight_decay=args.weight_decay, bf16=not args.no_bf16, threads=args.threads,
                          model=ModelConfig(widths=args.widths, depths=args.depths, kernel=args.kernel,
                                            dropout=args.dropout))
        train_member(data_dir=args.data_dir, cache_dir=args.cache_dir, out_dir=args.out, cfg=cfg)
    elif args.cmd == "calibrate":
        from pathlib import Path

        from training.export import calibrate
        calibrate(member_paths=[Path(m) for m in args.members], data_dir=args.data_dir, cache_dir=args.cache_dir,
                  out=Path(args.out))
    elif args.cmd == "export":
        from pathlib import Path

        from training.export import export
        export(member_paths=[Path(m) for m in args.members], calibration=Path(args.calibration),
               data_dir=args.data_dir, cache_dir=args.cache_dir, out_dir=Path(args.out), version=args.version)
    elif args.cmd == "reference":
        from mlcore.ensemble import DEFAULT_WEIGHTS
        from training.reference import build_reference
        build_reference(weights=args.weights or str(DEFAULT_WEIGHTS), data_dir=args.data_dir,
                        cache_dir=args.cache_dir or None)
    elif args.cmd == "evaluate":
        from mlcore.ensemble import DEFAULT_WEIGHTS
        from training.evaluate import evaluate
        folds = tuple(f for group in args.folds for f in group)
        evaluate(weights=args.weights or str(DEFAULT_WEIGHTS), data_dir=args.data_dir, folds=folds,
                 cache_dir=args.cache_dir or None, out=args.out, n_boot=args.bootstrap)
    elif args.cmd == "bench":
        from mlcore.ensemble import DEFAULT_WEIGHTS
        from training.bench import bench
        bench(args.weights or str(DEFAULT_WEIGHTS), args.threads, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
