"""A random-weight Stable Diffusion 1.5 checkpoint that ComfyUI loads as SD1.5 (for workflow tests).

ComfyUI's model detection reads the state-dict key layout and shapes of the original LDM
checkpoint format (``model.diffusion_model.*``, ``first_stage_model.*``,
``cond_stage_model.transformer.text_model.*``), so the file must have the full SD1.5 layout and
sizes: ComfyUI's own UNet (its SD15 config), VAE (its ddconfig) and CLIP-L text model are built
on the meta device to list every key and shape, and filled with seeded random fp16 values (norm
weights 1, biases 0, the rest N(0, 0.02)). About 1.07 billion parameters, 2.1 GB. Built once into
the host cache (``.host/cache``) and reused; nothing is downloaded. The images it makes are
noise: it exercises the loading and sampling path, not quality.

Run as a script with ComfyUI importable: ``python sd15_random.py COMFY_ROOT OUT_FILE``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FILE_NAME = "v1-5-pruned-emaonly.safetensors"  # the name ComfyUI's default workflow uses
VERSION = "v1"


def cached_checkpoint(comfy_root: Path, cache_dir: Path) -> Path:
    """Build (once) and return the random SD1.5 checkpoint in ``cache_dir``."""
    out = Path(cache_dir) / f"sd15-random-{VERSION}.safetensors"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, __file__, str(comfy_root), str(out)], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    return out


def _build(comfy_root: str, out: str) -> None:
    import json

    sys.path.insert(0, comfy_root)
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import torch
    from safetensors.torch import save_file

    import comfy.clip_model
    import comfy.ops
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    ops = comfy.ops.disable_weight_init
    shapes: dict[str, tuple[int, ...]] = {}
    with torch.device("meta"):
        unet_cfg = {'use_checkpoint': False, 'image_size': 32, 'out_channels': 4, 'use_spatial_transformer': True,
                    'legacy': False, 'adm_in_channels': None, 'in_channels': 4, 'model_channels': 320,
                    'num_res_blocks': [2, 2, 2, 2], 'transformer_depth': [1, 1, 1, 1, 1, 1, 0, 0],
                    'channel_mult': [1, 2, 4, 4], 'transformer_depth_middle': 1, 'use_linear_in_transformer': False,
                    'context_dim': 768, 'num_heads': 8,
                    'transformer_depth_output': [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
                    'use_temporal_attention': False, 'use_temporal_resblock': False}
        unet = UNetModel(**unet_cfg, dtype=torch.float16, device="meta", operations=ops)
        shapes.update({"model.diffusion_model." + k: tuple(v.shape) for k, v in unet.state_dict().items()})
        ddconfig = {'double_z': True, 'z_channels': 4, 'resolution': 256, 'in_channels': 3, 'out_ch': 3, 'ch': 128,
                    'ch_mult': [1, 2, 4, 4], 'num_res_blocks': 2, 'attn_resolutions': [], 'dropout': 0.0}
        vae = AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
        shapes.update({"first_stage_model." + k: tuple(v.shape) for k, v in vae.state_dict().items()})
        cfg = json.loads((Path(comfy_root) / "comfy" / "sd1_clip_config.json").read_text())
        clip = comfy.clip_model.CLIPTextModel(cfg, torch.float16, "meta", ops)
        shapes.update({"cond_stage_model.transformer." + k: tuple(v.shape) for k, v in clip.state_dict().items()
                       if not k.startswith("text_projection")})
    gen = torch.Generator().manual_seed(0)
    sd = {}
    for k, shape in shapes.items():
        name = k.rsplit(".", 1)[-1]
        if "norm" in k and name == "weight":
            t = torch.ones(shape, dtype=torch.float16)
        elif name == "bias":
            t = torch.zeros(shape, dtype=torch.float16)
        elif "position_ids" in k:
            t = torch.arange(shape[-1]).expand(shape).clone()
        else:
            t = (torch.randn(shape, generator=gen) * 0.02).to(torch.float16)
        sd[k] = t
    tmp = out + ".partial"
    save_file(sd, tmp, metadata={"about": "random weights in the SD1.5 layout, for tests only"})
    os.replace(tmp, out)
    print(f"{out}: {len(sd)} tensors, {sum(t.numel() for t in sd.values()) / 1e9:.2f} B parameters")


if __name__ == "__main__":
    _build(sys.argv[1], sys.argv[2])
