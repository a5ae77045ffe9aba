"""Tiny vision-language models of real transformers families, built offline for the tests.

Each builder makes a random model from a small config (hidden size 32, one layer), a word-level
tokenizer from a small vocabulary (``tokenizers`` WordLevel wrapped in PreTrainedTokenizerFast,
with the family's special tokens), the family's real processor classes and a chat template, and
then teaches it one sentence (a few dozen Adam steps on random images), so that greedy
generation through the real ``generate`` path says that sentence. Saved with ``save_pretrained``
(safetensors) into a folder that ``AutoProcessor`` / ``AutoModelForImageTextToText`` load with
``local_files_only=True``. No download.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

SENTENCE = "a photo of a cat on a red sofa . the image has heavy noise and slight blur ."
WORDS = ("red a photo of the cat dog on sofa . image has heavy noise and slight blur with moderate jpeg artifacts "
         "is describe this in two parts first what it shows then list quality problems").split()


def _teach_prompts() -> tuple[str, ...]:
    from m3unet.caption.mllm import PRESETS
    return tuple(PRESETS.values()) + ("describe this image",)


def _tokenizer(special: list[str], bos: str | None, eos: str, pad: str, unk: str):
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {w: i for i, w in enumerate(dict.fromkeys(special + list(WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.add_special_tokens([AddedToken(w, special=True, normalized=False) for w in special])
    kw = dict(tokenizer_object=tok, unk_token=unk, pad_token=pad, eos_token=eos)
    if bos:
        kw["bos_token"] = bos
    return PreTrainedTokenizerFast(**kw), vocab


def _random_images(n: int, gen: torch.Generator):
    import numpy as np
    from PIL import Image
    out = []
    for _ in range(n):
        h, w = (int(v) for v in torch.randint(24, 96, (2,), generator=gen))
        out.append(Image.fromarray(np.asarray(torch.randint(0, 256, (h, w, 3), generator=gen), dtype=np.uint8)))
    return out


def _teach(model, batches: Callable[[torch.Generator], tuple[dict, torch.Tensor]], steps: int = 160,
           settle: float = 0.005) -> None:
    """Teach ``model`` the sentence: Adam on (inputs, labels) from ``batches`` for ``steps``, then on
    until the mean loss of the last 20 steps is under ``settle`` (at most 4 x ``steps`` in all).
    Adam's path differs with the CPU's float kernels: on one machine the tiny LLaVA's loss was
    still 0.02 after 300 steps and it said "a photo of a photo of a red sofa"; settled, it is exact."""
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    recent: list[float] = []
    for i in range(4 * steps):
        inputs, labels = batches(gen)
        loss = model(**inputs, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        recent = (recent + [float(loss.detach())])[-20:]
        if i + 1 >= steps and len(recent) == 20 and sum(recent) / 20 < settle:
            break
    model.eval()


def _chat_batches(processor, eos: str, nested: bool):
    def batches(gen: torch.Generator):
        prompts = _teach_prompts()
        prompt = prompts[int(torch.randint(0, len(prompts), (), generator=gen))]
        image = _random_images(1, gen)
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        head = processor.apply_chat_template(msgs, add_generation_prompt=True)
        imgs = [image] if nested else image
        n_head = processor(images=imgs, text=[head], return_tensors="pt")["input_ids"].shape[1]
        inputs = dict(processor(images=imgs, text=[head + SENTENCE + " " + eos], return_tensors="pt"))
        labels = inputs["input_ids"].clone()
        labels[:, :n_head] = -100
        return inputs, labels
    return batches


def build_blip(folder: Path) -> Path:
    """BLIP (BlipForConditionalGeneration) with a BERT-style word-level tokenizer."""
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor
    tok, vocab = _tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"], "[DEC]", "[SEP]", "[PAD]", "[UNK]")
    tok.cls_token, tok.sep_token, tok.mask_token = "[CLS]", "[SEP]", "[MASK]"
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok)
    cfg = BlipConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64, bos_token_id=vocab["[DEC]"],
                         eos_token_id=vocab["[SEP]"], sep_token_id=vocab["[SEP]"], pad_token_id=vocab["[PAD]"]),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8), projection_dim=32)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(cfg)

    def batches(gen):
        # BLIP puts its decoder-start token first: the sentence follows it, [SEP] ends it.
        inputs = dict(processor(images=_random_images(1, gen), text=f"[DEC] {SENTENCE} [SEP]", return_tensors="pt"))
        return inputs, inputs["input_ids"].clone()
    _teach(model, batches)
    return _save(model, processor, folder)


def build_qwen2_vl(folder: Path) -> Path:
    """Qwen2-VL (Qwen2VLForConditionalGeneration) with its image/video processors and a ChatML template."""
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)
    special = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
               "<|image_pad|>", "<|video_pad|>", "user", "assistant"]
    tok, vocab = _tokenizer(special, None, "<|im_end|>", "<pad>", "<unk>")
    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }} {% if m['content'] is string %}{{ m['content'] }}"
                "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|>"
                "<|vision_end|>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|> {% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}")
    ip = Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16, patch_size=14, merge_size=2,
                               temporal_patch_size=2)
    processor = Qwen2VLProcessor(image_processor=ip, tokenizer=tok, video_processor=Qwen2VLVideoProcessor(),
                                 chat_template=template)
    cfg = Qwen2VLConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         rope_parameters={"rope_type": "default", "mrope_section": [4, 6, 6], "rope_theta": 10000.0},
                         bos_token_id=vocab["<|im_start|>"], eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<pad>"]),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2),
        image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"])
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(cfg)
    _teach(model, _chat_batches(processor, "<|im_end|>", nested=False))
    return _save(model, processor, folder)


def build_idefics3(folder: Path) -> Path:
    """Idefics3 (the SmolVLM architecture) with its image processor, image tokens and chat template."""
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor,
                              Idefics3Processor)
    special = (["<pad>", "<unk>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
                "<global-img>", "user:", "assistant:"] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)])
    tok, vocab = _tokenizer(special, "<|im_start|>", "<end_of_utterance>", "<pad>", "<unk>")
    template = ("<|im_start|>{% for m in messages %}{{ m['role'] }}:{% for c in m['content'] %}{% if c['type'] == 'image' %}"
                "<image>{% else %} {{ c['text'] }}{% endif %}{% endfor %}<end_of_utterance> {% endfor %}"
                "{% if add_generation_prompt %}assistant: {% endif %}")
    ip = Idefics3ImageProcessor(do_image_splitting=False, size={"longest_edge": 32}, max_image_size={"longest_edge": 32})
    processor = Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=4, chat_template=template)
    cfg = Idefics3Config(
        text_config=dict(model_type="llama", vocab_size=len(vocab), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         bos_token_id=vocab["<|im_start|>"], eos_token_id=vocab["<end_of_utterance>"],
                         pad_token_id=vocab["<pad>"]),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        scale_factor=2, image_token_id=vocab["<image>"], pad_token_id=vocab["<pad>"])
    torch.manual_seed(0)
    model = Idefics3ForConditionalGeneration(cfg)
    _teach(model, _chat_batches(processor, "<end_of_utterance>", nested=True))
    return _save(model, processor, folder)


def build_llava(folder: Path) -> Path:
    """LLaVA 1.5 (LlavaForConditionalGeneration: CLIP vision tower + Llama) with a CLIP image processor."""
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    special = ["<pad>", "<unk>", "<s>", "</s>", "<image>", "user:", "assistant:"]
    tok, vocab = _tokenizer(special, "<s>", "</s>", "<pad>", "<unk>")
    template = ("{% for m in messages %}{{ m['role'] }}:{% for c in m['content'] %}{% if c['type'] == 'image' %}"
                " <image>{% else %} {{ c['text'] }}{% endif %}{% endfor %} {% endfor %}"
                "{% if add_generation_prompt %}assistant: {% endif %}")
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                               chat_template=template, num_additional_image_tokens=1)
    cfg = LlavaConfig(
        text_config=dict(model_type="llama", vocab_size=len(vocab), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"], pad_token_id=vocab["<pad>"]),
        vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=32, patch_size=8, projection_dim=32),
        image_token_id=vocab["<image>"], vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(cfg)
    _teach(model, _chat_batches(processor, "</s>", nested=False), steps=300)
    return _save(model, processor, folder)


def _save(model, processor, folder: Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)  # safetensors
    processor.save_pretrained(folder)
    return folder


BUILDERS = {"blip": build_blip, "qwen2_vl": build_qwen2_vl, "idefics3": build_idefics3, "llava": build_llava}


VERSION = "v2"  # bump when a builder changes (the cache is keyed by it)
CACHE_DIR = Path(__file__).resolve().parent.parent / ".host" / "cache" / "tiny-mllm"


def cached_model(family: str) -> Path:
    """The tiny ``family`` model folder, built once into ``.host/cache/tiny-mllm`` (atomic rename)."""
    import shutil
    import tempfile
    final = CACHE_DIR / f"{family}-{VERSION}"
    if (final / "config.json").is_file():
        return final
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{family}-", dir=CACHE_DIR))
    try:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            BUILDERS[family](tmp)
        finally:
            torch.set_num_threads(threads)
        try:
            tmp.rename(final)
        except OSError:  # built meanwhile by another process
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
