"""The M3UNet nodes inside a real ComfyUI 0.3.75 host (HTTP API, one server per test session).

Covers: registration (/object_info: ids with the pack prefix, no input and output sharing a name),
the shipped workflows end to end (with PSNR against the clean reference; the SD 1.5 workflow refused
as a whole without its checkpoint), IMAGE batches, clear errors for bad inputs (validation and
execution), the interrupt button and the progress bar events on the websocket (the Sampler, the
Kernel Deblur and the Auto Restore move their bars during a run).
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from PIL import Image

from comfy_client import ComfyHost, PromptRejected, ui_to_api

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "assets" / "examples"
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
EXAMPLE_INPUT = "m3unet_example_degraded.png"
NODE_IDS = {"M3UNetLoader": None, "M3UNetRefineEncoder": "RefineEncoder (M3UNet)",
            "M3UNetPixelControl": "PixelControl (M3UNet)", "M3UNetSampler": None,
            "M3UNetMLLMLoader": "MLLM Loader (M3UNet)", "M3UNetMLLMCaption": "MLLM Caption (M3UNet)",
            "M3UNetAutoRestore": "M3UNet Auto Restore", "M3UNetKernelDeblur": "M3UNet Kernel Deblur (defocus)",
            "M3UNetMotionDeblur": "M3UNet Motion Deblur (camera shake)",
            "M3UNetDegradationClassifier": "Degradation Classifier (M3UNet)"}
DEFAULT_MODEL = "m3unet-default.safetensors"
TIMINGS: dict[str, float] = {}


# ---------------------------------------------------------------------------- helpers
def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of the same shape."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def inputs(comfy_host: ComfyHost) -> dict[str, str]:
    """Input files in the host's input folder: the example, a small crop, a 2x2 image."""
    shutil.copy(EXAMPLES / "coffee_degraded.png", comfy_host.input_dir / EXAMPLE_INPUT)
    degraded = Image.open(EXAMPLES / "coffee_degraded.png").convert("RGB")
    degraded.crop((200, 120, 360, 240)).save(comfy_host.input_dir / "m3unet_small.png")  # 160x120
    degraded.crop((200, 120, 296, 184)).save(comfy_host.input_dir / "m3unet_smaller.png")  # 96x64
    Image.fromarray(np.full((2, 2, 3), 128, np.uint8)).save(comfy_host.input_dir / "m3unet_2x2.png")
    return {"example": EXAMPLE_INPUT, "small": "m3unet_small.png", "smaller": "m3unet_smaller.png",
            "tiny": "m3unet_2x2.png"}


