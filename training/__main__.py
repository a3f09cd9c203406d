"""python -m training --dataset samm --dataset-path PATH --labels seed6 --input apex --arch seed_cbam
--protocol loso --epochs 15 --out runs/NAME"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys

from mer.models import list_models

from .inputs import INPUTS
from .protocols import PROTOCOLS
from .train import ARCH_DEFAULTS, TrainConfig, run


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training",
        description="Train a micro-expression classifier and evaluate it honestly (LOSO by default). "
                    "Writes metrics.json, predictions.csv, confusion.png/.html, report.md and "
                    "model.safetensors + model.json into --out. Re-running the same command resumes "
                    "finished folds.",
        epilog="Arch defaults (epochs/lr/batch/size): " + "; ".join(
            f"{a}: {d['epochs']}/{d['lr']}/{d['batch_size']}/{d['size']}" for a, d in ARCH_DEFAULTS.items()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--dataset", default="samm", help="samm, casme2, smic, folder, composite, or a comma list (samm,casme2)")
    a("--dataset-path", "--dataset_path", dest="dataset_path", required=True,
      help="dataset root(s), comma separated in the order of --dataset")
    a("--labels", default="seed6", help="label set: seed6, samm5, composite3; with --dataset folder, 'own' keeps the folder's class names")
    a("--input", default="apex", choices=INPUTS)
    a("--arch", default="seed_cbam", choices=list_models())
    a("--protocol", default="loso", choices=PROTOCOLS,
      help="random-frames is the original's LEAKY split, kept only for comparison")
    a("--out", required=True, help="run folder")
    a("--epochs", type=int, default=None); a("--lr", type=float, default=None)
    a("--weight-decay", type=float, default=None)
    a("--batch-size", type=int, default=None,
      help="samples per step; default: the arch's recipe (16 for the seed nets, as in the original). Larger "
           "batches (64-256) keep a GPU busy and train several times more samples/s, but they are another "
           "recipe (fewer, larger steps; scale --lr with them): scores are then not comparable with the default's")
    a("--size", type=int, default=None, help="input side in pixels (arch default)")
    a("--color", default="gray", choices=["gray", "rgb"])
    a("--frame-step", type=int, default=1, help="frames input: use every n-th frame")
    a("--flow-third", default="magnitude", choices=["magnitude", "strain"])
    a("--folds", type=int, default=5, help="kfold-subject: number of folds")
    a("--test-size", type=float, default=0.2, help="random-frames: test fraction")
    a("--seed", type=int, default=0)
    a("--init", default="scratch",
      help="scratch (random weights), fer2013 (mini_xception / mini_xception_cbam start from the shipped FER2013 "
           "macro-expression weights: every backbone tensor loaded, a new classifier for the label set, CBAM "
           "fresh), or a .safetensors checkpoint to start from the same way")
    a("--class-weights", action="store_true", help="inverse-frequency class weights in the loss")
    a("--no-augment", dest="augment", action="store_false")
    a("--early-stopping", type=int, default=0, metavar="PATIENCE",
      help="stop on a validation split by subject inside each training fold; 0 = fixed epochs")
    a("--no-final", dest="final", action="store_false", help="skip the final model on all data")
    a("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    a("--no-amp", dest="amp", action="store_false", help="no mixed precision on CUDA")
    a("--deterministic", action="store_true", help="deterministic cuDNN (slower) instead of benchmark")
    a("--threads", type=int, default=0, help="torch CPU threads (0 = all cores)")
    a("--trained-on", default="", help="text for the model card's trained_on")
    a("--notes", default="", help="extra text for the model card's notes")
    a("--no-progress", dest="progress", action="store_false")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = TrainConfig(**vars(args), command="python -m training " + shlex.join(argv))
    try:
        m = run(cfg)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished folds are kept; run the same command again to resume", file=sys.stderr)
        return 130
    line = {k: round(m[k], 4) for k in ("uf1", "uar", "acc")}
    print(json.dumps({"protocol": m["protocol"], "leaky": m["leaky"], **line, "out": cfg.out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
