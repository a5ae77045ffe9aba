"""Caption backends (m3unet.caption.mllm) in this process: tiny real models, the HTTP protocols, the cache, errors."""
from __future__ import annotations

import json
import socket

import pytest
import torch

from fake_vlm_server import ANSWER, FakeVLMServer
from m3unet.caption import mllm as cap
from m3unet.auto.classifier import Finding
from m3unet.core.degradations import Degradation
from tiny_mllm import SENTENCE, cached_model

pytestmark = pytest.mark.unit

EXPECTED_TEXT = "remove the heavy noise, then remove the light blur"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------------------- local models
@pytest.mark.parametrize("family", ["blip", "qwen2_vl", "idefics3", "llava"])
def test_tiny_models_caption_through_generate(family: str) -> None:
    """A tiny model of each family loads from its folder (Auto classes, local files) and says its sentence."""
    c = cap.TransformersCaptioner(cached_model(family))
    assert c.family == family and not c.model.training
    calls = []
    c.before_generate = lambda: calls.append(1)
    images = torch.rand(2, 40, 56, 3)
    res = cap.caption_images(c, images, cap.CaptionSettings(max_tokens=32), cache=None)
    assert len(res.captions) == 2 and len(calls) == 2
    if family != "idefics3":  # the 1-layer Idefics3 repeats a phrase; its degradations are still exact
        assert res.captions[0] == SENTENCE.replace(" .", ".")
    assert all("red sofa" in t for t in res.contents)
    assert all("noise" not in t and "blur" not in t for t in res.contents)
    assert res.degradation_text == EXPECTED_TEXT


def test_model_folder_errors(tmp_path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("not a model")
    with pytest.raises(cap.ModelFolderError, match="no config.json"):
        cap.TransformersCaptioner(tmp_path / "notes")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(cap.ModelFolderError, match="'bert' is not supported.*Qwen2-VL"):
        cap.detect_family(tmp_path / "bert")
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "config.json").write_text(json.dumps({"model_type": "florence2",
                                                                 "auto_map": {"AutoConfig": "x.Config"}}))
    with pytest.raises(cap.ModelFolderError, match="remote code"):
        cap.detect_family(tmp_path / "remote")
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "config.json").write_text(json.dumps({"model_type": "llava"}))
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(cap.ModelFolderError, match="pickled weights are refused"):
        cap.TransformersCaptioner(tmp_path / "pickled")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(cap.ModelFolderError, match="not valid JSON"):
        cap.detect_family(tmp_path / "broken")
    with pytest.raises(cap.ModelFolderError, match="not found"):
        cap.detect_family(tmp_path / "missing")


# ---------------------------------------------------------------------------- HTTP
@pytest.mark.parametrize("backend", ["ollama", "openai"])
def test_http_backends_speak_the_protocol(backend: str) -> None:
    with FakeVLMServer() as server:
        c = cap.make_http_captioner(backend, "qwen2.5vl:3b", server.url + ("/v1" if backend == "openai" else ""), 10)
        image = torch.rand(1, 300, 2000, 3)
        res = cap.caption_images(c, image, cap.CaptionSettings(max_tokens=77, user_text="my grandmother's cup"),
                                 cache=None)
    assert res.caption == ANSWER
    assert res.content == "A cup of coffee on a white saucer on a wooden table."
    assert res.degradation_text == ("remove the heavy JPEG artifacts, then remove the moderate noise, "
                                    "then remove the light blur")
    (req,) = server.requests
    assert req["path"] == ("/api/chat" if backend == "ollama" else "/v1/chat/completions")
    assert req["image"].size == (1024, 154)  # long side capped at SEND_SIDE, aspect kept
    assert req["prompt"].startswith(cap.PRESETS[cap.DEFAULT_PRESET]) and "my grandmother's cup" in req["prompt"]
    body = req["body"]
    if backend == "ollama":
        assert body["stream"] is False and body["options"]["num_predict"] == 77
    else:
        assert body["max_tokens"] == 77


