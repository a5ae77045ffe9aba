"""The M3UNet node classes called directly in this process (no server), on CPU.

ComfyUI's modules are importable in-process from the host tree (``.host/ComfyUI``) once
``comfy.cli_args.args.cpu`` is set (otherwise ``comfy.model_management`` looks for CUDA at
import). The pack is imported the way ComfyUI does it: the repo root as a package
(``m3unet_pack``), so its relative imports work. ``folder_paths.models_dir`` points at a
temporary folder. A tiny random model with a zero-initialised output layer (the model starts
as the identity) makes one sampler step return its input exactly, which checks the tiling,
channels and batch plumbing without trained weights.
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from auto_helpers import NoiseReader, add_noise, noise_sigma, save_compact_blur, smooth_photo
from comfy_client import load_host_builder

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
NODE_IDS = ["M3UNetLoader", "M3UNetRefineEncoder", "M3UNetPixelControl", "M3UNetSampler", "M3UNetMLLMLoader",
            "M3UNetMLLMCaption", "M3UNetAutoRestore", "M3UNetKernelDeblur", "M3UNetMotionDeblur", "M3UNetDegradationClassifier"]
SEEDED = ["M3UNetSampler", "M3UNetAutoRestore", "M3UNetKernelDeblur", "M3UNetMotionDeblur", "M3UNetMLLMCaption"]


@pytest.fixture(scope="session")
def pack(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The pack imported in-process as ``m3unet_pack`` with ComfyUI's modules importable."""
    comfy_root = load_host_builder(REPO).build(REPO / ".host")
    if str(comfy_root) not in sys.path:
        sys.path.insert(0, str(comfy_root))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management as mm
    import comfy.utils
    import folder_paths

    models_dir = tmp_path_factory.mktemp("comfy_models")
    folder_paths.models_dir = str(models_dir)
    if "m3unet_pack" not in sys.modules:
        spec = importlib.util.spec_from_file_location("m3unet_pack", REPO / "__init__.py",
                                                      submodule_search_locations=[str(REPO)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["m3unet_pack"] = module
        spec.loader.exec_module(module)
    root = sys.modules["m3unet_pack"]
    import m3unet_pack.nodes as nodes
    from m3unet_pack.m3unet.core import tiling
    from m3unet_pack.m3unet.restore import pipeline
    from m3unet_pack.m3unet.core.unet import M3UNet, M3UNetConfig
    from m3unet_pack.m3unet.core.weights import save_model
    from m3unet_pack.nodes import common, compat

    torch.manual_seed(0)
    tiny = M3UNet(M3UNetConfig(width=8, enc_blocks=[1, 1, 1], mid_blocks=1, dec_blocks=[1, 1, 1],
                               cond_dim=32, embed_dim=32, heads=1))
    user_dir = Path(common.user_models_dir())
    assert user_dir.parent == models_dir and user_dir.is_dir()
    save_model(tiny, user_dir / "tiny.safetensors")
    from m3unet_pack.m3unet.auto.classifier import ClassifierConfig, DegradationClassifier, save_classifier
    save_classifier(DegradationClassifier(ClassifierConfig(widths=[8, 8, 8, 8], global_widths=[8, 8], hidden=16)),
                    user_dir / "tiny-classifier.safetensors")
    return SimpleNamespace(root=root, nodes=nodes, common=common, compat=compat, pipeline=pipeline, tiling=tiling,
                           mm=mm, utils=comfy.utils, folder_paths=folder_paths, user_dir=user_dir)


def run(node, **kwargs):
    """Call a V3 node's execute and return its outputs tuple."""
    return node.execute(**kwargs).result


@pytest.fixture()
def tiny_model(pack):
    return run(pack.nodes.M3UNetLoader, model_name="tiny.safetensors")[0]


# ---------------------------------------------------------------------------- registration
def test_root_init_imports_nothing_heavy() -> None:
    code = ("import importlib.util, sys; "
            f"s = importlib.util.spec_from_file_location('p', {str(REPO / '__init__.py')!r}, "
            f"submodule_search_locations=[{str(REPO)!r}]); m = importlib.util.module_from_spec(s); "
            "s.loader.exec_module(m); assert callable(m.comfy_entrypoint); "
            "bad = [k for k in ('torch', 'comfy', 'comfy_api', 'p.nodes') if k in sys.modules]; "
            "assert not bad, bad; assert not hasattr(m, 'NODE_CLASS_MAPPINGS')")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_entrypoint_lists_the_nodes_with_tooltips(pack) -> None:
    ext = asyncio.run(pack.root.comfy_entrypoint())
    node_list = asyncio.run(ext.get_node_list())
    schemas = {cls.GET_SCHEMA().node_id: cls.GET_SCHEMA() for cls in node_list}
    assert sorted(schemas) == sorted(NODE_IDS)
    assert schemas["M3UNetRefineEncoder"].display_name == "RefineEncoder (M3UNet)"
    assert schemas["M3UNetPixelControl"].display_name == "PixelControl (M3UNet)"
    for node_id, schema in schemas.items():
        assert schema.category == "M3UNet" and schema.description, node_id
        for inp in schema.inputs:
            assert inp.tooltip, f"{node_id}.{inp.id} has no tooltip"
    sampler = {i.id: i for i in schemas["M3UNetSampler"].inputs}
    assert sampler["steps"].default == pack.pipeline.DEFAULT_STEPS
    assert sampler["seed"].control_after_generate == pack.compat.fixed_control()
    assert (sampler["tile"].min, sampler["tile"].max, sampler["tile"].default) == (128, 2048, 512)
    assert sampler["embedding"].optional and sampler["control"].optional


def test_seeds_do_not_change_after_a_run_by_default(pack) -> None:
    """The seeded nodes' results do not depend on the seed in their default settings: their seed's
    control-after-generate starts at "fixed" (io.ControlAfterGenerate.fixed where ComfyUI has it; on
    0.3.75 the control widget is declared and web/js/m3unet_seeds.js sets new nodes to fixed)."""
    for cls in pack.nodes.NODE_LIST:
        schema = cls.GET_SCHEMA()
        seeds = [i for i in schema.inputs if i.id == "seed"]
        assert bool(seeds) == (schema.node_id in SEEDED), schema.node_id
        for seed in seeds:
            control = seed.control_after_generate
            assert control is True or str(getattr(control, "value", control)) == "fixed", (schema.node_id, control)
            assert seed.default == 0 and seed.max == 0xFFFFFFFFFFFFFFFF
    js = (REPO / "web" / "js" / "m3unet_seeds.js").read_text()
    assert all(f'"{node_id}"' in js for node_id in SEEDED)


class _Enum:
    fixed = "fixed"


def test_compat_uses_the_control_mode_where_comfyui_has_it(pack, monkeypatch) -> None:
    """Simulated newer ComfyUI (io.ControlAfterGenerate exists): the seed asks for "fixed" itself;
    without it (0.3.75) the control widget is requested with True."""
    io = pack.compat.io
    monkeypatch.delattr(io, "ControlAfterGenerate", raising=False)
    assert pack.compat.fixed_control() is True
    assert pack.compat.seed_input("s").control_after_generate is True
    monkeypatch.setattr(io, "ControlAfterGenerate", _Enum, raising=False)
    assert pack.compat.fixed_control() == "fixed"
    assert pack.compat.seed_input("s").as_dict()["control_after_generate"] == "fixed"


def test_compat_drops_schema_fields_this_comfyui_lacks(pack, monkeypatch) -> None:
    """search_aliases (newer Schema field) is passed where the Schema has it, dropped where not."""
    import dataclasses
    io = pack.compat.io
    fields = {f.name for f in dataclasses.fields(io.Schema)}
    kwargs = dict(node_id="M3UNetX", display_name="X", category="M3UNet", inputs=[], outputs=[],
                  search_aliases=["other name"])
    if "search_aliases" not in fields:  # ComfyUI 0.3.75
        schema = pack.compat.schema(**kwargs)
        assert schema.node_id == "M3UNetX" and not hasattr(schema, "search_aliases")
    newer = dataclasses.make_dataclass("Schema", [("search_aliases", list, dataclasses.field(default_factory=list))],
                                       bases=(io.Schema,))
    monkeypatch.setattr(io, "Schema", newer)
    assert pack.compat.schema(**kwargs).search_aliases == ["other name"]
    clf = pack.nodes.DegradationClassifierNode.define_schema()
    assert clf.node_id == "M3UNetDegradationClassifier" and "DegradationClassifier" in clf.search_aliases


def test_compat_registers_the_renamed_node_ids_where_comfyui_can(pack, monkeypatch) -> None:
    """Newer ComfyUI (io.NodeReplace and ComfyAPI().node_replacement, called from on_load): the old
    classifier id is registered as replaced by the new one. 0.3.75 lacks both: nothing happens; an
    API that fails is logged and loading goes on."""
    import comfy_api.latest as latest
    io = pack.compat.io
    monkeypatch.delattr(io, "NodeReplace", raising=False)
    assert asyncio.run(pack.compat.register_replacements(pack.nodes.RENAMED)) == 0

    registered = []

    class NodeReplace:
        def __init__(self, new_node_id, old_node_id, old_widget_ids=None, input_mapping=None, output_mapping=None):
            self.new_node_id, self.old_node_id, self.old_widget_ids = new_node_id, old_node_id, old_widget_ids

    class API:
        class NodeReplacement:
            async def register(self, node_replace):
                registered.append(node_replace)

        def __init__(self):
            self.node_replacement = self.NodeReplacement()

    monkeypatch.setattr(io, "NodeReplace", NodeReplace, raising=False)
    monkeypatch.setattr(latest, "ComfyAPI", API)
    asyncio.run(asyncio.run(pack.root.comfy_entrypoint()).on_load())
    assert [(r.new_node_id, r.old_node_id, r.old_widget_ids) for r in registered] == [
        ("M3UNetDegradationClassifier", "DegradationClassifier", ["classifier_name", "threshold"])]
    widgets = [i.id for i in pack.nodes.DegradationClassifierNode.GET_SCHEMA().inputs if i.id != "image"]
    assert widgets == registered[0].old_widget_ids

    class Broken(API):
        class NodeReplacement:
            async def register(self, node_replace):
                raise TypeError("register() got an unexpected keyword argument")

    monkeypatch.setattr(latest, "ComfyAPI", Broken)
    assert asyncio.run(pack.compat.register_replacements(pack.nodes.RENAMED)) == 0



HELP_SECTIONS = ("## What it does", "## When to use it", "## Inputs", "## Tip")


def test_every_node_has_a_help_page_for_artists(pack) -> None:
    """web/docs/<node id>.md (ComfyUI's custom-node help pages, served under WEB_DIRECTORY) for every
    registered node: a title, what it does, when to use it, every input by name, and a tip."""
    assert pack.root.WEB_DIRECTORY == "./web"
    docs = REPO / "web" / "docs"
    ids = [cls.GET_SCHEMA().node_id for cls in pack.nodes.NODE_LIST]
    assert sorted(p.stem for p in docs.glob("*.md")) == sorted(ids)
    for cls in pack.nodes.NODE_LIST:
        schema = cls.GET_SCHEMA()
        text = (docs / f"{schema.node_id}.md").read_text()
        assert text.startswith(f"# {schema.display_name}\n"), schema.node_id
        assert all(section in text for section in HELP_SECTIONS), schema.node_id
        inputs = text[text.index("## Inputs"):]
        # numbered inputs may be named together: **pool_model_1..3**
        missing = [i.id for i in schema.inputs if f"**{i.id}**" not in inputs
                   and f"**{i.id.rstrip('0123456789')}" not in inputs]
        assert not missing, (schema.node_id, missing)
        assert "m3unet." not in text and "TODO" not in text, schema.node_id

# ---------------------------------------------------------------------------- models folder
def test_model_folder_extends_an_existing_entry(pack) -> None:
    fnp = pack.folder_paths.folder_names_and_paths
    saved = fnp.get("m3unet")
    try:
        fnp["m3unet"] = (["/somewhere/else"], [".ckpt"])
        pack.common.register_model_folder()
        pack.common.register_model_folder()
        paths, exts = fnp["m3unet"]
        assert paths == ["/somewhere/else", pack.common.user_models_dir(), str(REPO / "weights")]
        assert {".safetensors", ".ckpt"} <= set(exts)
    finally:
        fnp["m3unet"] = saved


def test_model_list_has_the_default_first(pack) -> None:
    names = pack.common.model_names()
    assert names[0] == "m3unet-default.safetensors"
    assert "tiny.safetensors" in names and names.count("m3unet-default.safetensors") == 1


def test_loader_caches_and_reloads_when_the_file_changes(pack) -> None:
    loader = pack.nodes.M3UNetLoader
    a = run(loader, model_name="tiny.safetensors")[0]
    b = run(loader, model_name="tiny.safetensors")[0]
    assert a is b and a.name == "tiny.safetensors"
    fp = loader.fingerprint_inputs(model_name="tiny.safetensors")
    path = pack.user_dir / "tiny.safetensors"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert loader.fingerprint_inputs(model_name="tiny.safetensors") != fp
    c = run(loader, model_name="tiny.safetensors")[0]
    assert c is not a


def test_loader_validation_and_errors(pack) -> None:
    loader = pack.nodes.M3UNetLoader
    assert loader.validate_inputs(model_name="tiny.safetensors") is True
    msg = loader.validate_inputs(model_name="missing.safetensors")
    assert isinstance(msg, str) and "missing.safetensors" in msg and "tiny.safetensors" in msg
    (pack.user_dir / "broken.safetensors").write_bytes(os.urandom(2048))
    try:
        assert "broken.safetensors" in pack.common.model_names()
        with pytest.raises(ValueError, match="broken.safetensors"):
            run(loader, model_name="broken.safetensors")
    finally:
        (pack.user_dir / "broken.safetensors").unlink()


# ---------------------------------------------------------------------------- PixelControl
def test_pixel_control(pack) -> None:
    node = pack.nodes.M3UNetPixelControl
    image = torch.rand(1, 20, 30, 3)
    plain = run(node, image=image, strength=0.5)[0]
    assert plain.strength == 0.5 and plain.image is image
    big = plain.strength_map(2, 4096, 4096)  # a scalar strength allocates no full-size map
    assert big.shape == (2, 1, 4096, 4096) and big.untyped_storage().nbytes() == 4 and float(big[1, 0, -1, -1]) == 0.5
    mask = torch.zeros(1, 20, 30)
    mask[:, :, :15] = 1
    masked = run(node, image=image, strength=1.5, outside=0.25, mask=mask)[0]
    s = masked.strength_map(1, 20, 30)
    assert s.shape == (1, 1, 20, 30)
    assert torch.allclose(s[..., :15], torch.tensor(1.5)) and torch.allclose(s[..., 15:], torch.tensor(0.25))
    with pytest.warns(UserWarning, match="mask is empty"):
        empty = run(node, image=image, strength=0.75, mask=torch.zeros(1, 64, 64))[0]
    assert empty.strength == 0.75  # LoadImage's zero MASK must not switch restoration off
    with pytest.raises(ValueError, match=r"mask must be a MASK.*\(1, 1, 20, 30\)"):
        run(node, image=image, strength=1.0, mask=torch.zeros(1, 1, 20, 30))


# ---------------------------------------------------------------------------- Sampler
@pytest.mark.parametrize("channels", [3, 4, 1])
def test_identity_model_returns_the_input_exactly(pack, tiny_model, channels: int) -> None:
    """One step of the identity model through several blended tiles: output == input."""
    image = torch.rand(2, 40, 200, channels)
    assert pack.tiling.count(40, 200, 128, pack.pipeline.DEFAULT_OVERLAP) > 1
    out = run(pack.nodes.M3UNetSampler, model=tiny_model, image=image, text="", steps=1, seed=0,
              eta=0.0, tile=128)[0]
    assert out.shape == image.shape and out.dtype == image.dtype
    assert out.device == pack.mm.intermediate_device()
    torch.testing.assert_close(out, image, atol=1e-5, rtol=0)


def test_sampler_progress_bar_and_embedding(pack, tiny_model, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(pack.utils, "PROGRESS_BAR_HOOK",
                        lambda value, total, preview, node_id=None: calls.append((value, total)))
    image = torch.rand(1, 40, 200, 3)
    emb = run(pack.nodes.M3UNetRefineEncoder, model=tiny_model, image=image.expand(2, -1, -1, -1))[0]
    assert emb.shape == (2, tiny_model.model.config.embed_dim)
    torch.testing.assert_close(emb[0], emb[1])
    control = run(pack.nodes.M3UNetPixelControl, image=image, strength=1.0)[0]
    out = run(pack.nodes.M3UNetSampler, model=tiny_model, image=image, text="remove the noise", steps=2,
              seed=3, eta=0.5, tile=128, embedding=emb[:1], control=control)[0]
    assert out.shape == image.shape and torch.isfinite(out).all()
    total = 2 * pack.tiling.count(40, 200, 128, pack.pipeline.DEFAULT_OVERLAP)
    assert calls and {t for _, t in calls} == {total}
    assert [v for v, _ in calls] == list(range(1, total + 1))


def test_sampler_is_interruptible(pack, tiny_model, monkeypatch) -> None:
    """The interrupt flag set during the first step stops the Sampler right after it."""
    mm = pack.mm
    calls = []

    def press_interrupt(value, total, preview, node_id=None):
        calls.append(value)
        mm.interrupt_current_processing(True)

    monkeypatch.setattr(pack.utils, "PROGRESS_BAR_HOOK", press_interrupt)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            run(pack.nodes.M3UNetSampler, model=tiny_model, image=torch.rand(1, 40, 200, 3), text="",
                steps=3, seed=0, eta=0.0, tile=128)
    finally:
        mm.interrupt_current_processing(False)
    assert calls == [1]


def test_sampler_errors_are_the_library_messages(pack, tiny_model) -> None:
    with pytest.raises(pack.pipeline.InputError, match=r"8x8 px.*16x16"):
        run(pack.nodes.M3UNetSampler, model=tiny_model, image=torch.rand(1, 8, 8, 3), text="",
            steps=1, seed=0, eta=0.0, tile=512)
    control = run(pack.nodes.M3UNetPixelControl, image=torch.rand(1, 24, 24, 3), strength=1.0)[0]
    with pytest.raises(pack.pipeline.InputError, match=r"control image is 24x24 but the image is 32x32"):
        run(pack.nodes.M3UNetSampler, model=tiny_model, image=torch.rand(1, 32, 32, 3), text="",
            steps=1, seed=0, eta=0.0, tile=512, control=control)


# ---------------------------------------------------------------------------- M3UNetAutoRestore
# A pool model loaded by ComfyUI's own UpscaleModelLoader from a tiny real spandrel (RealESRGAN
# Compact) file, and a noise-reading classifier stand-in (the shipped classifier's accuracy is
# tested where it is trained).
@pytest.fixture(scope="module")
def node_module(pack):
    return sys.modules["m3unet_pack.nodes.autorestore"]


@pytest.fixture(scope="module")
def upscale_models(pack, tmp_path_factory):
    """Compact 1x and 2x files in an upscale_models folder, loaded by ComfyUI's UpscaleModelLoader."""
    folder = tmp_path_factory.mktemp("upscale_models")
    save_compact_blur(folder / "compact_1x.safetensors", 1)
    save_compact_blur(folder / "compact_2x.safetensors", 2)
    paths, _ = pack.folder_paths.folder_names_and_paths["upscale_models"]
    paths.append(str(folder))
    from comfy_extras.nodes_upscale_model import UpscaleModelLoader
    return {n: UpscaleModelLoader.execute(model_name=f"{n}.safetensors").result[0]
            for n in ("compact_1x", "compact_2x")}


def test_autorestore_schema(pack) -> None:
    schema = pack.nodes.M3UNetAutoRestore.GET_SCHEMA()
    assert schema.node_id == "M3UNetAutoRestore" and schema.category == "M3UNet" and schema.description
    inputs = {i.id: i for i in schema.inputs}
    for i in (1, 2, 3):
        assert inputs[f"pool_model_{i}"].optional and inputs[f"pool_model_{i}"].get_io_type() == "UPSCALE_MODEL"
        assert list(inputs[f"pool_task_{i}"].options) == list(pack.root.m3unet.auto.plan.TASKS)
    assert inputs["plan"].optional and inputs["seed"].control_after_generate == pack.compat.fixed_control()
    assert all(i.tooltip for i in schema.inputs)
    assert [o.get_io_type() for o in schema.outputs] == ["IMAGE", "STRING", "STRING"]


def test_autorestore_plan_is_validated_before_running(pack) -> None:
    node = pack.nodes.M3UNetAutoRestore
    assert node.validate_inputs(plan="") is True
    msg = node.validate_inputs(plan="", pool_m3unet_tasks="blur, sharpen")
    assert isinstance(msg, str) and "pool_m3unet_tasks: unknown task(s) ['sharpen']" in msg
    assert node.validate_inputs(plan='[{"task": "noise", "model": "pool_model_1"}]') is True
    msg = node.validate_inputs(plan='[{"task": "sharpen"}]')
    assert isinstance(msg, str) and "plan step 1: unknown task 'sharpen'" in msg


def test_auto_restore_picks_the_pool_model(pack, tiny_model, node_module, upscale_models,
                                           monkeypatch) -> None:
    """The identity M3UNet cannot remove noise; the Compact blur from the pool can: it is kept."""
    monkeypatch.setattr(node_module, "shipped_classifier", lambda: NoiseReader())
    calls = []
    monkeypatch.setattr(pack.utils, "PROGRESS_BAR_HOOK",
                        lambda value, total, preview, node_id=None: calls.append((value, total)))
    clean = smooth_photo(64, 96)
    noisy = add_noise(clean, 0.08)
    image, report, plan = run(pack.nodes.M3UNetAutoRestore, model=tiny_model, image=noisy, budget=3, seed=0,
                              keep_larger=False, plan="", pool_model_1=upscale_models["compact_1x"],
                              pool_task_1="noise")
    assert image.shape == noisy.shape and image.device == pack.mm.intermediate_device()
    assert "Step 1, noise: kept (pool_model_1). Of 2 candidates it removed the most" in report, report
    assert float(noise_sigma(image)) < float(noise_sigma(noisy)) / 2
    assert json.loads(plan)["steps"][0]["task"] == "noise"
    # Thousandths of the work known so far (m3unet + pool_model_1): one total, the bar moves inside
    # each run, never back, and ends full.
    assert calls and {t for _, t in calls} == {1000} and calls[-1][0] == 1000
    assert [v for v, _ in calls] == sorted(v for v, _ in calls) and len({v for v, _ in calls}) > 3
    # The plan output fed back as the override reproduces the result.
    again = run(pack.nodes.M3UNetAutoRestore, model=tiny_model, image=noisy, budget=3, seed=0, keep_larger=False,
                plan=plan, pool_model_1=upscale_models["compact_1x"], pool_task_1="noise")
    torch.testing.assert_close(again[0], image)


def test_autorestore_second_m3unet_in_the_pool(pack, tiny_model, node_module, monkeypatch) -> None:
    monkeypatch.setattr(node_module, "shipped_classifier", lambda: NoiseReader())
    noisy = add_noise(smooth_photo(40, 56), 0.08)
    plan = '[{"task": "noise", "model": "pool_m3unet", "text": "remove the noise"}]'
    _, report, _ = run(pack.nodes.M3UNetAutoRestore, model=tiny_model, image=noisy, budget=2, seed=0,
                       keep_larger=False, plan=plan, pool_m3unet=tiny_model, pool_m3unet_tasks="noise, jpeg")
    assert "Step 1, noise: kept (pool_m3unet)." in report, report


def test_autorestore_keep_larger_with_a_2x_pool_model(pack, tiny_model, node_module, upscale_models,
                                          monkeypatch) -> None:
    monkeypatch.setattr(node_module, "shipped_classifier", lambda: NoiseReader())
    noisy = add_noise(smooth_photo(40, 56), 0.08).expand(2, -1, -1, -1).contiguous()
    kwargs = dict(model=tiny_model, image=noisy, budget=2, seed=0, plan="",
                  pool_model_2=upscale_models["compact_2x"], pool_task_2="noise")
    big = run(pack.nodes.M3UNetAutoRestore, keep_larger=True, **kwargs)
    assert big[0].shape == (2, 80, 112, 3) and "kept (pool_model_2)" in big[1]
    assert isinstance(json.loads(big[2]), list)  # one plan per image of the batch
    same = run(pack.nodes.M3UNetAutoRestore, keep_larger=False, **kwargs)
    assert same[0].shape == noisy.shape


def test_autorestore_leave_keeps_low_light_and_haze_as_they_are(pack, tiny_model, node_module, monkeypatch) -> None:
    """The leave input: a reading of low light and haze is not acted on and the report says so; the
    other readings still are; an unknown choice is refused before running."""
    from m3unet_pack.m3unet.auto.classifier import LABELS, Finding
    read = {"lowlight": (0.95, 0.6), "haze": (0.9, 0.5), "noise": (0.9, 0.5)}
    reading = Finding({k: read.get(k, (0.01, 0.0))[0] for k in LABELS}, {k: read.get(k, (0.01, 0.0))[1] for k in LABELS})
    monkeypatch.setattr(node_module, "shipped_classifier", lambda: lambda image: [reading] * image.shape[0])
    dark = smooth_photo(48, 64) * 0.3
    steps = lambda plan: [t for s in json.loads(plan)["steps"] for t in [s["task"], *s.get("also", {})]]  # noqa: E731
    _, report, plan = run(pack.nodes.M3UNetAutoRestore, model=tiny_model, image=dark, budget=4, seed=0,
                          keep_larger=False, plan="")
    assert "lowlight" in steps(plan), plan  # (haze: this image keeps deep blacks, so not dehazed anyway)
    _, report, plan = run(pack.nodes.M3UNetAutoRestore, model=tiny_model, image=dark, budget=4, seed=0,
                          keep_larger=False, plan="", leave="low light and haze")
    assert steps(plan) == ["noise"], plan
    assert "darkness (low light) and haze were read too, and left alone as asked" in report, report
    assert "low light and haze" in pack.nodes.M3UNetAutoRestore.GET_SCHEMA().inputs[-1].options
    msg = pack.nodes.M3UNetAutoRestore.validate_inputs(plan="", leave="shadows")
    assert isinstance(msg, str) and "leave: 'shadows' is not one of nothing, low light, haze" in msg


def test_autorestore_interrupt_and_missing_classifier(pack, tiny_model, node_module, monkeypatch) -> None:
    mm = pack.mm
    monkeypatch.setattr(node_module, "shipped_classifier", lambda: None)
    image = add_noise(smooth_photo(48, 48), 0.05)
    out, report, plan = run(pack.nodes.M3UNetAutoRestore, model=tiny_model, image=image, budget=4, seed=0,
                            keep_larger=False, plan="")
    assert "restored with one general M3UNet pass" in report and json.loads(plan)["steps"] == []
    torch.testing.assert_close(out, image, atol=1e-5, rtol=0)  # identity model

    def press_interrupt(value, total, preview, node_id=None):
        mm.interrupt_current_processing(True)

    monkeypatch.setattr(node_module, "shipped_classifier", lambda: NoiseReader())
    monkeypatch.setattr(pack.utils, "PROGRESS_BAR_HOOK", press_interrupt)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            run(pack.nodes.M3UNetAutoRestore, model=tiny_model, image=image, budget=4, seed=0,
                keep_larger=False, plan="")
    finally:
        mm.interrupt_current_processing(False)


def test_shipped_classifier_is_found_by_its_constant_and_cached(pack, node_module, monkeypatch,
                                                                 tmp_path) -> None:
    lib = sys.modules["m3unet_pack.m3unet.auto.restorer"]
    from m3unet_pack.m3unet.auto.classifier import Classifier, DegradationClassifier, save_classifier
    path = tmp_path / "classifier-default.safetensors"
    save_classifier(DegradationClassifier(), path)
    monkeypatch.setattr(lib, "SHIPPED_CLASSIFIER", path)
    monkeypatch.setattr(node_module, "SHIPPED_CLASSIFIER", path)
    node_module._classifier_cache.clear()
    a = node_module.shipped_classifier()
    assert isinstance(a, Classifier) and node_module.shipped_classifier() is a
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert node_module.shipped_classifier() is not a
    monkeypatch.setattr(node_module, "SHIPPED_CLASSIFIER", tmp_path / "gone.safetensors")
    assert node_module.shipped_classifier() is None
    node_module._classifier_cache.clear()
# ---------------------------------------------------------------------------- DegradationClassifier
def test_classifier_list_and_model_list_are_separate(pack) -> None:
    from m3unet_pack.nodes.classify import classifier_names
    names = classifier_names()
    assert names[0] == "classifier-default.safetensors" and "tiny-classifier.safetensors" in names
    assert "tiny.safetensors" not in names and "m3unet-default.safetensors" not in names
    models = pack.common.model_names()
    assert "tiny-classifier.safetensors" not in models and "classifier-default.safetensors" not in models
    assert "blur-estimator.safetensors" not in models  # the kernel deblur's estimator is not an M3UNet


def test_classifier_node_batch_report_and_text(pack) -> None:
    node = pack.nodes.DegradationClassifierNode
    assert node.validate_inputs(classifier_name="classifier-default.safetensors") is True
    msg = node.validate_inputs(classifier_name="nope.safetensors")
    assert isinstance(msg, str) and "nope.safetensors" in msg and "classifier-default.safetensors" in msg
    clean = torch.rand(1, 96, 128, 3) * 0.2 + 0.4
    dark = clean * 0.08
    findings, report, text = run(node, image=torch.cat([clean, dark]),
                                 classifier_name="classifier-default.safetensors", threshold=0.5)
    assert len(findings) == 2 and report.count("\n") == 1 and report.startswith("image 1: ")
    assert "lowlight" in findings[1].labels, findings[1].report()
    assert text.split("\n")[1] == findings[1].restoration_text() and "low light" in text
    one = run(node, image=dark, classifier_name="tiny-classifier.safetensors", threshold=0.95)
    assert len(one[0]) == 1 and "\n" not in one[1] and one[0][0].threshold == 0.95


def test_sampler_steers_itself_with_the_findings(pack, tiny_model, monkeypatch) -> None:
    from m3unet_pack.m3unet.auto.classifier import LABELS, Finding
    seen = []
    real = pack.pipeline.Restorer.embed_text
    monkeypatch.setattr(pack.pipeline.Restorer, "embed_text",
                        lambda self, texts: seen.append(list(texts)) or real(self, texts))
    zero = {k: 0.0 for k in LABELS}
    noisy = Finding(zero | {"noise": 0.9}, zero | {"noise": 0.8})
    hazy = Finding(zero | {"haze": 0.9}, zero | {"haze": 0.2})
    image = torch.rand(2, 32, 32, 3)
    kw = dict(model=tiny_model, image=image, steps=1, seed=0, eta=0.0, tile=512)
    run(pack.nodes.M3UNetSampler, text="", degradation=[noisy, hazy], **kw)
    assert seen[-1] == ["remove the heavy noise", "remove the light haze"]
    run(pack.nodes.M3UNetSampler, text="  ", degradation=[hazy], **kw)  # one finding for the whole batch
    assert seen[-1] == ["remove the light haze"] * 2
    run(pack.nodes.M3UNetSampler, text="sharpen it", degradation=[noisy, hazy], **kw)  # the text wins
    assert seen[-1] == ["sharpen it"] * 2
    with pytest.raises(pack.pipeline.InputError, match="findings for 3 images but the image batch has 2"):
        run(pack.nodes.M3UNetSampler, text="", degradation=[noisy] * 3, **kw)
