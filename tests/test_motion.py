"""Motion deblur (m3unet.auto.motion): the cepstral kernel estimate, the deconvolution, the pool tool and
the automatic restore's motion gate."""
from __future__ import annotations

import math

import pytest
import torch

from m3unet.auto.guards import cepstrum_reads_motion
from m3unet.auto.motion import (MotionDeblur, MotionDeblurError, MotionEstimate, deconvolve, estimate_motion,
                                fit_path, line_kernel, path_kernel)
from m3unet.auto.policy import DEFAULT_POLICY
from m3unet.core.metrics import psnr
from m3unet.training import synthesis as deg


def _photo(size: int = 256) -> torch.Tensor:
    import skimage.data  # a validation photo, never used to train anything shipped
    a = skimage.data.coffee()[60:60 + size, 120:120 + size]
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255


def _angle_error(a: float, b: float) -> float:
    d = abs(a - b) % 180
    return min(d, 180 - d)


@pytest.mark.parametrize("length,angle", [(9.0, 20.0), (13.0, 115.0), (17.0, 160.0)])
def test_the_cepstrum_reads_a_straight_motion_blur(length, angle):
    x = _photo()
    y = deg.convolve(x, line_kernel(length, angle)).clamp(0, 1)
    est = estimate_motion(y)
    assert abs(est.length - length) < 1.0, est
    assert _angle_error(est.angle, angle) < 6, est
    assert cepstrum_reads_motion(est, DEFAULT_POLICY), est


def test_the_gate_stays_shut_on_clean_defocused_and_noisy_photos():
    x = _photo()
    g = torch.Generator().manual_seed(0)
    for y in (x, deg.convolve(x, deg.gaussian_kernel(2.0)).clamp(0, 1),
              (x + 20 / 255 * torch.randn(x.shape, generator=g)).clamp(0, 1)):
        est = estimate_motion(y)
        assert not cepstrum_reads_motion(est, DEFAULT_POLICY), est


def test_resampling_reads_as_symmetric_not_as_motion():
    """Area down-sampling puts the same comb on both axes: the symmetry check closes the gate."""
    import torch.nn.functional as F
    x = _photo()
    small = F.interpolate(x[None], scale_factor=1 / 2.5, mode="area")
    y = F.interpolate(small, size=x.shape[-2:], mode="bicubic", align_corners=False)[0].clamp(0, 1)
    est = estimate_motion(y)
    assert not cepstrum_reads_motion(est, DEFAULT_POLICY), est


def test_line_kernel_is_a_normalised_centred_segment():
    k = line_kernel(10.0, 0.0)
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-6)
    c = k.shape[0] // 2
    assert float(k[c].sum()) > 0.99  # horizontal: all on the centre row
    assert torch.allclose(k, k.flip(0, 1), atol=1e-6)  # point-symmetric
    v = line_kernel(10.0, 90.0)
    assert float(v[:, c].sum()) > 0.99
    for bad in (0.0, -3.0, float("nan")):
        with pytest.raises(MotionDeblurError, match="length"):
            line_kernel(bad, 0.0)


def test_deconvolution_with_the_true_kernel_restores_detail_in_either_precision():
    x = _photo()
    k = line_kernel(13.0, 40.0)
    y = deg.convolve(x, k).clamp(0, 1)
    out = deconvolve(y, k, 0.01).clamp(0, 1)
    assert out.shape == y.shape and psnr(out, x) > psnr(y, x) + 2
    assert (out.mean((1, 2)) - y.mean((1, 2))).abs().max() < 5e-3  # the mean colour is kept
    from m3unet.auto.motion import _deconvolve_whole
    single = _deconvolve_whole(y[:1, :, :200], k, 0.01, torch.float32)  # what large images use
    double = _deconvolve_whole(y[:1, :, :200], k, 0.01, torch.float64)
    assert (single - double).abs().max() < 1e-3


class _Identity:
    """A Restorer stand-in for the clean-up pass: returns its input, records the calls."""

    def __init__(self):
        self.calls = 0

    def restore(self, image, text="", steps=1, seed=0, tile=512, progress=None):
        self.calls += 1
        if progress:
            progress(None)
        return image.clone()


