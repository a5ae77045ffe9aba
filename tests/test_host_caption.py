"""MLLM Loader + MLLM Caption inside the real ComfyUI 0.3.75 host (HTTP API, the session's server).

Tiny models of four real transformers families (BLIP, Qwen2-VL, Idefics3/SmolVLM, LLaVA; built offline by
tests/tiny_mllm.py and cached in .host/cache) are put into the host's models/LLM folder and run
through the real nodes; their degradation_text steers the M3UNet Sampler. The HTTP backends talk
to a local server on 127.0.0.1 that speaks the Ollama and OpenAI protocols. Bad inputs give
errors that name the cause, and leave nothing behind (the next good run works).
"""
from __future__ import annotations

import shutil
import socket
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from comfy_client import ComfyHost, PromptRejected
from fake_vlm_server import FakeVLMServer
from tiny_mllm import cached_model

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent
EXPECTED_TEXT = "remove the heavy noise, then remove the light blur"
FAMILIES = ["blip", "qwen2_vl", "idefics3", "llava"]
CLASS_NAMES = {"blip": "BlipForConditionalGeneration", "qwen2_vl": "Qwen2VLForConditionalGeneration",
               "idefics3": "Idefics3ForConditionalGeneration", "llava": "LlavaForConditionalGeneration"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llm_dir(comfy_host: ComfyHost) -> Path:
    """models/LLM of the host: the tiny models, a folder that is not a model, an unsupported family."""
    root = comfy_host.base_dir / "models" / "LLM"
    root.mkdir(parents=True, exist_ok=True)
    for fam in FAMILIES:
        link = root / f"tiny-{fam}"
        if not link.exists():
            link.symlink_to(cached_model(fam), target_is_directory=True)
    (root / "not-a-model").mkdir(exist_ok=True)
    (root / "not-a-model" / "notes.txt").write_text("downloaded half of a model")
    (root / "bert-base").mkdir(exist_ok=True)
    (root / "bert-base" / "config.json").write_text('{"model_type": "bert", "hidden_size": 768}')
    return root


@pytest.fixture(scope="module")
def images(comfy_host: ComfyHost) -> dict[str, str]:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(arr).save(comfy_host.input_dir / "caption_a.png")
    Image.fromarray(arr).save(comfy_host.input_dir / "caption_a_copy.png")  # same pixels, another file
    shutil.copy(REPO / "assets" / "examples" / "coffee_degraded.png", comfy_host.input_dir / "caption_coffee.png")
    return {"a": "caption_a.png", "a_copy": "caption_a_copy.png", "coffee": "caption_coffee.png"}


def caption_graph(image: str | dict, model: str = "none", *, host: str = "", remote_model: str = "",
                  timeout: int = 30, user_text: str = "", restore: bool = False, preset: str | None = None,
                  use_classifier: bool = True, image_splitting: bool | None = None) -> dict:
    """LoadImage -> MLLM Loader -> MLLM Caption -> three PreviewAny (+ optional M3UNet Sampler -> SaveImage)."""
    g: dict[str, Any] = {
        "1": image if isinstance(image, dict) else {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "M3UNetMLLMLoader", "inputs": {"model": model, "host": host, "remote_model": remote_model,
                                                           "timeout": timeout, "dtype": "auto"}},
        "3": {"class_type": "M3UNetMLLMCaption", "inputs": {
            "mllm": ["2", 0], "image": ["1", 0], "preset": preset or "restoration (content, then quality problems)",
            "custom_prompt": "", "user_text": user_text, "max_tokens": 32, "temperature": 0.0, "seed": 0,
            "use_classifier": use_classifier}},
        "10": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
        "11": {"class_type": "PreviewAny", "inputs": {"source": ["3", 1]}},
        "12": {"class_type": "PreviewAny", "inputs": {"source": ["3", 2]}},
    }
    if image_splitting is not None:  # the loader's optional SmolVLM tiling switch
        g["2"]["inputs"]["image_splitting"] = image_splitting
    if restore:
        g["4"] = {"class_type": "M3UNetLoader", "inputs": {"model_name": "m3unet-default.safetensors"}}
        g["5"] = {"class_type": "M3UNetSampler", "inputs": {"model": ["4", 0], "image": ["1", 0], "text": ["3", 2],
                                                            "steps": 1, "seed": 0, "eta": 0.0, "tile": 512}}
        g["6"] = {"class_type": "SaveImage", "inputs": {"images": ["5", 0],
                                                        "filename_prefix": f"caption_test/{uuid.uuid4().hex[:8]}"}}
    return g


def texts(entry: dict) -> tuple[str, str, str]:
    out = entry["outputs"]
    return tuple(out[k]["text"][0] for k in ("10", "11", "12"))  # type: ignore[return-value]


def run_ok(host: ComfyHost, graph: dict) -> dict:
    entry = host.run(graph, timeout=600)
    err = host.execution_error(entry) or {}
    assert entry["status"]["status_str"] == "success", (err.get("exception_message"), "".join(err.get("traceback") or []))
    return entry


def run_error(host: ComfyHost, graph: dict, node_type: str) -> str:
    entry = host.run(graph, timeout=300)
    assert entry["status"]["status_str"] == "error"
    err = host.execution_error(entry)
    assert err is not None and err["node_type"] == node_type, err
    return err["exception_message"]


# ---------------------------------------------------------------------------- registration
def test_caption_nodes_registered(comfy_host: ComfyHost, llm_dir: Path) -> None:
    info = comfy_host.object_info()
    loader, caption = info["M3UNetMLLMLoader"], info["M3UNetMLLMCaption"]
    assert loader["category"] == caption["category"] == "M3UNet"
    assert loader["output"] == ["M3UNET_MLLM"] and caption["output"] == ["STRING", "STRING", "STRING"]
    assert caption["output_name"] == ["caption", "content", "degradation_text"]
    options = loader["input"]["required"]["model"][1]["options"]
    assert options[:3] == ["none", "ollama", "openai"]
    assert {f"tiny-{f}" for f in FAMILIES} | {"not-a-model", "bert-base"} <= set(options), options
    for node in (loader, caption):
        for section in ("required", "optional"):
            for name, spec in (node["input"].get(section) or {}).items():
                assert spec[1].get("tooltip"), name


# ---------------------------------------------------------------------------- local models
@pytest.mark.parametrize("family", FAMILIES)
def test_local_model_caption_steers_m3unet(comfy_host: ComfyHost, llm_dir: Path, images: dict, family: str) -> None:
    """A tiny model from models/LLM captions through the real node (ComfyUI model management loads it),
    its degradation_text is M3UNet's vocabulary and feeds the Sampler, which saves an image."""
    entry = run_ok(comfy_host, caption_graph(images["a"], f"tiny-{family}", restore=True, use_classifier=False,
                                             image_splitting=False if family == "idefics3" else None))
    caption, content, degradation_text = texts(entry)
    assert "red sofa" in caption and "red sofa" in content
    assert "noise" not in content and "blur" not in content
    assert degradation_text == EXPECTED_TEXT
    (saved,) = comfy_host.output_images(entry)
    assert Image.open(saved).size == (64, 48)
    # it went through ComfyUI's model management (load_models_gpu logs what it loads)
    assert f"Requested to load {CLASS_NAMES[family]}" in comfy_host.log_text()


def test_captions_are_cached_by_image_content(comfy_host: ComfyHost, llm_dir: Path, images: dict) -> None:
    run_ok(comfy_host, caption_graph(images["a"], "tiny-qwen2_vl", preset="content only", use_classifier=False))
    before = comfy_host.log_text().count("1 of 1 captions from the cache")
    # another file with the same pixels: ComfyUI runs the node again, the caption comes from the cache
    entry = run_ok(comfy_host, caption_graph(images["a_copy"], "tiny-qwen2_vl", preset="content only",
                                             use_classifier=False))
    assert texts(entry)[2] == EXPECTED_TEXT
    assert comfy_host.log_text().count("1 of 1 captions from the cache") == before + 1


def test_classifier_findings_fuse_with_the_model(comfy_host: ComfyHost, llm_dir: Path, images: dict) -> None:
    """use_classifier: the reading the pack reports (the shipped DegradationClassifier, with the
    spectrum's motion and the scene limits) on the same pixels is fused into the model's degradations
    (the most severe reading per kind)."""
    import torch

    from m3unet.auto.classifier import Classifier, load_classifier
    from m3unet.core.degradations import Degradation
    from m3unet.caption.vocabulary import fuse, restoration_text
    pixels = torch.from_numpy(np.asarray(Image.open(comfy_host.input_dir / images["a"]).convert("RGB")).copy())
    from m3unet.auto.reading import Reader
    finding = Reader(Classifier(load_classifier()))(pixels[None].float() / 255)[0]
    assert finding.labels, "the classifier finds nothing in random noise: this test would not test fusion"
    model = [Degradation("noise", 0.83), Degradation("blur", 0.17)]
    expected = restoration_text(fuse(model, [Degradation(k, finding.severity[k]) for k in finding.labels]))
    entry = run_ok(comfy_host, caption_graph(images["a"], "tiny-qwen2_vl", use_classifier=True))
    assert texts(entry)[2] == expected != EXPECTED_TEXT


# ---------------------------------------------------------------------------- none backend
def test_none_backend_builds_the_text_from_user_words(comfy_host: ComfyHost, images: dict) -> None:
    user = "A cup of coffee on a saucer. The photo is slightly blurry and slightly noisy, with JPEG artifacts."
    entry = run_ok(comfy_host, caption_graph(images["coffee"], "none", user_text=user, restore=True))
    caption, content, degradation_text = texts(entry)
    assert caption.startswith(user) and content == "A cup of coffee on a saucer."
    assert {"JPEG artifacts", "light blur", "light noise"} <= {p for p in ("JPEG artifacts", "light blur", "light noise")
                                                              if p in degradation_text}, degradation_text


# ---------------------------------------------------------------------------- HTTP backends
@pytest.mark.parametrize("backend", ["ollama", "openai"])
def test_http_backend_in_host(comfy_host: ComfyHost, images: dict, backend: str) -> None:
    with FakeVLMServer(models=("qwen2.5vl:3b",)) as server:
        entry = run_ok(comfy_host, caption_graph(images["coffee"], backend, host=server.url,
                                                 remote_model="qwen2.5vl:3b", user_text=f"{backend} run"))
    caption, content, degradation_text = texts(entry)
    assert content == "A cup of coffee on a white saucer on a wooden table."
    assert degradation_text == ("remove the heavy JPEG artifacts, then remove the moderate noise, "
                                "then remove the light blur")
    (req,) = server.requests
    assert req["image"].size == (600, 400)
    assert f"{backend} run" in req["prompt"]


def test_unreachable_endpoint_is_a_clear_error(comfy_host: ComfyHost, images: dict) -> None:
    port = free_port()
    msg = run_error(comfy_host, caption_graph(images["a"], "ollama", host=f"127.0.0.1:{port}", remote_model="llava:7b",
                                              timeout=5), "M3UNetMLLMCaption")
    assert f"cannot reach Ollama at http://127.0.0.1:{port}" in msg and "ollama serve" in msg, msg
    msg = run_error(comfy_host, caption_graph(images["a"], "openai", host=f"127.0.0.1:{port}", remote_model="",
                                              timeout=5), "M3UNetMLLMLoader")
    assert "no model name" in msg, msg


# ---------------------------------------------------------------------------- bad input
def test_bad_model_folders_and_images(comfy_host: ComfyHost, llm_dir: Path, images: dict) -> None:
    msg = run_error(comfy_host, caption_graph(images["a"], "not-a-model"), "M3UNetMLLMLoader")
    assert "not-a-model" in msg and "no config.json" in msg, msg
    msg = run_error(comfy_host, caption_graph(images["a"], "bert-base"), "M3UNetMLLMLoader")
    assert "'bert' is not supported" in msg and "Qwen2-VL" in msg, msg
    with pytest.raises(PromptRejected) as info:
        comfy_host.queue(caption_graph(images["a"], "no-such-folder"))
    errors = info.value.node_errors.get("2", {}).get("errors", [])
    assert any("no-such-folder" in e["details"] and "models/LLM" in e["details"] for e in errors), info.value.body
    tiny = {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 0}}
    msg = run_error(comfy_host, caption_graph(tiny, "tiny-blip"), "M3UNetMLLMCaption")
    assert "4x4 px" in msg and "at least 8 px" in msg, msg
    # nothing half-loaded is left behind: the same model still captions
    entry = run_ok(comfy_host, caption_graph(images["a"], "tiny-blip", preset="quality problems only",
                                             use_classifier=False))
    assert texts(entry)[2] == EXPECTED_TEXT