def test_http_errors_are_clear_and_cache_nothing() -> None:
    cache = cap.CaptionCache()
    image = torch.rand(1, 32, 32, 3)
    port = free_port()
    c = cap.OllamaCaptioner("llava:7b", f"127.0.0.1:{port}", timeout=5)
    with pytest.raises(cap.EndpointError, match=rf"cannot reach Ollama at http://127.0.0.1:{port}.*ollama serve"):
        cap.caption_images(c, image, cap.CaptionSettings(), cache=cache)
    c = cap.OpenAICaptioner("gpt-4o", f"http://127.0.0.1:{port}", timeout=5)
    with pytest.raises(cap.EndpointError, match="cannot reach OpenAI-compatible server"):
        cap.caption_images(c, image, cap.CaptionSettings(), cache=cache)
    with FakeVLMServer() as server:
        with pytest.raises(cap.EndpointError, match=r"HTTP 404.*ollama pull llava:7b"):
            cap.caption_images(cap.OllamaCaptioner("llava:7b", server.url, 5), image, cap.CaptionSettings(),
                               cache=cache)
    with FakeVLMServer(delay=2.0) as server:
        with pytest.raises(cap.EndpointError, match="did not answer within 1 s"):
            cap.caption_images(cap.OllamaCaptioner("qwen2.5vl:3b", server.url, 1), image, cap.CaptionSettings(),
                               cache=cache)
    assert len(cache) == 0
    with pytest.raises(cap.CaptionError, match="no model name"):
        cap.make_http_captioner("ollama", " ")


# ---------------------------------------------------------------------------- none backend, fusion
def test_none_backend_uses_user_text_and_classifier_findings() -> None:
    finding = Finding(probabilities={"noise": 0.9, "blur": 0.2, "jpeg": 0.8},
                      severity={"noise": 0.9, "blur": 0.5, "jpeg": 0.3})
    c = cap.FindingsCaptioner()
    image = torch.rand(1, 32, 32, 3)
    res = cap.caption_images(c, image, cap.CaptionSettings(user_text="A cup of coffee, slightly blurry."),
                             findings=[finding], cache=None)
    assert res.caption == "A cup of coffee, slightly blurry. Quality problems: heavy noise, light JPEG artifacts."
    assert res.content == "A cup of coffee."
    assert res.degradation_text == ("remove the heavy noise, then remove the light JPEG artifacts, "
                                    "then remove the light blur")
    res = cap.caption_images(c, image, cap.CaptionSettings(), findings=None, cache=None)
    assert (res.caption, res.content, res.degradation_text) == ("", "", "")


def test_findings_fuse_into_a_model_caption() -> None:
    with FakeVLMServer(answer="A dog in a park. The image is slightly noisy.") as server:
        c = cap.OllamaCaptioner("qwen2.5vl:3b", server.url, 10)
        res = cap.caption_images(c, torch.rand(1, 32, 32, 3), cap.CaptionSettings(), cache=None,
                                 findings=[[Degradation("haze", 0.6)]])
    assert res.degradation_text == "remove the moderate haze, then remove the light noise"


# ---------------------------------------------------------------------------- cache, batches
class Counting(cap.Captioner):
    backend = identity = "counting"

    def __init__(self, fail_on: int | None = None):
        self.calls = 0
        self.fail_on = fail_on

    def caption(self, image, settings, findings=None):
        self.calls += 1
        if self.calls == self.fail_on:
            raise cap.EndpointError("server went away")
        return "A photo of a sofa. Heavy noise."


def test_cache_by_image_content_and_settings() -> None:
    cache = cap.CaptionCache()
    c = Counting()
    a = torch.rand(1, 24, 24, 3)
    s = cap.CaptionSettings()
    first = cap.caption_images(c, a, s, cache=cache)
    again = cap.caption_images(c, a.clone(), s, cache=cache)  # same pixels, another tensor
    assert c.calls == 1 and again.caption == first.caption and again.cached == [True]
    cap.caption_images(c, a, cap.CaptionSettings(prompt="describe"), cache=cache)
    cap.caption_images(c, a, cap.CaptionSettings(max_tokens=12), cache=cache)
    cap.caption_images(c, a + 0.01, s, cache=cache)
    assert c.calls == 4
    # greedy decoding ignores the seed: no new caption; sampled decoding does not
    cap.caption_images(c, a, cap.CaptionSettings(seed=5), cache=cache)
    assert c.calls == 4
    cap.caption_images(c, a, cap.CaptionSettings(seed=5, temperature=0.7), cache=cache)
    assert c.calls == 5


