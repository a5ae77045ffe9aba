"""The caption vocabulary (m3unet/caption/vocabulary.json): realistic MLLM answers -> content + restoration text.

The sentences below are written in the styles that SmolVLM, Qwen2-VL, LLaVA, BLIP and Ollama-served
models answer in (plain prose, "Content: ... Quality problems: ...", Markdown lists, negations,
severities before and after the noun). Each expects the exact content and the exact restoration
text in M3UNet's training phrasing (m3unet.core.text.describe).
"""
from __future__ import annotations

import pytest

from m3unet.core.degradations import Degradation
from m3unet.core.text import describe
from m3unet.caption.vocabulary import Vocabulary, degradation_sentence, fuse, parse_degradations, restoration_text, split_caption

pytestmark = pytest.mark.unit

CASES = [
    # (caption, content, restoration text)
    ("A slightly blurry photo of a cat sitting on a wooden table. The image also has visible JPEG artifacts.",
     "A photo of a cat sitting on a wooden table.",
     "remove the moderate JPEG artifacts, then remove the light blur"),
    ("The image shows a red car parked on a city street at night. The photo is noisy and underexposed, with heavy "
     "grain in the shadows.",
     "The image shows a red car parked on a city street at night.",
     "remove the heavy noise, then brighten the moderate low light"),
    ("A man in a dark coat walks a dog along a beach. There is no noticeable blur, but moderate noise is present "
     "throughout.",
     "A man in a dark coat walks a dog along a beach.",
     "remove the moderate noise"),
    ("Content: a bowl of fruit on a kitchen counter. Quality problems: heavy motion blur, light JPEG artifacts.",
     "A bowl of fruit on a kitchen counter.",
     "remove the heavy motion blur, then remove the light JPEG artifacts"),
    ("This is a low-resolution, pixelated picture of a mountain landscape with a lake. It looks hazy and washed out.",
     "This is a picture of a mountain landscape with a lake.",
     "restore detail lost to moderate low resolution, then remove the moderate haze"),
    ("A portrait of an elderly woman smiling. The image is sharp and clean, with no visible noise or compression "
     "artifacts.",
     "A portrait of an elderly woman smiling.",
     ""),
    ("A cup of coffee on a saucer. The photo is very dark and out of focus.",
     "A cup of coffee on a saucer.",
     "brighten the heavy low light, then remove the moderate blur"),
    ("A foggy forest path in autumn with yellow leaves.",
     "A foggy forest path in autumn with yellow leaves.",
     ""),
    ("The picture suffers from severe camera shake and strong sensor noise; the subject is a group of children "
     "playing football.",
     "The subject is a group of children playing football.",
     "remove the heavy motion blur, then remove the heavy noise"),
    ("A noise-free photo of a bird on a branch, slightly out of focus.",
     "A photo of a bird on a branch.",
     "remove the light blur"),
    ("A blurry, grainy image of a bus.",
     "An image of a bus.",
     "remove the moderate blur, then remove the moderate noise"),
    ("**Description:** A golden retriever lying on green grass.\n\n**Quality issues:**\n- Noise: moderate\n"
     "- Blur: slight\n- JPEG artifacts: none",
     "A golden retriever lying on green grass.",
     "remove the moderate noise, then remove the light blur"),
    ("1. Content: Two people walking on a snowy road.\n2. Quality: The photo is heavily compressed and slightly "
     "underexposed.",
     "Two people walking on a snowy road.",
     "remove the heavy JPEG artifacts, then brighten the light low light"),
    ("The image is noisy, a cat sits on a mat.",
     "A cat sits on a mat.",
     "remove the moderate noise"),
    ("a photo of a cat on a red sofa. the image has heavy noise and slight blur.",
     "A photo of a cat on a red sofa.",
     "remove the heavy noise, then remove the light blur"),
    ("The image depicts a busy market street with fruit stalls and people shopping. The overall quality is poor: "
     "there is significant blockiness from compression and the colours look faded.",
     "The image depicts a busy market street with fruit stalls and people shopping.",
     "remove the heavy JPEG artifacts, then remove the moderate haze"),
    ("A close-up of a sunflower against a blue sky. No quality problems are visible; the photo is well exposed "
     "and sharp.",
     "A close-up of a sunflower against a blue sky.",
     ""),
    ("An old black and white photograph of a family standing in front of a farmhouse. It shows film grain, some "
     "scratches and mild blur.",
     "An old black and white photograph of a family standing in front of a farmhouse.",
     "remove the moderate noise, then remove the light blur"),
    ("A street at night captured in low light; the picture is very noisy.",
     "A street at night captured.",
     "remove the heavy noise, then brighten the moderate low light"),
    ("A dimly lit room with a piano.",
     "A room with a piano.",
     "brighten the moderate low light"),
]


@pytest.mark.parametrize("caption,content,text", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_real_captions(caption: str, content: str, text: str) -> None:
    split = split_caption(caption)
    assert split.content == content
    assert split.degradation_text == text
    assert split.caption == caption


def test_restoration_text_is_what_m3unet_was_trained_on() -> None:
    """Every kind at every level comes out exactly as text.describe phrases it (canonical form)."""
    for kind in ("noise", "blur", "motion", "jpeg", "lowres", "lowlight", "haze"):
        for sev in (0.17, 0.5, 0.83):
            degs = [Degradation(kind, sev)]
            assert restoration_text(degs) == describe(degs)
            # the plain sentence built from degradations reads back to the same degradations
            assert parse_degradations(degradation_sentence(degs)) == degs


def test_sentence_round_trip_of_mixtures() -> None:
    degs = [Degradation("noise", 0.83), Degradation("jpeg", 0.5), Degradation("blur", 0.17)]
    sentence = degradation_sentence(degs)
    assert sentence == "Quality problems: heavy noise, moderate JPEG artifacts, light blur."
    split = split_caption("A boat on a lake. " + sentence)
    assert split.content == "A boat on a lake."
    assert split.degradations == degs
    assert split.degradation_text == ("remove the heavy noise, then remove the moderate JPEG artifacts, "
                                      "then remove the light blur")


def test_fuse_keeps_the_most_severe_reading_per_kind() -> None:
    a = [Degradation("noise", 0.5), Degradation("poisson", 0.9)]
    b = [Degradation("noise", 0.2), Degradation("haze", 0.4)]
    assert fuse(a, b) == [Degradation("noise", 0.9), Degradation("haze", 0.4)]
    assert fuse([], None) == []
    assert restoration_text([]) == ""


def test_empty_and_plain_text() -> None:
    assert split_caption("").content == "" and split_caption("").degradation_text == ""
    s = split_caption("A red bicycle leaning against a brick wall.")
    assert s.content == "A red bicycle leaning against a brick wall." and s.degradations == []


def test_vocabulary_file_is_valid_and_unknown_kinds_are_refused(tmp_path) -> None:
    v = Vocabulary.load()
    assert {k for k, _, _ in v.terms} == {"noise", "blur", "motion", "jpeg", "lowres", "lowlight", "haze"}
    bad = tmp_path / "v.json"
    bad.write_text('{"kinds": {"scratches": {"strong": ["scratch"], "weak": []}}}')
    with pytest.raises(ValueError, match="scratches"):
        Vocabulary.load(bad)
