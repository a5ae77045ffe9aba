"""The pure-PyTorch library: degradations, tiling, the pipeline's input/output contract, weights."""
from __future__ import annotations

import random

import pytest
import torch

from m3unet.training import synthesis as deg
from m3unet.core import diffusion, tiling
from m3unet.core.control import make_control
from m3unet.core.metrics import psnr, ssim
from m3unet.restore.pipeline import InputError, Restorer
from m3unet.core.text import describe, training_text
from m3unet.core.unet import M3UNet, M3UNetConfig
from m3unet.core.weights import CheckpointError, load_model, save_model

pytestmark = pytest.mark.unit


class FakeText:
    """A deterministic stand-in for the sentence encoder (fast, for mechanics tests only)."""

    def encode(self, texts):
        return torch.stack([torch.randn(384, generator=torch.Generator().manual_seed(hash(t) % 2**31))
                            for t in texts])


@pytest.fixture(scope="module")
def random_restorer() -> Restorer:
    torch.manual_seed(0)
    model = M3UNet(M3UNetConfig(width=8)).eval()
    torch.nn.init.normal_(model.ending.weight, std=0.05)  # not the identity
    return Restorer(model.to(memory_format=torch.channels_last), FakeText())


def photo(h=96, w=128, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(3, h // 8, w // 8, generator=g)
    return torch.nn.functional.interpolate(base[None], size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)


@pytest.mark.parametrize("kind", deg.KINDS)
def test_each_degradation_changes_image_keeps_size_and_is_seeded(kind):
    x = photo()
    d = deg.make(kind, 0.6, torch.Generator().manual_seed(1))
    a = deg.apply(x, [d], torch.Generator().manual_seed(2))
    b = deg.apply(x, [d], torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert psnr(a, x) < 45, f"{kind} at severity 0.6 should visibly degrade"


@pytest.mark.parametrize("kind", ["noise", "blur", "motion", "jpeg", "lowres", "lowlight", "haze"])
def test_severity_is_monotonic(kind):
    x = photo(128, 128)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    scores = [psnr(deg.apply(x, [deg.make(kind, s, g())], g()), x) for s in (0.1, 0.5, 0.95)]
    assert scores[0] > scores[1] > scores[2], scores


def test_mixtures_and_text():
    g = torch.Generator().manual_seed(0)
    rng = random.Random(0)
    seen = set()
    for _ in range(300):
        ds = deg.sample(g)
        seen.add(len(ds))
        kinds = {d.kind for d in ds}
        assert not ({"noise", "poisson"} <= kinds or {"blur", "motion"} <= kinds)
        t = training_text(ds, rng)
        assert isinstance(t, str)
    assert seen == {0, 1, 2, 3}
    text = describe([deg.make("motion", 0.5), deg.make("noise", 0.1)])
    assert text == "remove the moderate motion blur, then remove the light noise"


def test_tiles_partition_of_unity_and_cover():
    for h, w, tile, ov in [(1000, 700, 256, 32), (64, 64, 512, 32), (513, 1025, 512, 32)]:
        acc = torch.zeros(h, w)
        for ys, xs, wt in tiling.grid(h, w, tile, ov):
            assert ys.stop - ys.start <= tile + ov and xs.stop - xs.start <= tile + ov
            acc[ys.start:ys.stop, xs.start:xs.stop] += wt
        torch.testing.assert_close(acc, torch.ones(h, w))


def test_sampler_schedule_and_bridge():
    assert diffusion.schedule(2) == [1.0, 0.5, 0.0]
    with pytest.raises(ValueError):
        diffusion.schedule(0)
    y, x0 = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    calls = []
    out = diffusion.sample(lambda x, t: x0, y, 4, callback=lambda i, n, p: calls.append(i))
    assert calls == [0, 1, 2, 3] and torch.equal(out, x0)


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.uint8])
def test_output_keeps_size_dtype_and_channels(random_restorer, channels, dtype):
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 40, 52, channels, generator=g)
    img = (img * 255).to(torch.uint8) if dtype == torch.uint8 else img.to(dtype)
    out = random_restorer.restore(img, "remove the noise", steps=2, seed=1)
    assert out.shape == img.shape and out.dtype == img.dtype
    if channels == 4:
        assert torch.equal(out[..., 3], img[..., 3]), "alpha must pass through untouched"
    assert not torch.equal(out, img)