def test_motion_deblur_keeps_shape_dtype_and_alpha_and_uses_given_kernels():
    x = _photo(128)
    y = deg.convolve(x, line_kernel(9.0, 0.0)).clamp(0, 1)
    rgba = torch.cat([y, torch.full((1, 128, 128), 0.5)], 0).permute(1, 2, 0)[None]
    tool = MotionDeblur(_Identity())
    out = tool.restore(rgba)
    assert out.shape == rgba.shape and out.dtype == rgba.dtype
    assert torch.equal(out[..., 3], rgba[..., 3])
    u8 = (rgba[..., :3] * 255).round().to(torch.uint8)
    out8 = tool.restore(u8, length=9.0, angle=0.0)
    assert out8.dtype == torch.uint8 and out8.shape == u8.shape
    assert tool.estimates[0].length == 9.0 and tool.estimates[0].angle == 0.0
    assert psnr(out8[0].permute(2, 0, 1).float() / 255, x) > psnr(y, x) + 2
    with pytest.raises(MotionDeblurError, match="length"):
        tool.restore(u8, length=0.5)


def test_an_estimate_that_finds_no_shake_is_not_deconvolved():
    """Estimated on an unshaken (defocused, or resampled) photo, the kernel is a guess: only the
    clean-up pass runs. On a shaken one, or with the length given, the deconvolution runs."""
    import torch.nn.functional as F
    x = _photo(192)
    tool = MotionDeblur(_Identity())
    small = F.interpolate(x[None], scale_factor=1 / 3, mode="area")
    for y in (deg.convolve(x, deg.gaussian_kernel(2.0)).clamp(0, 1),
              F.interpolate(small, size=x.shape[-2:], mode="bicubic", align_corners=False)[0].clamp(0, 1)):
        out = tool.restore(y.permute(1, 2, 0)[None])[0].permute(2, 0, 1)
        assert not tool.would_deconvolve(tool.estimates[0]), tool.estimates[0]
        assert torch.equal(out, y)  # the identity clean-up pass alone
        forced = tool.restore(y.permute(1, 2, 0)[None], length=9.0, angle=30.0)[0].permute(2, 0, 1)
        assert not torch.equal(forced, y)  # a given length is always deconvolved
    shaken = deg.convolve(x, line_kernel(13.0, 60.0)).clamp(0, 1)
    out = tool.restore(shaken.permute(1, 2, 0)[None])[0].permute(2, 0, 1)
    assert tool.would_deconvolve(tool.estimates[0]) and psnr(out, x) > psnr(shaken, x) + 2


def test_a_gate_s_reading_is_deconvolved_as_given():
    """The automatic restore's gate decides under its own policy (which may be looser than the shipped
    one): the kernel it hands over through ``deblur`` is used even where the tool's own check on an
    estimate would have said no."""
    x = _photo(128)
    y = deg.convolve(x, line_kernel(11.0, 45.0)).clamp(0, 1)
    tool = MotionDeblur(_Identity())
    weak = MotionEstimate(11.0, 45.0, confidence=3.0, noise=0.5, symmetry=0.0)
    assert not tool.would_deconvolve(weak)
    assert torch.equal(tool.restore(y.permute(1, 2, 0)[None], estimates=[weak])[0].permute(2, 0, 1),
                       tool.deblur(y, weak))
    assert psnr(tool.deblur(y, weak), x) > psnr(y, x) + 0.5  # deconvolved, not the identity clean-up alone


def test_the_automatic_restore_runs_the_motion_step_when_the_gate_opens():
    """A classifier that reads motion, a shaken photo: the motion tool runs first and the report says
    so in words; with ``motion_gate`` off it is not used."""
    from m3unet.auto.classifier import Finding, LABELS
    from m3unet.auto.pool import Pool
    from m3unet.auto.report import render
    from m3unet.auto.restorer import AutoRestorer

    reads = {"motion": 0.9}

    def classifier(image):
        p = {k: reads.get(k, 0.01) for k in LABELS}
        return [Finding(p, {k: 0.5 for k in LABELS}) for _ in range(image.shape[0])]

    x = _photo(192)
    y = deg.convolve(x, line_kernel(13.0, 60.0)).clamp(0, 1)
    helper = _Identity()
    auto = AutoRestorer(Pool(None, [MotionDeblur(helper)], tile=256), classifier)
    res = auto.run(y.permute(1, 2, 0)[None], seed=0)
    rep = res.reports[0]
    assert rep.steps and rep.steps[0].chosen == "motion-deblur" and rep.steps[0].tasks == ["motion"]
    assert "motion_gate" in rep.rules
    text = render(rep)
    assert "camera shake" in text and "motion_kernel" not in text
    assert psnr(res.image[0].permute(2, 0, 1), x) > psnr(y, x) + 2
    off = AutoRestorer(Pool(None, [MotionDeblur(_Identity())], tile=256), classifier,
                       policy=DEFAULT_POLICY.replace(motion_gate=False))
    res_off = off.run(y.permute(1, 2, 0)[None], seed=0)
    assert all(s.chosen != "motion-deblur" for s in res_off.reports[0].steps)


