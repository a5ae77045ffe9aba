"""What a low-light (brightening) step does to dark and to normally exposed photos.

Evidence for the restore policy's exposure guard (``exposure_clip_rise``, ``clip_level``: see
``python -m m3unet policy``): the shipped M3UNet's low-light pass (a plan of one ``lowlight`` step,
rollback off, so it always runs) on the 256 px centre crops of the 9 validation photos, made dark
(low light 0.1 / 0.5, and 0.3 with noise 0.4) and left normally exposed (as is, and with a
Gaussian blur 0.45). Prints, per case, PSNR before and after and the
share of pixels with a channel at 0.98 or more (clipped) before and after, then a summary.

    .venv/bin/python scripts/exposure_probe.py       # about 2 minutes on 2 cores
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from m3unet.training import synthesis as deg  # noqa: E402
from m3unet.evaluation import quality as ev  # noqa: E402
from m3unet.auto.guards import clipped_share  # noqa: E402
from m3unet.auto.restorer import AutoRestorer, classifier_or_shipped  # noqa: E402
from m3unet.training.classifier import quantise  # noqa: E402
from m3unet.core.metrics import psnr  # noqa: E402
from m3unet.restore.pipeline import Restorer  # noqa: E402
from m3unet.auto.plan import Plan  # noqa: E402
from m3unet.auto.pool import Pool, shipped_tools  # noqa: E402
from m3unet.core.weights import load_model  # noqa: E402


def main() -> int:
    torch.set_num_threads(2)
    restorer = Restorer(load_model(None))
    auto = AutoRestorer(Pool(restorer, shipped_tools(restorer)), classifier_or_shipped(None))
    brighten = Plan.from_json(json.dumps([{"task": "lowlight", "strength": 0.1}]))
    rises: dict[str, list[float]] = {"dark": [], "normal": []}
    print("photo | case | PSNR in -> out (dB) | clipped in -> out")
    for i, (pid, arr) in enumerate(sorted(ev.evaluation_photos(None).items())):
        x = ev.center_crop(arr, 256)
        g = torch.Generator().manual_seed(7 + i)
        cases = {"dark 0.1": [deg.make("lowlight", 0.1, g)], "dark 0.5": [deg.make("lowlight", 0.5, g)],
                 "dark 0.3 + noise": [deg.make("lowlight", 0.3, g), deg.make("noise", 0.4, g)],
                 "normal": [], "normal + blur": [deg.make("blur", 0.45, g)]}
        for name, d in cases.items():
            y = quantise(deg.apply(x, d, torch.Generator().manual_seed(i)))
            out = auto.run(y.permute(1, 2, 0)[None], plan=brighten, seed=i, rollback=False).image[0].permute(2, 0, 1)
            c_in, c_out = clipped_share(y), clipped_share(out)
            rises["dark" if name.startswith("dark") else "normal"].append(c_out - c_in)
            print(f"{pid} | {name} | {float(psnr(y, x)):.2f} -> {float(psnr(out, x)):.2f} | {c_in:.3f} -> {c_out:.3f}",
                  flush=True)
    print(f"\nclipped share rise: dark photos (n={len(rises['dark'])}) max {max(rises['dark']):+.3f}; "
          f"normally exposed (n={len(rises['normal'])}) min {min(rises['normal']):+.3f}, "
          f"max {max(rises['normal']):+.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