def test_seed_reproducible_and_strength_zero_is_identity(random_restorer):
    img = photo(64, 80).permute(1, 2, 0)[None]
    a = random_restorer.restore(img, "", steps=3, seed=5, eta=0.5)
    b = random_restorer.restore(img, "", steps=3, seed=5, eta=0.5)
    c = random_restorer.restore(img, "", steps=3, seed=6, eta=0.5)
    assert torch.equal(a, b) and not torch.equal(a, c)
    same = random_restorer.restore(img, "", steps=3, control=make_control(0.0))
    torch.testing.assert_close(same, img, atol=1e-6, rtol=0)


def test_mask_restores_only_inside(random_restorer):
    img = photo(64, 64).permute(1, 2, 0)[None]
    mask = torch.zeros(1, 64, 64)
    mask[:, :, 32:] = 1
    out = random_restorer.restore(img, "", steps=1, control=make_control(1.0, mask))
    torch.testing.assert_close(out[:, :, :30], img[:, :, :30], atol=1e-6, rtol=0)
    assert (out[:, :, 34:] - img[:, :, 34:]).abs().max() > 1e-3


def test_tiled_equals_whole_without_seams(random_restorer):
    img = photo(200, 260).permute(1, 2, 0)[None]
    whole = random_restorer.restore(img, "", steps=1, tile=1024)
    tiled = random_restorer.restore(img, "", steps=1, tile=96, overlap=32)
    assert (whole - tiled).abs().max() < 0.02


@pytest.mark.parametrize("bad,match", [
    (torch.rand(1, 2, 2, 3), "2x2 px.*at least 16x16"),
    (torch.full((1, 32, 32, 3), float("nan")), "NaN"),
    (torch.rand(1, 3, 64, 64), "channels.*permute"),
    (torch.rand(64, 64), r"\[B, H, W, C\]"),
    (torch.zeros(1, 32, 32, 3, dtype=torch.int32), "dtype"),
])
def test_bad_images_get_clear_errors(random_restorer, bad, match):
    with pytest.raises(InputError, match=match):
        random_restorer.restore(bad)


def test_bad_strength_and_mask():
    with pytest.raises(ValueError, match="strength must be between 0 and 2"):
        make_control(3.0)
    with pytest.raises(ValueError, match="MASK"):
        make_control(1.0, torch.zeros(1, 1, 8, 8))