def test_batch_outputs_and_failure_leaves_no_partial_cache() -> None:
    cache = cap.CaptionCache()
    batch = torch.rand(2, 24, 24, 3)
    res = cap.caption_images(Counting(), batch, cap.CaptionSettings(), cache=cache)
    assert res.caption.startswith("[1] ") and "\n[2] " in res.caption
    assert res.content == "[1] A photo of a sofa.\n[2] A photo of a sofa."
    assert res.degradation_text == "remove the heavy noise"
    cache.clear()
    with pytest.raises(cap.EndpointError):
        cap.caption_images(Counting(fail_on=2), batch, cap.CaptionSettings(), cache=cache)
    assert len(cache) == 1  # the first image's caption is complete and valid; nothing for the failed one


@pytest.mark.parametrize("shape,match", [((0, 32, 32, 3), "empty"), ((1, 0, 32, 3), "empty"),
                                         ((1, 16, 20000, 3), "at most 16384 px"), ((1, 4, 4, 3), "at least 8 px"),
                                         ((32, 32, 3), "IMAGE batch"), ((1, 32, 32, 2), "2 channels")])
def test_bad_images_are_refused(shape, match) -> None:
    c = Counting()
    with pytest.raises(cap.CaptionError, match=match):
        cap.caption_images(c, torch.zeros(shape), cap.CaptionSettings(), cache=None)
    assert c.calls == 0


def test_grey_rgba_and_uint8_images() -> None:
    for img in (torch.rand(1, 20, 30, 1), torch.rand(1, 20, 30, 4), (torch.rand(1, 20, 30, 3) * 255).to(torch.uint8)):
        pil = cap.to_pil(img[0])
        assert pil.mode == "RGB" and pil.size == (30, 20)


def test_prompt_presets() -> None:
    assert cap.resolve_prompt(cap.DEFAULT_PRESET, "") == cap.PRESETS[cap.DEFAULT_PRESET]
    assert cap.resolve_prompt("custom", " Describe it. ") == "Describe it."
    with pytest.raises(cap.CaptionError, match="custom_prompt is empty"):
        cap.resolve_prompt("custom", "  ")
    with pytest.raises(cap.CaptionError, match="unknown prompt preset"):
        cap.resolve_prompt("nope", "")


def test_smolvlm_image_splitting_off_sends_one_view() -> None:
    """SmolVLM / Idefics3 with its published tiling (here 2x2 tiles + a global view) vs
    image_splitting=False (the global view only): far fewer image tokens, and both caption."""
    c = cap.TransformersCaptioner(cached_model("idefics3"))
    ip = c.processor.image_processor
    old = (ip.do_image_splitting, dict(ip.size), dict(ip.max_image_size))
    ip.do_image_splitting, ip.size, ip.max_image_size = True, {"longest_edge": 64}, {"longest_edge": 32}
    try:
        image = cap.to_pil(torch.rand(1, 64, 64, 3)[0])
        tiled = c._inputs(image, cap.CaptionSettings())
        single = c._inputs(image, cap.CaptionSettings(image_splitting=False))
        assert tiled["pixel_values"].shape[1] == 5 and single["pixel_values"].shape[1] == 1
        assert single["input_ids"].shape[1] < tiled["input_ids"].shape[1] - 3 * 4  # 4 tokens per tile
        for settings in (cap.CaptionSettings(max_tokens=8), cap.CaptionSettings(max_tokens=8, image_splitting=False)):
            assert c.caption(image, settings)
        assert cap.CaptionSettings().key() != cap.CaptionSettings(image_splitting=False).key()  # cached apart
    finally:
        ip.do_image_splitting, ip.size, ip.max_image_size = old[0], old[1], old[2]
