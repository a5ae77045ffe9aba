"""The pack in ComfyUI's real web front end, in headless Chromium: what an artist meets.

One ComfyUI 0.3.75 host for this module serves its own front end (``comfyui-frontend-package``,
the version ComfyUI's requirements name); Debian's Chromium is driven by Selenium. For every
workflow in ``workflows/``: it is dropped on the page as a file and must load without a console
error, dialog or toast, with every widget value equal to the file's; Run (the button) must end in
success in ``/history`` with its images shown in the nodes; the saved workflow must survive a page
reload and load again unchanged. Each is also opened from the Templates dialog. New seeded nodes
start at "fixed", a missing SD 1.5 checkpoint is announced on load and stops Run with an error, and
the Auto Restore report shows as separate paragraphs in Preview.

The workflows run on a 192x128 crop of the example photo (so the suite stays within minutes on
two CPU cores), saved under the name they load; the SD 1.5 refinement runs on a random-weight SD 1.5
checkpoint (tests/sd15_random.py, built once into .host/cache) under the name the workflow selects.
Screenshots of every loaded and finished workflow go to ``M3UNET_SCREENSHOT_DIR`` (default
``out/screenshots``). If the host or the browser cannot start, the tests fail (never skip).
"""
from __future__ import annotations

import io
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfy_client import PACK_LINK_NAME, ComfyBrowser, ComfyHost

