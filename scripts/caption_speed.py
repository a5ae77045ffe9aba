#!/usr/bin/env python3
"""CPU speed of captioning with the real architecture of small vision-language models.

No weights can be downloaded here, so this builds each model with its published architecture
(the config values below are those of the models' config.json on their model cards) and random
weights, and times what MLLMCaption does: one image through the vision encoder and the prompt
(prefill), then N generated tokens (forced: random weights never stop early). The arithmetic,
and so the time, is the same as with the real weights; the text is noise.

    .venv/bin/python scripts/caption_speed.py [--tokens 128] [--threads 1] [--tiles 1,5]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

# Idefics3 (SmolVLM v1) architectures: SigLIP base patch16/512 vision encoder + SmolLM2 text model.
SMOLVLM = {
    "SmolVLM-256M-Instruct": dict(text=dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                            num_attention_heads=9, num_key_value_heads=3)),
    "SmolVLM-500M-Instruct": dict(text=dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
                                            num_attention_heads=15, num_key_value_heads=5)),
}
VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              image_size=512, patch_size=16)


def build(name: str):
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration
    cfg = Idefics3Config(text_config=dict(model_type="llama", vocab_size=49280, max_position_embeddings=8192,
                                          rope_theta=100000.0, tie_word_embeddings=True, **SMOLVLM[name]["text"]),
                         vision_config=VISION, scale_factor=4, image_token_id=49190)
    torch.manual_seed(0)
    model = Idefics3ForConditionalGeneration(cfg).eval()
    return model, sum(p.numel() for p in model.parameters())


@torch.inference_mode()
def time_caption(model, tiles: int, prompt_tokens: int, new_tokens: int) -> dict:
    """``tiles`` 512 px image tiles (64 image tokens each) + a prompt, then ``new_tokens`` generated."""
    n_img = 64 * tiles
    ids = torch.randint(0, 49000, (1, prompt_tokens + n_img))
    ids[0, 1:1 + n_img] = model.config.image_token_id
    pixels = torch.rand(1, tiles, 3, 512, 512)
    t0 = time.perf_counter()
    model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels, max_new_tokens=1,
                   min_new_tokens=1, do_sample=False)
    prefill = time.perf_counter() - t0
    vision = model.model.vision_model
    calls = []
    hook = vision.register_forward_hook(lambda *_: calls.append(1))  # the image must be encoded once
    t0 = time.perf_counter()
    model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels,
                   max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    total = time.perf_counter() - t0
    hook.remove()
    return {"tiles": tiles, "image_tokens": n_img, "prefill_s": round(prefill, 2), "total_s": round(total, 2),
            "tokens_per_s": round((new_tokens - 1) / max(total - prefill, 1e-6), 1),
            "vision_encoder_calls": len(calls)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; keep at or below the free cores (threads stall on a busy CPU)")
    ap.add_argument("--models", default=",".join(SMOLVLM))
    ap.add_argument("--tiles", default="1,5", help="image tiles per caption (64 image tokens each), comma list")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print("| model (random weights, real architecture) | parameters | image | prefill (s) | "
          f"{args.tokens} tokens total (s) | tokens/s |\n|---|---|---|---|---|---|")
    for name in args.models.split(","):
        model, n = build(name)
        for tiles in (int(t) for t in args.tiles.split(",")):
            label = f"{tiles} tile{'s' if tiles > 1 else ''} ({64 * tiles} image tokens)"
            r = time_caption(model, tiles, 180, args.tokens)
            print(f"| {name} | {n / 1e6:.0f} M | {label} | {r['prefill_s']} | {r['total_s']} | {r['tokens_per_s']} |",
                  flush=True)
            print(json.dumps({"model": name, **r}), flush=True)
        del model


if __name__ == "__main__":
    main()
