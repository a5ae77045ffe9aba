#!/usr/bin/env python3
"""CPU speed of one caption with the real architectures of the vision-language models in docs/caption.md.

No weights can be downloaded here, so each model is built from its published architecture (the values
below are those of its config.json and preprocessor_config.json on the model card) with random weights,
and timed doing what MLLMCaption does: one image through the vision encoder and the prompt (prefill),
then N generated tokens (forced: random weights never stop early). The arithmetic, and so the time, is
that of the real weights; the text is noise. One ``generate`` call per caption; the prefill time is
taken when the first new token's logits arrive, so the vision encoder and the prompt run once.

The image inputs are what each family's processor makes of an ``--image-size`` px square image:
- SmolVLM (idefics3): 512 px tiles of 64 image tokens each. Its published processor resizes the long
  side to 2048 px and cuts 512 px tiles plus one global tile, so any image becomes 17 tiles when square
  (``--tiles auto``); ``--tiles 1`` is the cost with image splitting off.
- Qwen2-VL / Qwen2.5-VL: the real Qwen2VLProcessor (14 px patches, 2x2 merged into one token).
- LLaVA-OneVision: the real LlavaOnevisionProcessor (384 px crops on the best any-res grid + the whole
  image, 729 tokens per crop, newline tokens).
- BLIP: the real BlipImageProcessor (one 384 px image, 577 vision tokens seen through cross-attention).
  BLIP captions unprompted (as MLLMCaption uses it): its prompt is the decoder's start token.
The chat models get a 180-token prompt. Their processors run with a word-level stand-in tokenizer that
has the family's special tokens at their real ids (token ids do not change the arithmetic).

Reported per caption: wall seconds and this process's CPU seconds (``time.process_time``). On a core of
its own the two agree. When other jobs share the core the wall time grows with their share (6-12x in
the run in docs/caption.md) and the CPU time much less (~1.35x: caches and memory bandwidth are shared too), so
the CPU columns are the better figure of the model's cost. Run on one core, e.g.

    taskset -c 1 nice -n 10 .venv/bin/python scripts/caption_speed.py --threads 1 [--models NAME,...]
        [--tokens 128] [--image-size 1024] [--tiles 1,auto]
"""
from __future__ import annotations

import argparse
import gc
import json
import time

import torch

PROMPT_TOKENS = 180
WORDS = 1000          # stand-in prompt words w0..w999 ...
WORD_ID0 = 1000       # ... at token ids 1000..1999 (inside every vocabulary here)
OPENAI_CLIP = dict(image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])

# config.json of each model card (the architecture keys). Idefics3 = SmolVLM v1: SigLIP base patch16/512
# + SmolLM2; the published Idefics3 processor: size.longest_edge 2048, max_image_size.longest_edge 512.
SMOLVLM_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      image_size=512, patch_size=16)
QWEN_IDS = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
                vision_end_token_id=151653, bos_token_id=151643, eos_token_id=151645)
QWEN_TEXT = dict(vocab_size=151936, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
                 use_sliding_window=False, sliding_window=32768,
                 rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]})