def restore_graph(image_node: dict[str, Any], *, steps: int = 1, tile: int = 512, text: str = "",
                  model_name: str = DEFAULT_MODEL, strength: float | None = None,
                  control_image: dict[str, Any] | None = None, prefix: str | None = None,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """API graph: image node "1" (+ "extra" nodes) -> M3UNetLoader/[PixelControl]/Sampler -> SaveImage."""
    g: dict[str, Any] = {
        "1": image_node,
        "2": {"class_type": "M3UNetLoader", "inputs": {"model_name": model_name}},
        "5": {"class_type": "M3UNetSampler",
              "inputs": {"model": ["2", 0], "image": ["1", 0], "text": text, "steps": steps,
                         "seed": 0, "eta": 0.0, "tile": tile}},
        "6": {"class_type": "SaveImage",
              "inputs": {"images": ["5", 0], "filename_prefix": prefix or f"m3unet_test/{uuid.uuid4().hex[:8]}"}},
    }
    if strength is not None or control_image is not None:
        g["4"] = {"class_type": "M3UNetPixelControl",
                  "inputs": {"image": ["1", 0] if control_image is None else ["7", 0],
                             "strength": 1.0 if strength is None else strength, "outside": 0.0}}
        if control_image is not None:
            g["7"] = control_image
        g["5"]["inputs"]["control"] = ["4", 0]
    g.update(extra or {})
    return g


def load_image_node(name: str) -> dict[str, Any]:
    return {"class_type": "LoadImage", "inputs": {"image": name}}


def assert_success(host: ComfyHost, entry: dict[str, Any]) -> None:
    assert entry["status"]["status_str"] == "success", host.execution_error(entry)


class WsListener:
    """Collect the JSON messages of ``/ws?clientId=...`` in a background thread (aiohttp)."""

    def __init__(self, host: ComfyHost):
        self.url = f"ws://127.0.0.1:{host.port}/ws?clientId={host.client_id}"
        self.messages: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> "WsListener":
        self._thread.start()
        if not self.connected.wait(30):
            raise RuntimeError(f"websocket did not connect: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: BLE001 - surfaced through .error / connect timeout
            self.error = e
            self.connected.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(self.url, heartbeat=None) as ws:
                stop_task = asyncio.ensure_future(self._stop.wait())
                while not self._stop.is_set():
                    recv = asyncio.ensure_future(ws.receive())
                    done, _ = await asyncio.wait({recv, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                    if recv not in done:
                        recv.cancel()
                        break
                    msg = recv.result()
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        data = json.loads(msg.data)
                        self.messages.append(data)
                        if data.get("type") == "status":
                            self.connected.set()
                    elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break
                stop_task.cancel()

    def events(self, kind: str, prompt_id: str | None = None) -> list[dict[str, Any]]:
        out = [m["data"] for m in list(self.messages) if m.get("type") == kind]
        return [d for d in out if prompt_id is None or d.get("prompt_id") == prompt_id]

    def wait_for(self, kind: str, prompt_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(kind, prompt_id)
            if found:
                return found[0]
            time.sleep(0.05)
        raise TimeoutError(f"no {kind!r} event for {prompt_id} after {timeout} s")


# ---------------------------------------------------------------------------- 1. registration
def test_nodes_registered(comfy_object_info: dict[str, Any]) -> None:
    """All node ids are listed with category M3UNet; the shipped model is the first option."""
    for node_id, display in NODE_IDS.items():
        assert node_id in comfy_object_info, f"{node_id} missing (pack import failed?)"
        info = comfy_object_info[node_id]
        assert info["category"] == "M3UNet"
        assert info["description"]
        if display:
            assert info["display_name"] == display
        for section in ("required", "optional"):
            for name, spec in (info["input"].get(section) or {}).items():
                assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
    options = comfy_object_info["M3UNetLoader"]["input"]["required"]["model_name"][1]["options"]
    assert options[0] == DEFAULT_MODEL, options
    assert comfy_object_info["M3UNetSampler"]["output"] == ["IMAGE"]
    assert comfy_object_info["M3UNetRefineEncoder"]["output"] == ["M3UNET_EMBED"]
    assert comfy_object_info["M3UNetPixelControl"]["output"] == ["M3UNET_CONTROL"]
    assert comfy_object_info["M3UNetLoader"]["output"] == ["M3UNET_MODEL"]
    auto = comfy_object_info["M3UNetAutoRestore"]
    assert auto["output"] == ["IMAGE", "STRING", "STRING"]
    assert auto["input"]["optional"]["pool_model_1"][0] == "UPSCALE_MODEL"
    clf = comfy_object_info["M3UNetDegradationClassifier"]
    assert clf["output"] == ["DEGRADATION", "STRING", "STRING"]
    assert clf["input"]["required"]["classifier_name"][1]["options"][0] == "classifier-default.safetensors"
    assert "classifier-default.safetensors" not in options  # not offered as an M3UNet model
    assert comfy_object_info["M3UNetSampler"]["input"]["optional"]["degradation"][0] == "DEGRADATION"


def test_node_ids_carry_the_pack_prefix_and_names_are_unambiguous(comfy_object_info: dict[str, Any]) -> None:
    """Every node of the pack (category M3UNet) has an id starting with M3UNet, so it cannot clash with
    another pack's; no node has an input and an output of the same name (a user could not tell which
    "plan" a link or a tooltip means)."""
    ours = {k: v for k, v in comfy_object_info.items() if v.get("category") == "M3UNet"}
    assert set(ours) == set(NODE_IDS), sorted(ours)
    assert all(k.startswith("M3UNet") for k in ours), sorted(k for k in ours if not k.startswith("M3UNet"))
    for node_id, info in ours.items():
        inputs = {n for section in ("required", "optional") for n in (info["input"].get(section) or {})}
        assert not inputs & set(info["output_name"]), (node_id, inputs & set(info["output_name"]))
    assert comfy_object_info["M3UNetAutoRestore"]["output_name"] == ["IMAGE", "report", "plan_used"]



def test_help_pages_are_served_where_the_front_end_looks(comfy_host: ComfyHost,
                                                         comfy_object_info: dict[str, Any]) -> None:
    """The front end fetches a custom node's help from /extensions/<pack folder>/docs/<node id>.md
    (the pack folder read from the node's python_module): every node of the pack has its page there."""
    for node_id, info in comfy_object_info.items():
        if info.get("category") != "M3UNet":
            continue
        module = info["python_module"].split(".")
        assert module[0] == "custom_nodes", info["python_module"]
        r = comfy_host.session.get(f"{comfy_host.url}/extensions/{module[1]}/docs/{node_id}.md", timeout=30)
        assert r.status_code == 200 and r.text.startswith(f"# {info['display_name']}"), (node_id, r.status_code)


# ---------------------------------------------------------------------------- 2. workflows
RUN_SD15 = os.environ.get("M3UNET_RUN_SD15") == "1"


@pytest.fixture(scope="module")
def sd15_checkpoint(comfy_host: ComfyHost) -> Path:
    """What Load Checkpoint finds under the refinement workflow's checkpoint name.

    With M3UNET_RUN_SD15=1: a random-weight checkpoint in the full SD1.5 layout (tests/sd15_random.py,
    1.9 GB, built once into .host/cache) that ComfyUI loads and samples with. Otherwise a small
    placeholder file, so that /prompt validates the whole graph (the name is in the list); the SD
    part is then validated but not executed (see test_workflow_restores). The name is the one the
    workflow's Load Checkpoint selects."""
    from safetensors.torch import save_file

    from sd15_random import cached_checkpoint
    folder = comfy_host.base_dir / "models" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / sd15_checkpoint_name()
    if not path.exists():
        if RUN_SD15:
            path.symlink_to(cached_checkpoint(REPO / ".host" / "ComfyUI", REPO / ".host" / "cache"))
        else:
            import torch
            save_file({"placeholder": torch.zeros(1)}, str(path), metadata={"about": "not a model: validation only"})
    return path


def sd15_checkpoint_name() -> str:
    """The checkpoint the SD 1.5 refinement workflow's Load Checkpoint selects."""
    ui = json.loads((REPO / "workflows" / "mllm_caption_sd15_refine.json").read_text())
    (name,) = [n["widgets_values"][0] for n in ui["nodes"] if n["type"] == "CheckpointLoaderSimple"]
    return name


def m3unet_half(api: dict[str, Any], sd_part: set[str]) -> dict[str, Any]:
    """The graph without its SD 1.5 part: what reaches a side-by-side ImageStitch from the M3UNet
    side (image1) is saved by a SaveImage of its own."""
    half = {nid: n for nid, n in api.items() if nid not in sd_part}
    for nid in sd_part:
        if api[nid]["class_type"] == "ImageStitch" and api[nid]["inputs"]["image1"][0] not in sd_part:
            half[f"{nid}_m3unet"] = {"class_type": "SaveImage", "inputs": {
                "images": api[nid]["inputs"]["image1"], "filename_prefix": f"m3unet_test/{uuid.uuid4().hex[:8]}"}}
    return half


def downstream_of(api: dict[str, Any], class_type: str) -> set[str]:
    """Ids of the nodes of ``class_type`` and of every node that (transitively) takes their outputs."""
    found = {nid for nid, n in api.items() if n["class_type"] == class_type}
    grew = True
    while grew:
        grew = False
        for nid, n in api.items():
            if nid not in found and any(isinstance(v, list) and len(v) == 2 and str(v[0]) in found
                                        for v in n["inputs"].values()):
                found.add(nid)
                grew = True
    return found


def saved_by_node(entry: dict[str, Any], host: ComfyHost) -> dict[str, list[Path]]:
    """Saved image paths per output node id."""
    out = {}
    for nid, node_out in (entry.get("outputs") or {}).items():
        paths = [host.output_dir / (i.get("subfolder") or "") / i["filename"] for i in node_out.get("images") or []
                 if i.get("type", "output") == "output"]
        if paths:
            out[nid] = paths
    return out


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_restores(comfy_host: ComfyHost, comfy_object_info: dict[str, Any],
                           inputs: dict[str, str], workflow: Path, request: pytest.FixtureRequest) -> None:
    """Each shipped UI workflow converts, runs, and writes images of the input's size; the image saved
    straight from the M3UNet Sampler (or Auto Restore, Kernel Deblur, Motion Deblur) is closer to the
    clean reference than the degraded input (PSNR).
    Workflows with an SD1.5 refinement (Load Checkpoint): by default the SD part is validated by
    /prompt but not executed (too slow on a CPU) and the M3UNet half runs on its own; with
    M3UNET_RUN_SD15=1 the whole workflow runs on a random-weight SD1.5 checkpoint and the refined
    image is checked for size only (random weights make noise)."""
    ui = json.loads(workflow.read_text())
    assert ui.get("version") == 0.4 and ui["nodes"] and ui["links"]
    api = ui_to_api(ui, comfy_object_info)
    load_nodes = [n for n in api.values() if n["class_type"] == "LoadImage"]
    assert load_nodes and all(n["inputs"]["image"] == EXAMPLE_INPUT for n in load_nodes)
    outputs = {nid for nid, n in api.items() if n["class_type"] in ("SaveImage", "PreviewAny")}
    sd_part = downstream_of(api, "CheckpointLoaderSimple")
    t0 = time.monotonic()
    if sd_part:
        # Every output needs the checkpoint, so that without one /prompt refuses the whole graph instead of
        # running the M3UNet half and calling it a success. The M3UNet half is checked on its own below.
        assert outputs <= sd_part, "an output of the SD 1.5 workflow runs without the checkpoint"
        request.getfixturevalue("sd15_checkpoint")
        half = m3unet_half(api, sd_part)
        if RUN_SD15:
            full = comfy_host.run(api, timeout=3600)
            assert_success(comfy_host, full)
            w, h = Image.open(comfy_host.input_dir / EXAMPLE_INPUT).size
            refined = [Image.open(paths[0]).size for nid, paths in saved_by_node(full, comfy_host).items()
                       if api[api[nid]["inputs"]["images"][0]]["class_type"] == "VAEDecode"]
            assert refined == [(w // 8 * 8, h // 8 * 8)], refined
            entry = comfy_host.run(half, timeout=900)
        else:
            # SD1.5 on a 2-core CPU costs minutes (one UNet step at 256 px took over a minute on the shared
            # development machine; plus the VAE at 600x400 and a 1.9 GB checkpoint build), beyond the suite's
            # budget: /prompt validates the whole graph (links, types, widget ranges, the checkpoint name)
            # without executing it. The browser tests run it whole, on a small image.
            prompt_id = comfy_host.queue(half)
            full_id = comfy_host.queue(api)  # accepted = valid; dropped before it can start
            comfy_host.delete_queued(full_id)
            entry = comfy_host.wait(prompt_id, timeout=900)
            time.sleep(0.5)
            assert comfy_host.history(full_id) is None, "the full SD1.5 graph ran although it was removed from the queue"
        api, outputs = half, {nid for nid, n in half.items() if n["class_type"] in ("SaveImage", "PreviewAny")}
    else:
        entry = comfy_host.run(api, timeout=3600)
    TIMINGS[workflow.stem] = time.monotonic() - t0
    assert_success(comfy_host, entry)
    saved = saved_by_node(entry, comfy_host)
    restored = [nid for nid, n in api.items() if n["class_type"] == "SaveImage"
                and api[n["inputs"]["images"][0]]["class_type"] in ("M3UNetSampler", "M3UNetAutoRestore",
                                                                          "M3UNetKernelDeblur", "M3UNetMotionDeblur")]
    assert len(restored) == 1 and set(saved) == {nid for nid in outputs if api[nid]["class_type"] == "SaveImage"}, saved
    degraded = load_rgb(comfy_host.input_dir / EXAMPLE_INPUT)
    clean = load_rgb(EXAMPLES / "coffee_clean.png")
    for nid, paths in saved.items():
        assert len(paths) == 1, paths
        assert load_rgb(paths[0]).shape == degraded.shape == clean.shape
    p_saved, p_input = psnr(load_rgb(saved[restored[0]][0]), clean), psnr(degraded, clean)
    texts = {nid: o["text"][0] for nid, o in (entry.get("outputs") or {}).items() if o.get("text")}
    print(f"\n{workflow.name}: PSNR saved {p_saved:.2f} dB vs input {p_input:.2f} dB "
          f"({TIMINGS[workflow.stem]:.1f} s); texts: {texts}")
    assert p_saved > p_input, f"no restoration: PSNR saved {p_saved:.2f} dB <= input {p_input:.2f} dB"
    for nid, n in api.items():  # a caption's degradation_text that reaches the Sampler is M3UNet's phrasing
        if n["class_type"] == "PreviewAny" and n["inputs"]["source"][1] == 2 \
                and api[n["inputs"]["source"][0]]["class_type"] == "M3UNetMLLMCaption":
            assert texts[nid].startswith(("remove the", "sharpen the", "deblur the", "brighten the")), texts


def test_classifier_report_on_the_example(comfy_host: ComfyHost, inputs: dict[str, str]) -> None:
    """The classifier finds the example's degradations; its report reaches the UI (PreviewAny)."""
    g = {"1": load_image_node(inputs["example"]),
         "2": {"class_type": "M3UNetDegradationClassifier",
               "inputs": {"image": ["1", 0], "classifier_name": "classifier-default.safetensors", "threshold": 0.5}},
         "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 1]}},
         "4": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}}}
    entry = comfy_host.run(g, timeout=300)
    assert_success(comfy_host, entry)
    report, text = (entry["outputs"][k]["text"][0] for k in ("3", "4"))
    print(f"\nclassifier on the example: {report} | {text}")
    assert report != "no degradation detected" and "p=" in report, report
    assert text.startswith(("remove", "sharpen", "restore", "brighten", "fix")), text


def test_kernel_deblur_sharpens_a_defocused_photo(comfy_host: ComfyHost) -> None:
    """M3UNet Kernel Deblur on a held-out photo blurred with a Gaussian of sigma 2 px: the estimate
    is reported and the photo comes back much sharper (PSNR); a given sigma is used as given."""
    import torch

    from m3unet.training import synthesis as deg
    clean = load_rgb(EXAMPLES / "coffee_clean.png")[100:300, 150:450]
    x = torch.from_numpy(clean).permute(2, 0, 1).float() / 255
    blurred = deg.convolve(x, deg.gaussian_kernel(2.0)) + 2 / 255 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    blurred = (blurred.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    Image.fromarray(blurred).save(comfy_host.input_dir / "m3unet_defocus.png")

    def graph(sigma: float) -> dict[str, Any]:
        return {"1": load_image_node("m3unet_defocus.png"),
                "2": {"class_type": "M3UNetLoader", "inputs": {"model_name": DEFAULT_MODEL}},
                "3": {"class_type": "M3UNetKernelDeblur",
                      "inputs": {"model": ["2", 0], "image": ["1", 0], "blur_sigma": sigma, "noise": -1.0, "seed": 0}},
                "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0],
                                                            "filename_prefix": f"m3unet_test/{uuid.uuid4().hex[:8]}"}},
                "5": {"class_type": "PreviewAny", "inputs": {"source": ["3", 1]}}}

    entry = comfy_host.run(graph(0.0), timeout=600)
    assert_success(comfy_host, entry)
    report = entry["outputs"]["5"]["text"][0]
    out = load_rgb(comfy_host.output_images(entry)[0])
    print(f"\nkernel deblur: {report}; PSNR {psnr(blurred, clean):.2f} -> {psnr(out, clean):.2f} dB")
    assert "estimated" in report and "blur sigma" in report, report
    assert out.shape == clean.shape and psnr(out, clean) > psnr(blurred, clean) + 1.5
    given = comfy_host.run(graph(1.25), timeout=600)
    assert_success(comfy_host, given)
    assert "blur sigma 1.25 px" in given["outputs"]["5"]["text"][0] and "given" in given["outputs"]["5"]["text"][0]


def test_motion_deblur_undoes_camera_shake(comfy_host: ComfyHost) -> None:
    """M3UNet Motion Deblur on a held-out photo shaken by a straight 13 px motion at 30 degrees: the
    kernel is estimated and reported, the photo comes back sharper (PSNR); a given length is used."""
    import torch

    from m3unet.training import synthesis as deg
    clean = load_rgb(EXAMPLES / "coffee_clean.png")[60:316, 120:376]
    x = torch.from_numpy(clean).permute(2, 0, 1).float() / 255
    shaken = deg.convolve(x, deg.motion_kernel(13, 30, 0.0, 1))
    shaken = (shaken.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    Image.fromarray(shaken).save(comfy_host.input_dir / "m3unet_shaken.png")

    def graph(length: float) -> dict[str, Any]:
        return {"1": load_image_node("m3unet_shaken.png"),
                "2": {"class_type": "M3UNetLoader", "inputs": {"model_name": DEFAULT_MODEL}},
                "3": {"class_type": "M3UNetMotionDeblur",
                      "inputs": {"model": ["2", 0], "image": ["1", 0], "length": length, "angle": -1.0,
                                 "strength": 0.01, "seed": 0}},
                "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0],
                                                            "filename_prefix": f"m3unet_test/{uuid.uuid4().hex[:8]}"}},
                "5": {"class_type": "PreviewAny", "inputs": {"source": ["3", 1]}}}

    entry = comfy_host.run(graph(0.0), timeout=600)
    assert_success(comfy_host, entry)
    report = entry["outputs"]["5"]["text"][0]
    out = load_rgb(comfy_host.output_images(entry)[0])
    print(f"\nmotion deblur: {report}; PSNR {psnr(shaken, clean):.2f} -> {psnr(out, clean):.2f} dB")
    assert "estimated" in report and "motion" in report, report
    assert out.shape == clean.shape and psnr(out, clean) > psnr(shaken, clean) + 1.5
    given = comfy_host.run(graph(9.0), timeout=600)
    assert_success(comfy_host, given)
    assert "motion 9.0 px" in given["outputs"]["5"]["text"][0] and "given" in given["outputs"]["5"]["text"][0]


# ---------------------------------------------------------------------------- 3. batches
def test_image_batch(comfy_host: ComfyHost, inputs: dict[str, str]) -> None:
    """ImageBatch of an image with itself -> the Sampler returns 2 images of the same size."""
    g = restore_graph({"class_type": "ImageBatch", "inputs": {"image1": ["8", 0], "image2": ["8", 0]}},
                      strength=1.0, extra={"8": load_image_node(inputs["small"])})
    entry = comfy_host.run(g, timeout=600)
    assert_success(comfy_host, entry)
    paths = comfy_host.output_images(entry)
    assert len(paths) == 2, paths
    for p in paths:
        assert Image.open(p).size == (160, 120)


# ---------------------------------------------------------------------------- 4. errors
def test_too_small_image_is_a_clear_execution_error(comfy_host: ComfyHost, inputs: dict[str, str]) -> None:
    entry = comfy_host.run(restore_graph(load_image_node(inputs["tiny"])), timeout=300)
    assert entry["status"]["status_str"] == "error"
    err = comfy_host.execution_error(entry)
    assert err is not None and err["node_type"] == "M3UNetSampler", err
    msg = err["exception_message"]
    assert "2x2" in msg and "16x16" in msg, msg


def test_strength_above_max_is_rejected(comfy_host: ComfyHost, inputs: dict[str, str]) -> None:
    with pytest.raises(PromptRejected) as info:
        comfy_host.queue(restore_graph(load_image_node(inputs["small"]), strength=5.0))
    errors = info.value.node_errors.get("4", {}).get("errors", [])
    assert any(e["type"] == "value_bigger_than_max" for e in errors), info.value.body


def test_missing_model_file_is_rejected(comfy_host: ComfyHost, inputs: dict[str, str]) -> None:
    with pytest.raises(PromptRejected) as info:
        comfy_host.queue(restore_graph(load_image_node(inputs["small"]), model_name="no-such-model.safetensors"))
    errors = info.value.node_errors.get("2", {}).get("errors", [])
    # V3 combos are not checked against their options by ComfyUI 0.3.75: the loader's
    # validate_inputs rejects the name (custom_validation_failed) and names the file.
    assert any(e["type"] in ("value_not_in_list", "custom_validation_failed")
               and "no-such-model.safetensors" in e["details"] for e in errors), info.value.body


def test_corrupt_model_file_names_the_file(comfy_host: ComfyHost, inputs: dict[str, str]) -> None:
    """A corrupt file dropped into models/m3unet while the host runs is listed (the folder list
    is re-read when the folder changes) and fails with a message naming the file."""
    folder = comfy_host.base_dir / "models" / "m3unet"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "broken.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    options = comfy_host.object_info("M3UNetLoader")["M3UNetLoader"]["input"]["required"]["model_name"][1]["options"]
    assert "broken.safetensors" in options and options[0] == DEFAULT_MODEL, options
    entry = comfy_host.run(restore_graph(load_image_node(inputs["small"]), model_name="broken.safetensors"),
                           timeout=300)
    assert entry["status"]["status_str"] == "error"
    err = comfy_host.execution_error(entry)
    assert err is not None and err["node_type"] == "M3UNetLoader", err
    assert "broken.safetensors" in err["exception_message"], err
    assert err["exception_type"].endswith("CheckpointError"), err


def test_control_image_of_another_size_is_a_clear_error(comfy_host: ComfyHost, inputs: dict[str, str]) -> None:
    g = restore_graph(load_image_node(inputs["small"]), control_image=load_image_node(inputs["smaller"]))
    entry = comfy_host.run(g, timeout=300)
    err = comfy_host.execution_error(entry)
    assert err is not None and err["node_type"] == "M3UNetSampler", err
    assert "96x64" in err["exception_message"] and "160x120" in err["exception_message"], err


# ---------------------------------------------------------------------------- 5. interrupt
def test_interrupt_stops_a_slow_job(comfy_host: ComfyHost, inputs: dict[str, str]) -> None:
    """A 1024x1024 image at 20 steps; POST /interrupt once the Sampler reports progress."""
    empty = {"class_type": "EmptyImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1,
                                                    "color": 0x808080}}
    g = restore_graph(empty, steps=20, text=f"interrupt me {uuid.uuid4().hex[:6]}")
    with WsListener(comfy_host) as ws:
        prompt_id = comfy_host.queue(g)
        first = ws.wait_for("progress", prompt_id, timeout=300)
        assert first["node"] == "5"
        t0 = time.monotonic()
        comfy_host.interrupt()
        entry = comfy_host.wait(prompt_id, timeout=300)
        stopped_after = time.monotonic() - t0
        last = ws.events("progress", prompt_id)[-1]
    TIMINGS["interrupt_latency"] = stopped_after
    print(f"\ninterrupted at progress {last['value']}/{last['max']}, {stopped_after:.2f} s after /interrupt")
    assert comfy_host.was_interrupted(entry), entry["status"]
    assert entry["status"]["status_str"] == "error"
    assert last["value"] < last["max"]
    assert not comfy_host.output_images(entry)


# ---------------------------------------------------------------------------- 6. progress
def test_progress_events(comfy_host: ComfyHost, inputs: dict[str, str]) -> None:
    """Progress events of the Sampler have max = batch * tiles * steps and end at max."""
    from m3unet.core import tiling
    from m3unet.restore.pipeline import DEFAULT_OVERLAP

    steps, tile, (w, h) = 2, 256, (600, 400)
    tiles = tiling.count(h, w, tile, DEFAULT_OVERLAP)
    assert tiles > 1  # exercise the tiled path
    g = restore_graph(load_image_node(inputs["example"]), steps=steps, tile=tile,
                      text=f"progress {uuid.uuid4().hex[:6]}")
    with WsListener(comfy_host) as ws:
        prompt_id = comfy_host.queue(g)
        entry = comfy_host.wait(prompt_id, timeout=300)
        deadline = time.monotonic() + 10
        while not ws.events("executed", prompt_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        events = [e for e in ws.events("progress", prompt_id) if e["node"] == "5"]
    assert_success(comfy_host, entry)
    assert events, "no progress events from the Sampler"
    assert {e["max"] for e in events} == {tiles * steps}
    values = [e["value"] for e in events]
    assert values == sorted(values) and values[-1] == tiles * steps, values



def progress_of(host: ComfyHost, graph: dict[str, Any], node: str) -> list[tuple[float, float]]:
    """Run ``graph`` and return the (value, max) progress events of node ``node``, in order."""
    with WsListener(host) as ws:
        prompt_id = host.queue(graph)
        entry = host.wait(prompt_id, timeout=900)
        deadline = time.monotonic() + 10
        while not ws.events("executed", prompt_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        events = [(e["value"], e["max"]) for e in ws.events("progress", prompt_id) if e["node"] == node]
    assert_success(host, entry)
    return events


def assert_moves_during_the_run(events: list[tuple[float, float]]) -> None:
    """At least three distinct values, one max, never backwards, ending at the max: the bar moves
    while the node works instead of sitting at 0 and jumping at the end."""
    values = [v for v, _ in events]
    assert len({m for _, m in events}) == 1, events
    assert len(set(values)) >= 3 and values == sorted(values) and values[-1] == events[-1][1], events
    assert values[0] < events[-1][1] / 2, events


def test_kernel_deblur_progress_moves_during_the_run(comfy_host: ComfyHost, inputs: dict[str, str]) -> None:
    g = {"1": load_image_node(inputs["example"]),
         "2": {"class_type": "M3UNetLoader", "inputs": {"model_name": DEFAULT_MODEL}},
         "3": {"class_type": "M3UNetKernelDeblur", "inputs": {"model": ["2", 0], "image": ["1", 0],
                                                               "blur_sigma": 1.5, "noise": -1.0,
                                                               "seed": int(uuid.uuid4().int % 1000)}},
         "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "m3unet_test/deblur"}}}
    assert_moves_during_the_run(progress_of(comfy_host, g, "3"))


def test_auto_restore_progress_moves_during_the_run(comfy_host: ComfyHost, inputs: dict[str, str]) -> None:
    g = {"1": load_image_node(inputs["small"]),
         "2": {"class_type": "M3UNetLoader", "inputs": {"model_name": DEFAULT_MODEL}},
         "3": {"class_type": "M3UNetAutoRestore", "inputs": {"model": ["2", 0], "image": ["1", 0], "budget": 2,
                                                              "seed": int(uuid.uuid4().int % 1000),
                                                              "keep_larger": False, "plan": ""}},
         "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "m3unet_test/auto"}}}
    assert_moves_during_the_run(progress_of(comfy_host, g, "3"))


def test_sd15_workflow_without_its_checkpoint_is_refused_whole(comfy_host: ComfyHost,
                                                               comfy_object_info: dict[str, Any],
                                                               inputs: dict[str, str]) -> None:
    """Without the checkpoint Load Checkpoint names, /prompt refuses the whole SD 1.5 workflow (the front
    end shows the error) instead of running the M3UNet half and reporting success; the refusal names
    the checkpoint."""
    ui = json.loads((REPO / "workflows" / "mllm_caption_sd15_refine.json").read_text())
    api = ui_to_api(ui, comfy_object_info)
    missing = f"m3unet-absent-{uuid.uuid4().hex[:6]}.safetensors"
    for n in api.values():
        if n["class_type"] == "CheckpointLoaderSimple":
            n["inputs"]["ckpt_name"] = missing
    with pytest.raises(PromptRejected) as info:
        comfy_host.queue(api)
    assert info.value.error.get("type") == "prompt_outputs_failed_validation", info.value.body
    errors = [e for ne in info.value.node_errors.values() for e in ne.get("errors", [])]
    assert any(missing in (e.get("details") or "") for e in errors), info.value.body

# ---------------------------------------------------------------------------- 7. automatic restore
def test_auto_restore_runs_a_spandrel_pool_model(comfy_host: ComfyHost) -> None:
    """A tiny RealESRGAN Compact file in models/upscale_models, loaded by ComfyUI's UpscaleModelLoader,
    wired into M3UNetAutoRestore as pool_model_1 and named by the plan: it runs, and the report says so.
    With keep_larger, a 2x pool model gives a 2x image."""
    from auto_helpers import PoolModelRunner, save_compact_blur

    folder = comfy_host.base_dir / "models" / "upscale_models"
    for scale in (1, 2):
        save_compact_blur(folder / f"m3unet_test_compact_{scale}x.safetensors", scale)
    clean = load_rgb(EXAMPLES / "coffee_clean.png")[120:240, 200:360]
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, 15, clean.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(comfy_host.input_dir / "m3unet_noisy.png")

    def graph(scale: int, plan: str, keep_larger: bool) -> dict[str, Any]:
        return {
            "1": load_image_node("m3unet_noisy.png"),
            "2": {"class_type": "M3UNetLoader", "inputs": {"model_name": DEFAULT_MODEL}},
            "3": {"class_type": "UpscaleModelLoader",
                  "inputs": {"model_name": f"m3unet_test_compact_{scale}x.safetensors"}},
            "4": {"class_type": "M3UNetAutoRestore",
                  "inputs": {"model": ["2", 0], "image": ["1", 0], "budget": 2, "seed": 0, "keep_larger": keep_larger,
                             "plan": plan, "pool_model_1": ["3", 0], "pool_task_1": "noise"}},
            "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0],
                                                        "filename_prefix": f"m3unet_test/{uuid.uuid4().hex[:8]}"}},
            "6": {"class_type": "PreviewAny", "inputs": {"source": ["4", 1]}},
            "7": {"class_type": "PreviewAny", "inputs": {"source": ["4", 2]}},
        }

    plan = json.dumps([{"task": "noise", "strength": 0.3, "model": "pool_model_1"}])
    entry = comfy_host.run(graph(1, plan, False), timeout=600)
    assert_success(comfy_host, entry)
    report = entry["outputs"]["6"]["text"][0]
    assert "Step 1, noise:" in report and "pool_model_1" in report, report
    assert json.loads(entry["outputs"]["7"]["text"][0])["steps"][0]["model"] == "pool_model_1"
    saved = load_rgb(comfy_host.output_images(entry)[0])
    assert saved.shape == noisy.shape
    if "rolled back" in report:  # the classifier judged the step harmful: the input comes back
        assert psnr(saved, noisy) > 45, report
    else:  # applied (no classifier) or kept: exactly the spandrel model's output
        expected = PoolModelRunner(folder / "m3unet_test_compact_1x.safetensors")(noisy)
        assert psnr(saved, expected) > 45, report
        assert psnr(saved, clean) > psnr(noisy, clean) + 2
    big = comfy_host.run(graph(2, "", True), timeout=600)
    assert_success(comfy_host, big)
    assert load_rgb(comfy_host.output_images(big)[0]).shape == (240, 320, 3)
