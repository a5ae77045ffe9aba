"""Copy a training run's EMA weights into weights/ as the shipped default, with its model card.

    .venv/bin/python scripts/ship_weights.py runs/default [--eval eval.md]

Writes weights/m3unet-default.safetensors (config and training metadata inside),
weights/m3unet-default.md (the run's model card, plus the evaluation table if given) and
weights/m3unet-default.train-log.jsonl (loss and validation PSNR by step).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run", type=Path)
    p.add_argument("--eval", type=Path, default=None, help="Markdown evaluation table to append to the card")
    p.add_argument("--name", default="m3unet-default")
    a = p.parse_args()
    dst = REPO / "weights"
    dst.mkdir(exist_ok=True)
    shutil.copyfile(a.run / "model.safetensors", dst / f"{a.name}.safetensors")
    shutil.copyfile(a.run / "log.jsonl", dst / f"{a.name}.train-log.jsonl")
    card = (a.run / "MODEL_CARD.md").read_text()
    if a.eval:
        card += "\n## Evaluation (held-out photos)\n\n" + a.eval.read_text()
    (dst / f"{a.name}.md").write_text(card)
    print(f"shipped {a.run} as weights/{a.name}.safetensors")


if __name__ == "__main__":
    main()