def test_without_a_blur_reading_the_gate_needs_motion_needs_label_off():
    """A shaken photo the classifier reads as clean: the gate stays shut while ``motion_needs_label``
    is on, and the cepstrum alone opens it when it is off; never on print."""
    from m3unet.auto.classifier import Finding, LABELS
    from m3unet.auto.pool import Pool
    from m3unet.auto.restorer import AutoRestorer

    def classifier(image):
        return [Finding({k: 0.01 for k in LABELS}, {k: 0.0 for k in LABELS}) for _ in range(image.shape[0])]

    x = _photo(192)
    y = deg.convolve(x, line_kernel(13.0, 60.0)).clamp(0, 1).permute(1, 2, 0)[None]
    pool = Pool(None, [MotionDeblur(_Identity())], tile=256)
    shut = AutoRestorer(pool, classifier).run(y, seed=0).reports[0]
    assert shut.steps == [] and "motion_gate" not in shut.rules
    cepstrum = AutoRestorer(pool, classifier, policy=DEFAULT_POLICY.replace(motion_needs_label=False))
    rep = cepstrum.run(y, seed=0).reports[0]
    assert [s.chosen for s in rep.steps] == ["motion-deblur"] and "motion_gate" in rep.rules
    from m3unet.auto.guards import cepstrum_reads_motion, looks_like_print
    from m3unet.evaluation.ocr_pages import render_page
    a, _ = render_page(["Harbour Road 17 and the", "seven crates of pears went", "north by the morning train"],
                       "DejaVuSans.ttf", 28)
    page = deg.convolve(torch.from_numpy(a).permute(2, 0, 1).float() / 255, line_kernel(13.0, 30.0)).clamp(0, 1)
    assert looks_like_print(page) and cepstrum_reads_motion(estimate_motion(page), DEFAULT_POLICY)
    assert cepstrum.run(page.permute(1, 2, 0)[None], seed=0).reports[0].steps == []  # print: shut


def test_estimate_describes_itself():
    e = MotionEstimate(12.34, 45.6, 10.0, 1.5)
    assert e.describe() == "motion 12.3 px at 46 degrees, noise 1.5/255"
    assert math.isfinite(estimate_motion(torch.rand(3, 40, 40)).length)  # a small image still reads


def _centroid_offset(k: torch.Tensor) -> float:
    i = torch.arange(k.shape[0], dtype=torch.float64) - k.shape[0] // 2
    k = k.double() / k.sum()
    return math.hypot(float((k.sum(1) * i).sum()), float((k.sum(0) * i).sum()))


def test_path_kernel_is_a_centred_bowed_path_and_its_mirror_has_the_opposite_bow():
    assert torch.equal(path_kernel(11.0, 35.0, 0.0), line_kernel(11.0, 35.0))
    k = path_kernel(15.0, 0.0, 0.2)
    assert k.shape[0] % 2 == 1 and float(k.sum()) == pytest.approx(1.0, abs=1e-6)
    assert _centroid_offset(k) < 0.05
    c = k.shape[0] // 2
    assert float(k[c].sum()) < 0.5  # bowed away from the straight centre row
    assert torch.allclose(path_kernel(15.0, 70.0, -0.2), path_kernel(15.0, 70.0, 0.2).flip(0, 1), atol=1e-6)
    for bad in ((0.0, 0.1), (10.0, float("nan"))):
        with pytest.raises(MotionDeblurError):
            path_kernel(bad[0], 30.0, bad[1])