MODELS: dict[str, tuple[str, dict]] = {
    "SmolVLM-256M-Instruct": ("idefics3", dict(text_config=dict(
        model_type="llama", vocab_size=49280, max_position_embeddings=8192, rope_theta=100000.0,
        tie_word_embeddings=True, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3), vision_config=SMOLVLM_VISION, scale_factor=4,
        image_token_id=49190)),
    "SmolVLM-500M-Instruct": ("idefics3", dict(text_config=dict(
        model_type="llama", vocab_size=49280, max_position_embeddings=8192, rope_theta=100000.0,
        tie_word_embeddings=True, hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
        num_attention_heads=15, num_key_value_heads=5), vision_config=SMOLVLM_VISION, scale_factor=4,
        image_token_id=49190)),
    "Qwen2-VL-2B-Instruct": ("qwen2_vl", dict(
        hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, max_position_embeddings=32768, max_window_layers=28, **QWEN_TEXT,
        vision_config=dict(depth=32, embed_dim=1280, mlp_ratio=4, num_heads=16, in_chans=3, hidden_size=1536,
                           patch_size=14, spatial_merge_size=2, spatial_patch_size=14, temporal_patch_size=2),
        **QWEN_IDS)),
    "Qwen2.5-VL-3B-Instruct": ("qwen2_5_vl", dict(
        hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
        num_key_value_heads=2, max_position_embeddings=128000, max_window_layers=70, **QWEN_TEXT,
        vision_config=dict(depth=32, hidden_act="silu", hidden_size=1280, intermediate_size=3420, num_heads=16,
                           in_chans=3, out_hidden_size=2048, patch_size=14, spatial_merge_size=2,
                           spatial_patch_size=14, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
                           tokens_per_second=2, temporal_patch_size=2),
        **QWEN_IDS)),
    # llava-hf conversion: Qwen2-0.5B-Instruct text model (vocabulary + <image>, <video>, padded to 152000)
    # and SigLIP so400m/14 at 384 px without its last layer and head.
    "llava-onevision-qwen2-0.5b-ov-hf": ("llava_onevision", dict(
        text_config=dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=152000,
                         max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1000000.0,
                         tie_word_embeddings=True, max_window_layers=24, sliding_window=131072,
                         use_sliding_window=False, bos_token_id=151643, eos_token_id=151645),
        vision_config=dict(model_type="siglip_vision_model", hidden_size=1152, image_size=384,
                           intermediate_size=4304, num_attention_heads=16, num_hidden_layers=26, patch_size=14,
                           vision_use_head=False),
        image_token_index=151646, video_token_index=151647, projector_hidden_act="gelu",
        vision_feature_select_strategy="full", vision_feature_layer=-1, vision_aspect_ratio="anyres_max_9",
        use_image_newline_parameter=True, tie_word_embeddings=True)),
    "blip-image-captioning-base": ("blip", dict(
        text_config=dict(vocab_size=30524, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=512, layer_norm_eps=1e-12,
                         hidden_act="gelu", bos_token_id=30522, eos_token_id=2, sep_token_id=102, pad_token_id=0),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=384, patch_size=16, layer_norm_eps=1e-5, hidden_act="gelu"),
        projection_dim=512, image_text_hidden_size=256)),
}
DEFAULT_MODELS = ("SmolVLM-256M-Instruct,SmolVLM-500M-Instruct,Qwen2-VL-2B-Instruct,"
                  "llava-onevision-qwen2-0.5b-ov-hf,blip-image-captioning-base")

def _image(size: int):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def _tokenizer(special: dict[str, int], unk: str, **roles):
    """Word-level stand-in tokenizer: ``special`` tokens at their real ids + the prompt words."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {**special, **{f"w{i}": WORD_ID0 + i for i in range(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=unk, **roles)


def _chat_inputs(processor, image, placeholder: str) -> tuple[dict, int]:
    """The processor's inputs for ``placeholder`` + prompt words, 180 text tokens in all; image tokens."""
    image_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    head = processor(images=[image], text=[placeholder], return_tensors="pt")["input_ids"][0]
    n_img = int((head == image_id).sum())
    picks = torch.randint(0, WORDS, (PROMPT_TOKENS - (len(head) - n_img),), generator=torch.Generator().manual_seed(0))
    words = " ".join(f"w{int(i)}" for i in picks)
    inputs = dict(processor(images=[image], text=[f"{placeholder} {words}"], return_tensors="pt"))
    assert inputs["input_ids"].shape[1] == n_img + PROMPT_TOKENS
    return inputs, n_img