pytestmark = [pytest.mark.browser, pytest.mark.host, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
EXAMPLE = REPO / "assets" / "examples" / "coffee_degraded.png"
EXAMPLE_INPUT = "m3unet_example_degraded.png"
CROP = (200, 120, 392, 248)  # 192x128 px of the example: a cup edge with noise, blur and JPEG blocks
SCREENSHOTS = Path(os.environ.get("M3UNET_SCREENSHOT_DIR") or REPO / "out" / "screenshots")
FRONT_END_NOTES = ("Note", "MarkdownNote")
SEEDED = ["M3UNetSampler", "M3UNetAutoRestore", "M3UNetKernelDeblur", "M3UNetMotionDeblur", "M3UNetMLLMCaption"]
PACK_NAMES = ("m3unet",)  # how the pack's own URLs, nodes and files are recognised in messages


def load_workflow(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def checkpoint_name(workflow: dict[str, Any]) -> str | None:
    names = [n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "CheckpointLoaderSimple"]
    return names[0] if names else None


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def web_host() -> ComfyHost:
    """A ComfyUI host serving the web front end, with the example crop and the SD 1.5 checkpoint."""
    host = ComfyHost()
    try:
        host.start(REPO, web_frontend=True,
                   startup_timeout=float(os.environ.get("M3UNET_HOST_STARTUP_TIMEOUT", "180")))
        Image.open(EXAMPLE).convert("RGB").crop(CROP).save(host.input_dir / EXAMPLE_INPUT)
        names = {checkpoint_name(load_workflow(p)) for p in WORKFLOWS} - {None}
        if names:
            from sd15_random import cached_checkpoint
            random_sd15 = cached_checkpoint(REPO / ".host" / "ComfyUI", REPO / ".host" / "cache")
            folder = host.base_dir / "models" / "checkpoints"
            folder.mkdir(parents=True, exist_ok=True)
            for name in names:
                (folder / name).symlink_to(random_sd15)
    except Exception as exc:  # noqa: BLE001 - a host that cannot start fails the tests, never skips them
        host.stop(remove_base_dir=True)
        pytest.fail(f"ComfyUI host with the web front end failed to start: {exc}", pytrace=False)
    yield host
    host.stop(remove_base_dir=os.environ.get("M3UNET_KEEP_HOST_DIR") != "1")


@pytest.fixture(scope="module")
def browser(web_host: ComfyHost) -> ComfyBrowser:
    """Chromium on the front end; the pack must load without any error of its own."""
    try:
        b = ComfyBrowser(web_host, pack_names=PACK_NAMES)
        startup = b.open()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"Chromium could not open ComfyUI's front end: {exc}", pytrace=False)
    ours = [m for m in startup if any(n in m.lower() for n in PACK_NAMES)]
    if ours:
        b.close()
        pytest.fail(f"the pack logged errors while the front end started: {ours}", pytrace=False)
    yield b
    b.close()


def shot(browser: ComfyBrowser, name: str) -> Path:
    """Screenshot artifact of the whole workflow in view."""
    browser.fit_view()
    return browser.screenshot(SCREENSHOTS / f"{name}.png")


# ---------------------------------------------------------------------------- comparisons
def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b


def widget_differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Nodes whose type or widget values differ (by node id); notes compare their text too."""
    got = {n["id"]: n for n in actual["nodes"]}
    out = []
    for node in expected["nodes"]:
        other = got.get(node["id"])
        if other is None or other["type"] != node["type"]:
            out.append(f"node {node['id']} {node['type']}: {'missing' if other is None else other['type']}")
            continue
        want = node.get("widgets_values") or []
        have = other.get("widgets_values") or []
        if not same_value(want, have):
            out.append(f"node {node['id']} {node['type']}: file {want!r} != loaded {have!r}")
    return out


def link_set(workflow: dict[str, Any]) -> set[tuple]:
    """Links as (origin node, origin slot name, target node, target input name): slot numbers are
    the front end's business, what is connected to what is the workflow's."""
    nodes = {n["id"]: n for n in workflow["nodes"]}
    out = set()
    for link in workflow["links"]:
        lid, origin, oslot, target, tslot = (link["id"], link["origin_id"], link["origin_slot"], link["target_id"],
                                             link["target_slot"]) if isinstance(link, dict) else link[:5]
        target_input = next((i["name"] for i in nodes[target].get("inputs") or [] if i.get("link") == lid), None)
        out.add((origin, nodes[origin]["outputs"][oslot]["name"], target, target_input))
    return out


def assert_clean(browser: ComfyBrowser, what: str) -> None:
    errors = browser.take_errors()
    overlays = browser.visible_overlays()
    assert not errors, f"{what}: errors in the page: {errors}"
    assert not overlays, f"{what}: a dialog or toast is shown: {overlays}"


def new_tab(browser: ComfyBrowser) -> None:
    """Start from an empty graph (as after File > New), so that a load is seen by its node count."""
    browser.js("app.graph.clear();")
    browser.take_errors()


# ---------------------------------------------------------------------------- per workflow
@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_dropped_runs_and_survives_a_reload(browser: ComfyBrowser, web_host: ComfyHost,
                                                     workflow: Path) -> None:
    ui = load_workflow(workflow)
    t0 = time.monotonic()
    new_tab(browser)
    browser.drop_file(workflow.read_text(), workflow.name, expect_nodes=len(ui["nodes"]))
    assert_clean(browser, f"dropping {workflow.name}")
    loaded = browser.serialize()
    assert not widget_differences(ui, loaded), widget_differences(ui, loaded)
    assert link_set(loaded) == link_set(ui), (link_set(loaded) ^ link_set(ui))
    shot(browser, f"{workflow.stem}_loaded")

    prompt_id, end = browser.run()
    entry = web_host.history(prompt_id)
    assert end == "execution_success", (end, web_host.execution_error(entry or {}))
    assert entry and entry["status"]["status_str"] == "success", entry
    saved = web_host.output_images(entry)
    assert saved and all(p.is_file() for p in saved), saved
    shown = browser.js("""
        return app.graph.nodes.filter(n => n.type === 'SaveImage')
          .map(n => [n.id, (n.imgs || []).filter(i => i.complete && i.naturalWidth > 0).length]);""")
    assert shown and all(count >= 1 for _, count in shown), f"SaveImage nodes without a shown image: {shown}"
    texts = browser.js("""
        return app.graph.nodes.filter(n => n.type === 'PreviewAny').map(n => {
          const w = (n.widgets || []).find(w => w.name === 'preview');
          return [n.id, w ? String(w.value || '') : ''];});""")
    assert all(text.strip() for _, text in texts), f"a Preview shows nothing: {texts}"
    assert_clean(browser, f"running {workflow.name}")
    shot(browser, f"{workflow.stem}_finished")
    finished = browser.serialize()
    assert not widget_differences(ui, finished), f"Run changed widget values: {widget_differences(ui, finished)}"

    # what the front end saves survives a reload (it restores the open workflow) and loads again
    errors = browser.reload()
    browser.wait_for("app.graph.nodes.length === arguments[0]", 60, f"{workflow.name} was not restored after a reload",
                     len(finished["nodes"]))
    errors += browser.take_errors()
    assert not errors, f"reload with {workflow.name} open: {errors}"
    restored = browser.serialize()
    assert not widget_differences(finished, restored) and link_set(restored) == link_set(finished)
    new_tab(browser)
    browser.drop_file(json.dumps(finished), f"{workflow.stem}_saved.json", expect_nodes=len(finished["nodes"]))
    assert_clean(browser, f"loading the saved {workflow.name}")
    again = browser.serialize()
    assert not widget_differences(finished, again) and link_set(again) == link_set(finished)
    print(f"\n{workflow.name} in the browser: {time.monotonic() - t0:.1f} s")


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_opens_from_the_templates_dialog(browser: ComfyBrowser, web_host: ComfyHost,
                                                  workflow: Path) -> None:
    """The Templates dialog lists the pack's workflows (with their thumbnails) and opens each."""
    from selenium.webdriver.common.by import By

    served = web_host.session.get(f"{web_host.url}/api/workflow_templates/{PACK_LINK_NAME}/{workflow.name}",
                                  timeout=30)
    assert served.status_code == 200 and served.json() == load_workflow(workflow), served.status_code
    ui = load_workflow(workflow)
    new_tab(browser)
    browser.driver.find_element(By.CSS_SELECTOR, ".templates-tab-button").click()
    card = browser.wait_for(
        "[...document.querySelectorAll('.p-dialog h3')].find(h => h.innerText.trim() === arguments[0])",
        30, f"{workflow.stem} is not in the Templates dialog", workflow.stem)
    jpg = web_host.session.get(f"{web_host.url}/api/workflow_templates/{PACK_LINK_NAME}/{workflow.stem}.jpg",
                               timeout=30)
    assert jpg.status_code == 200 and Image.open(io.BytesIO(jpg.content)).size == (256, 256), jpg.status_code
    shown = browser.wait_for(
        "(() => { let c = arguments[0]; for (let i = 0; i < 6 && c && !c.querySelector('img'); i++) c = c.parentElement;"
        " const img = c && c.querySelector('img');"
        " return img && img.complete && img.naturalWidth > 0 ? [img.naturalWidth, img.naturalHeight] : null; })()",
        30, f"{workflow.stem} shows no thumbnail in the Templates dialog", card)
    assert shown == [256, 256], shown  # the workflow's own thumbnail, not the placeholder
    browser.js("arguments[0].scrollIntoView({block: 'center'});", card)
    time.sleep(0.5)
    card.click()
    try:
        browser.wait_for("app.graph.nodes.length === arguments[0]", 60, f"{workflow.stem} did not open",
                         len(ui["nodes"]))
        time.sleep(1.0)
        assert_clean(browser, f"opening {workflow.stem} from the Templates dialog")
    except BaseException:
        shot(browser, f"{workflow.stem}_templates_failed")
        browser.close_overlays()  # leave the page usable for the next test
        raise
    opened = browser.serialize()
    assert not widget_differences(ui, opened), widget_differences(ui, opened)
    assert link_set(opened) == link_set(ui)


# ---------------------------------------------------------------------------- single checks
def test_new_seeded_nodes_start_fixed_and_saved_modes_are_kept(browser: ComfyBrowser) -> None:
    """A node added by hand starts with control-after-generate "fixed" (its result does not depend on
    the seed, so Run on an unchanged graph is answered from the cache); a workflow saved with
    "randomize" keeps it."""
    new_tab(browser)
    modes = browser.js("""
        const out = {};
        for (const type of arguments[0]) {
          const node = LiteGraph.createNode(type);
          app.graph.add(node);
          const control = (node.widgets || []).find(w => w.name === 'control_after_generate');
          out[type] = control ? control.value : null;
        }
        return out;""", SEEDED)
    assert modes == {t: "fixed" for t in SEEDED}, modes
    ui = load_workflow(REPO / "workflows" / "m3unet_basic_restore.json")
    (sampler,) = [n for n in ui["nodes"] if n["type"] == "M3UNetSampler"]
    sampler["widgets_values"][3] = "randomize"
    new_tab(browser)
    browser.drop_file(json.dumps(ui), "randomized.json", expect_nodes=len(ui["nodes"]))
    assert_clean(browser, "loading a workflow saved with randomize")
    loaded = {n["id"]: n for n in browser.serialize()["nodes"]}
    assert loaded[sampler["id"]]["widgets_values"][3] == "randomize"


def sd15_with_missing_checkpoint() -> tuple[dict[str, Any], str]:
    ui = load_workflow(REPO / "workflows" / "mllm_caption_sd15_refine.json")
    missing = "m3unet-test-absent-sd15.safetensors"
    for node in ui["nodes"]:
        if node["type"] == "CheckpointLoaderSimple":
            node["widgets_values"] = [missing]
            for model in node["properties"]["models"]:
                model["name"] = missing
    return ui, missing


def test_missing_sd15_checkpoint_is_announced_and_stops_run(browser: ComfyBrowser, web_host: ComfyHost) -> None:
    """Without the checkpoint the SD 1.5 workflow names it in the missing-model dialog on load (with
    its download address), and Run stops with an error that names it instead of a silent success."""
    ui, missing = sd15_with_missing_checkpoint()
    new_tab(browser)
    browser.drop_file(json.dumps(ui), "sd15_missing_checkpoint.json", expect_nodes=len(ui["nodes"]))
    browser.wait_for("[...document.querySelectorAll('.p-dialog')].some(d => d.innerText.includes(arguments[0]))",
                     30, f"no missing-model dialog names {missing}", missing)
    overlays = browser.visible_overlays()
    assert any(missing in text for text in overlays), overlays
    shot(browser, "mllm_caption_sd15_refine_missing_checkpoint")
    browser.close_overlays()
    assert not browser.visible_overlays()
    browser.take_errors()
    before = len(web_host.session.get(web_host.url + "/history", timeout=30).json())
    browser.click_run()
    text = browser.wait_for(
        "[...document.querySelectorAll('.p-dialog, [role=dialog]')].map(d => d.innerText).find(t => "
        "t.includes(arguments[0]))", 30, "Run without the checkpoint showed no error naming it", missing)
    assert "ckpt_name" in text or "Value not in list" in text or missing in text, text
    shot(browser, "mllm_caption_sd15_refine_run_refused")
    time.sleep(1.0)
    assert len(web_host.session.get(web_host.url + "/history", timeout=30).json()) == before, \
        "something ran although the workflow was refused"
    browser.close_overlays()
    browser.take_errors()


def test_auto_restore_report_shows_as_paragraphs(browser: ComfyBrowser) -> None:
    """The Auto Restore report in Preview (shown as Markdown) keeps its sections apart: several
    paragraphs or list items, not one run-on paragraph."""
    ui = load_workflow(REPO / "workflows" / "m3unet_auto_restore.json")
    new_tab(browser)
    browser.drop_file(json.dumps(ui), "auto_report.json", expect_nodes=len(ui["nodes"]))
    browser.run()
    report_node = next(l[3] for l in ui["links"] if l[1] == next(n["id"] for n in ui["nodes"]
                                                                if n["type"] == "M3UNetAutoRestore") and l[2] == 1)
    blocks = browser.js("""
        const node = app.graph.getNodeById(arguments[0]);
        const w = node.widgets.find(w => w.name === 'preview');
        const el = w.inputEl || w.element;
        return [...el.querySelectorAll('p, li, h1, h2, h3')].map(e => e.innerText.trim()).filter(Boolean);""",
                         report_node)
    assert len(blocks) >= 3, blocks
    assert not any("m3unet." in b or "degradation score" in b for b in blocks), blocks
    browser.take_errors()