@pytest.mark.parametrize("length,angle,bow", [(15.0, 30.0, 0.15), (19.0, 120.0, -0.2)])
def test_fit_path_reads_a_bowed_shake_and_its_sign(length, angle, bow):
    x = _photo()
    y = deg.convolve(x, path_kernel(length, angle, bow)).clamp(0, 1)
    est = estimate_motion(y)
    fit = fit_path(y, est)
    assert abs(fit.length - length) < 1.5, fit
    assert _angle_error(fit.angle, angle) < 6, fit
    assert abs(fit.bow - bow) <= 0.05, fit
    assert fit.match > 0.3 and fit.confidence == est.confidence
    straight = psnr(deconvolve(y, line_kernel(est.length, est.angle), 0.01).clamp(0, 1), x)
    bowed = psnr(deconvolve(y, path_kernel(fit.length, fit.angle, fit.bow), 0.01).clamp(0, 1), x)
    assert bowed > straight + 1.0, (straight, bowed)


def test_fit_path_keeps_a_straight_blur_straight():
    x = _photo()
    y = deg.convolve(x, line_kernel(13.0, 115.0)).clamp(0, 1)
    fit = fit_path(y, estimate_motion(y))
    assert abs(fit.bow) <= 0.05 and abs(fit.length - 13.0) < 1.0 and _angle_error(fit.angle, 115.0) < 4, fit


def test_the_reading_fits_the_path_only_when_estimating_and_the_policy_says_so():
    from m3unet.auto.policy import RestorePolicy
    x = _photo()
    y = deg.convolve(x, path_kernel(15.0, 30.0, 0.15)).clamp(0, 1)
    restorer = object()  # the reading never touches the clean-up model
    fitted = MotionDeblur(restorer).reading(y)
    assert fitted.bow != 0 and fitted.match > 0
    assert MotionDeblur(restorer, policy=RestorePolicy(motion_fit_path=False)).reading(y).bow == 0
    given = MotionDeblur(restorer).reading(y, length=15.0, angle=30.0)
    assert given.bow == 0 and given.length == 15.0 and math.isinf(given.confidence)


def test_a_shallow_cepstrum_opens_the_gate_only_through_a_well_matched_fitted_path():
    """With the cepstrum's own depth out of reach (``motion_confidence`` 1000), a bowed shake still
    opens the gate through its fitted path (``motion_match``), and the step deconvolves the bowed
    path; with the fit off, or a match asked for that no photo reaches, the gate stays shut."""
    from m3unet.auto.classifier import Finding, LABELS
    from m3unet.auto.guards import fitted_path_reads_motion
    from m3unet.auto.pool import Pool
    from m3unet.auto.restorer import AutoRestorer

    def classifier(image):
        p = {k: (0.9 if k == "motion" else 0.01) for k in LABELS}
        return [Finding(p, {k: 0.5 for k in LABELS}) for _ in range(image.shape[0])]

    x = _photo(192)
    y = deg.convolve(x, path_kernel(15.0, 30.0, 0.15)).clamp(0, 1).permute(1, 2, 0)[None]
    deep_only = DEFAULT_POLICY.replace(motion_confidence=1000.0)

    def steps(policy):
        pool = Pool(None, [MotionDeblur(_Identity(), policy=policy)], tile=256)
        res = AutoRestorer(pool, classifier, policy=policy).run(y, seed=0)
        return [s.chosen for s in res.reports[0].steps], res

    chosen, res = steps(deep_only)
    assert chosen == ["motion-deblur"]
    assert psnr(res.image[0].permute(2, 0, 1), x) > psnr(y[0].permute(2, 0, 1), x) + 2
    assert "motion-deblur" not in steps(deep_only.replace(motion_fit_path=False))[0]
    assert "motion-deblur" not in steps(deep_only.replace(motion_match=0.99))[0]
    est = MotionEstimate(15.0, 30.0, confidence=6.0, noise=0.5, symmetry=0.05, bow=0.15, match=0.5)
    assert fitted_path_reads_motion(est, DEFAULT_POLICY)
    for bad in (dict(match=0.2), dict(confidence=4.0), dict(symmetry=0.6), dict(length=3.0)):
        assert not fitted_path_reads_motion(MotionEstimate(**{**est.__dict__, **bad}), DEFAULT_POLICY), bad
    assert not fitted_path_reads_motion(est, DEFAULT_POLICY.replace(motion_fit_path=False))