def smolvlm(cfg: dict, image_size: int, tiles: list[str]):
    """Idefics3 (SmolVLM v1): ``tiles`` 512 px tiles (``auto``: the published processor's count) x 64 tokens."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor
    model = Idefics3ForConditionalGeneration(Idefics3Config(**cfg)).eval()
    ip = Idefics3ImageProcessor(size={"longest_edge": 2048}, max_image_size={"longest_edge": 512}, resample=1,
                                do_image_splitting=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    cases = []
    for t in tiles:
        n = int(t) if t != "auto" else ip(images=[[_image(image_size)]], return_tensors="pt")["pixel_values"].shape[1]
        ids = torch.randint(0, 49000, (1, PROMPT_TOKENS + 64 * n), generator=torch.Generator().manual_seed(0))
        ids[0, 1:1 + 64 * n] = model.config.image_token_id
        label = f"{n} tile{'s' if n > 1 else ''} ({64 * n} image tokens)"
        label = f"{image_size} px: {label}" if t == "auto" else label
        cases.append((label, dict(input_ids=ids, attention_mask=torch.ones_like(ids),
                                  pixel_values=torch.rand(1, n, 3, 512, 512))))
    return model, model.model.vision_model, cases


def qwen_vl(family: str, cfg: dict, image_size: int):
    """Qwen2-VL / Qwen2.5-VL: 14 px patches of the (resized) image, 2x2 patches merged into one token."""
    import transformers as tf
    config_cls, model_cls = ((tf.Qwen2VLConfig, tf.Qwen2VLForConditionalGeneration) if family == "qwen2_vl"
                             else (tf.Qwen2_5_VLConfig, tf.Qwen2_5_VLForConditionalGeneration))
    model = model_cls(config_cls(**cfg)).eval()
    special = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|vision_start|>": 151652,
               "<|vision_end|>": 151653, "<|image_pad|>": 151655, "<|video_pad|>": 151656}
    tok = _tokenizer(special, "<|endoftext|>", pad_token="<|endoftext|>", eos_token="<|im_end|>")
    ip = tf.Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056, patch_size=14, merge_size=2,
                                  temporal_patch_size=2, **OPENAI_CLIP)
    processor = tf.Qwen2VLProcessor(image_processor=ip, tokenizer=tok, video_processor=tf.Qwen2VLVideoProcessor())
    inputs, n_img = _chat_inputs(processor, _image(image_size), "<|vision_start|><|image_pad|><|vision_end|>")
    h, w = (int(v) * 14 for v in inputs["image_grid_thw"][0, 1:])
    return model, model.model.visual, [(f"{image_size} px -> {w}x{h} ({n_img} image tokens)", inputs)]


def llava_onevision(cfg: dict, image_size: int):
    """LLaVA-OneVision: 384 px crops (any-res grid + whole image), 729 tokens each, + newline tokens."""
    import transformers as tf
    model = tf.LlavaOnevisionForConditionalGeneration(tf.LlavaOnevisionConfig(**cfg)).eval()
    special = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<image>": 151646,
               "<video>": 151647}
    tok = _tokenizer(special, "<|endoftext|>", pad_token="<|endoftext|>", eos_token="<|im_end|>")
    ip = tf.LlavaOnevisionImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3)  # SigLIP normalisation
    processor = tf.LlavaOnevisionProcessor(image_processor=ip, tokenizer=tok,
                                           video_processor=tf.LlavaOnevisionVideoProcessor(), num_image_tokens=729,
                                           vision_feature_select_strategy="full")
    inputs, n_img = _chat_inputs(processor, _image(image_size), "<image>")
    crops = inputs["pixel_values"].shape[1]
    return model, model.model.vision_tower, [(f"{image_size} px -> {crops} crops of 384 px ({n_img} image tokens)",
                                              inputs)]


def blip(cfg: dict, image_size: int):
    """BLIP: one 384 px image (577 vision tokens, cross-attended), unprompted caption."""
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor
    model = BlipForConditionalGeneration(BlipConfig(**cfg)).eval()
    pixels = BlipImageProcessor(size={"height": 384, "width": 384}, **OPENAI_CLIP)(
        images=_image(image_size), return_tensors="pt")["pixel_values"]
    n = (pixels.shape[-1] // 16) ** 2 + 1
    return model, model.vision_model, [(f"{image_size} px -> 384 px ({n} vision tokens; no prompt)",
                                        dict(pixel_values=pixels))]


def build(name: str, image_size: int, tiles: list[str]):
    """(model, vision encoder module, [(image label, generate inputs)]) for ``name`` with random weights."""
    if name not in MODELS:
        raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    family, cfg = MODELS[name]
    torch.manual_seed(0)
    if family == "idefics3":
        return smolvlm(cfg, image_size, tiles)
    if family in ("qwen2_vl", "qwen2_5_vl"):
        return qwen_vl(family, cfg, image_size)
    if family == "llava_onevision":
        return llava_onevision(cfg, image_size)
    return blip(cfg, image_size)


def _clock() -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds)."""
    return time.perf_counter(), time.process_time()