def test_weights_round_trip_and_refusals(tmp_path):
    model = M3UNet(M3UNetConfig(width=8, dilations=[3, 4, 5]))
    path = tmp_path / "m.safetensors"
    save_model(model, path, {"note": "test"})
    loaded = load_model(path)
    assert loaded.config.dilations == [3, 4, 5] and loaded.metadata["note"] == "test"
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
    (tmp_path / "x.ckpt").write_bytes(b"\x80\x04pickle")
    with pytest.raises(CheckpointError, match="pickled checkpoints are refused"):
        load_model(tmp_path / "x.ckpt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="bad.safetensors is not a readable safetensors file"):
        load_model(tmp_path / "bad.safetensors")
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not an M3UNet checkpoint"):
        load_model(tmp_path / "other.safetensors")


def test_metrics():
    x = photo()
    assert psnr(x, x) == float("inf") and abs(ssim(x, x) - 1) < 1e-6
    assert abs(psnr((x + 0.1).clamp(0, 1), x) - psnr((x - 0.1).clamp(0, 1), x)) < 3


def test_grow_from_keeps_the_function_and_refuses_a_shallower_or_different_model():
    """Function-preserving growth: a deeper M3UNet loaded from a shallower one computes the same
    output (the extra NAF blocks start as the identity), trains its new blocks, and growth that
    would drop blocks or change a width is refused with the reason."""
    torch.manual_seed(0)
    small_cfg = M3UNetConfig(width=8, enc_blocks=[1, 1, 1], mid_blocks=1, dec_blocks=[1, 1, 1])
    small = M3UNet(small_cfg).eval()
    for p in small.parameters():  # a trained-looking model: no zero residual scales left
        torch.nn.init.normal_(p, std=0.05)
    big = M3UNet(M3UNetConfig(width=8, enc_blocks=[1, 2, 3], mid_blocks=3, dec_blocks=[1, 1, 2])).eval()
    new = big.grow_from(small)
    assert new and all(k.startswith(("enc.1.1", "enc.2.1", "enc.2.2", "mid.1", "mid.2", "dec.2.1")) for k in new)
    x = photo(64, 64)[None]
    text, t = torch.randn(1, 384), torch.tensor([0.5])
    with torch.no_grad():
        outs = [m(x, t, text, m.refine.embed(x, size=64), m.refine.features(x)) for m in (small, big)]
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    loss = big(x, t, text, big.refine.embed(x, size=64), big.refine.features(x)).square().mean()
    loss.backward()
    assert any(dict(big.named_parameters())[k].grad.abs().sum() > 0 for k in new if k.endswith(("beta", "gamma")))
    with pytest.raises(ValueError, match="lose blocks"):
        small.grow_from(big)
    with pytest.raises(ValueError, match="width"):
        M3UNet(M3UNetConfig(width=16, enc_blocks=[1, 2, 3])).grow_from(small)


def test_crop_sampler_text_pages_take_the_asked_font_sizes():
    """``train --text-sizes MIN,MAX``: a text crop is the page rendered at those font sizes from the
    sampler's seeded draw; sizes out of order, too small or not a pair are refused with the flag's meaning."""
    import numpy as np
    from m3unet.training.textimage import render_page
    from m3unet.training.train import CropSampler
    photos = {"p": (np.random.default_rng(0).random((80, 80, 3)) * 255).astype(np.uint8)}
    for sizes in ((9, 12), (30, 34)):
        crop = CropSampler(photos, 64, torch.Generator().manual_seed(0), 1.0, sizes)()
        g = torch.Generator().manual_seed(0)  # the sampler's draws: text-or-photo, then the page seed
        torch.rand((), generator=g)
        seed = int(torch.randint(0, 2 ** 31 - 1, (), generator=g))
        page, _ = render_page(64, 64, seed=seed + 1_000_000, min_size=sizes[0], max_size=sizes[1])
        assert torch.equal(crop, torch.from_numpy(page).permute(2, 0, 1).float() / 255)
    assert CropSampler(photos, 64, torch.Generator(), 1.0).text_sizes == (9, 16)  # default: 9 .. crop / 4
    for bad in ((20, 10), (2, 8), (9,)):
        with pytest.raises(ValueError, match="font sizes MIN,MAX"):
            CropSampler(photos, 64, torch.Generator(), 1.0, bad)


def test_training_batches_take_the_asked_share_of_mixtures():
    """``train --p-mix``: the share of crops degraded by two or three kinds at once (a mixture
    specialist trains on mostly mixtures); out-of-range shares are refused before any work."""
    import random

    import numpy as np
    from m3unet.training.train import CropSampler, TrainConfig, make_batch, train
    photos = {"p": (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)}
    kinds = {"blur": 1.0, "noise": 1.0, "jpeg": 1.0}
    share = {}
    for p_mix in (0.0, 0.9):
        gen = torch.Generator().manual_seed(0)
        _, _, _, degs = make_batch(CropSampler(photos, 16, gen), 200, gen, random.Random(0), 0.0, kinds, p_mix)
        assert all(d.kind in ("blur", "noise", "jpeg") for ds in degs for d in ds)
        share[p_mix] = sum(len(ds) > 1 for ds in degs) / len(degs)
    assert share[0.0] == 0.0 and 0.8 < share[0.9] <= 0.95
    with pytest.raises(ValueError, match="--p-mix must be between 0 and 0.92"):
        train(TrainConfig(p_mix=0.95))


def test_out_of_memory_halves_the_tile_and_restores_the_whole_image():
    """Out of memory on a tile, the Restorer frees memory and restores the image again with half the
    tile (as ComfyUI's upscale node does), down to MIN_TILE; below that the error propagates."""
    from m3unet.restore.pipeline import MIN_TILE
    torch.manual_seed(0)
    restorer = Restorer(M3UNet(M3UNetConfig(width=8, enc_blocks=[1, 1, 1], mid_blocks=1, dec_blocks=[1, 1, 1],
                                            cond_dim=32, embed_dim=32, heads=1)).eval(), FakeText())
    real = restorer._restore_tile
    limit = {"side": 150}
    freed = []

    def tile_with_memory(x, *args, **kw):
        if max(x.shape[-2:]) > limit["side"]:
            raise torch.OutOfMemoryError("fake: tile too large")
        return real(x, *args, **kw)

    restorer._restore_tile = tile_with_memory
    image = torch.rand(1, 200, 200, 3)
    progress = []
    out = restorer.restore(image, tile=512, progress=progress.append, on_oom=freed.append)
    assert out.shape == image.shape and freed == [256, 128]  # 512 and 256 px tiles ran out; 128 fits
    assert MIN_TILE == 128
    assert progress[-1].done == progress[-1].total  # the bar ends full after the retries
    limit["side"] = 100  # even MIN_TILE's tiles (120 px here) do not fit
    with pytest.raises(torch.OutOfMemoryError):
        restorer.restore(image, tile=512, on_oom=freed.append)


def test_the_shipped_empty_text_embedding_is_the_encoders_and_saves_loading_it():
    """A blind pass (empty text) uses the shipped embedding of "" instead of loading the sentence
    encoder; it must be exactly what the encoder computes."""
    from m3unet.core.text import default_encoder, empty_text_embedding
    shipped = empty_text_embedding()
    assert shipped is not None and shipped.shape == (384,)
    torch.testing.assert_close(shipped, default_encoder().encode([""])[0], atol=1e-6, rtol=0)
    model = M3UNet(M3UNetConfig(width=8, enc_blocks=[1, 1, 1], mid_blocks=1, dec_blocks=[1, 1, 1],
                                cond_dim=32, embed_dim=32, heads=1)).eval()
    r = Restorer(model)
    assert torch.equal(r.embed_text(["", " "]), shipped.expand(2, -1)) and r._text_encoder is None
    assert r.embed_text(["remove the noise"]).shape == (1, 384) and r._text_encoder is not None


def test_the_splits_are_disjoint_and_the_holdout_needs_prepared_data(tmp_path):
    """Every named photo belongs to exactly one split; validation, holdout and test never train; the
    holdout split asks for prepare-data when nothing is prepared, and unknown splits are clear errors."""
    import pytest
    from m3unet.training import data
    assert not (data.VALIDATION & data.HOLDOUT or data.VALIDATION & data.TEST or data.HOLDOUT & data.TEST)
    assert len(data.HOLDOUT) == len(data.LOMIRI16_PHOTOS) == 14
    assert {data.split_of(p) for p in data.HOLDOUT} == {"holdout"}
    assert {data.split_of(p) for p in data.TEST} == {"test"} and data.split_of("mate-Aqua") == "train"
    assert set(data.EVALUATION_SPLITS) == set(data.SPLITS) - {"train"}
    with pytest.raises(FileNotFoundError, match="prepare-data"):
        data.evaluation_photos(None if not data.DEFAULT_DATA.exists() else str(tmp_path / "none"), "holdout")
    with pytest.raises(ValueError, match="holdout"):
        data.evaluation_photos(None, "train")