class _FirstToken:
    """Logits processor that notes ``_clock()`` when the first new token's logits arrive (prefill done)."""

    at: tuple[float, float] | None = None

    def __call__(self, input_ids, scores):
        if self.at is None:
            self.at = _clock()
        return scores


@torch.inference_mode()
def time_caption(model, vision, inputs: dict, new_tokens: int) -> dict:
    """One caption: prefill (vision encoder + prompt, up to the first new token) and ``new_tokens`` in all."""
    from transformers import LogitsProcessorList
    calls = []
    hook = vision.register_forward_hook(lambda *_: calls.append(1))  # the image must be encoded once
    first = _FirstToken()
    w0, c0 = _clock()
    out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                         logits_processor=LogitsProcessorList([first]))
    w1, c1 = _clock()
    hook.remove()
    prompt_len = inputs["input_ids"].shape[1] if "input_ids" in inputs else 1  # BLIP starts from its start token
    assert out.shape[1] - prompt_len == new_tokens, (out.shape, prompt_len)
    pw, pc = first.at[0] - w0, first.at[1] - c0
    return {"prefill_s": round(pw, 2), "prefill_cpu_s": round(pc, 2), "total_s": round(w1 - w0, 2),
            "total_cpu_s": round(c1 - c0, 2),
            "tokens_per_s": round((new_tokens - 1) / max(w1 - w0 - pw, 1e-6), 1),
            "tokens_per_cpu_s": round((new_tokens - 1) / max(c1 - c0 - pc, 1e-6), 1),
            "vision_encoder_calls": len(calls)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; keep at or below the free cores (threads stall on a busy CPU)")
    ap.add_argument("--models", default=DEFAULT_MODELS,
                    help=f"comma list of: {', '.join(MODELS)} (default: all but Qwen2.5-VL-3B, 15 GB in fp32)")
    ap.add_argument("--image-size", type=int, default=1024, help="side of the square test image, px")
    ap.add_argument("--tiles", default="1,auto",
                    help="SmolVLM only: 512 px tiles per caption (64 image tokens each), comma list; "
                         "auto = what its processor makes of --image-size")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n = args.tokens
    print("| model (random weights, real architecture) | parameters | image | prefill (s) | prefill CPU (s) | "
          f"{n} tokens total (s) | total CPU (s) | tokens/s | tokens/CPU s |\n|---|---|---|---|---|---|---|---|---|",
          flush=True)
    for name in args.models.split(","):
        model, vision, cases = build(name, args.image_size, args.tiles.split(","))
        params = sum(p.numel() for p in model.parameters())
        for label, inputs in cases:
            r = time_caption(model, vision, inputs, n)
            print(f"| {name} | {params / 1e6:.0f} M | {label} | {r['prefill_s']} | {r['prefill_cpu_s']} | "
                  f"{r['total_s']} | {r['total_cpu_s']} | {r['tokens_per_s']} | {r['tokens_per_cpu_s']} |", flush=True)
            print(json.dumps({"model": name, "image": label, **r}), flush=True)
        del model, vision, cases
        gc.collect()


if __name__ == "__main__":
    main()
