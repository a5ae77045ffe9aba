"""Motion deblur: estimate a camera-shake kernel from the cepstrum, fit its path, deconvolve, clean up with M3UNet.

A straight motion blur of length ``L`` along direction ``d`` multiplies the image spectrum by a
sinc whose zeros repeat every ``1/L`` along ``d``; the log spectrum is periodic there, so the
*cepstrum* (the inverse Fourier transform of the log power spectrum) has a sharp negative peak at
the offset ``L d`` (Rom, "On the cepstrum of two-dimensional functions", IEEE Trans. IT 1975;
Moghaddam & Jamzad, "Motion blur identification in noisy images using mathematical models and
statistical measures", Pattern Recognition 2007). The power spectrum is averaged over
overlapping Hann-windowed tiles (Welch), the peak is found beyond a few pixels from the origin and
refined to sub-pixel by the centroid of its neighbourhood. Its depth in units of the cepstrum's
spread is the reading's ``confidence``: defocus, down-sampling, noise and clean photos have no
such peak.

The straight reading is then fitted to a bowed (parabolic-arc) camera path whose power spectrum
best matches the photo's (:func:`fit_path`: high-passed log spectra correlated, the sign of the
bow from the sparser deconvolution, after Krishnan, Tay & Fergus, CVPR 2011).

The kernel is then undone by a Wiener / constrained least-squares filter (gradient penalty, as in
:func:`m3unet.auto.deblur.wiener_deconvolve`) and a blind M3UNet pass removes what deconvolution
leaves (ringing, amplified noise): the two-stage scheme of Schuler et al. (CVPR 2013) and DPIR
(Zhang et al., TPAMI 2021) with an estimated kernel. :class:`MotionDeblur` is the pool's motion
step (policy ``motion_gate``); the **M3UNet Kernel Deblur** node offers it as its motion mode.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..core.image import luminance
from . import guards
from .deblur import deconvolve_and_clean, progress_for
from .policy import DEFAULT_POLICY, RestorePolicy

TILE = 128          # cepstrum tile side (px): holds kernels up to ~40 px
STRIDE = 48         # tile step
MAX_TILES = 64      # at most this many tiles (spread over the image) feed the averaged spectrum
MIN_OFFSET = 3.0    # cepstral peaks closer to the origin than this are the image's own structure
MAX_LENGTH = 40.0   # longest blur searched (px)
SHAKE_CONFIDENCE = 5.0  # an estimate under this depth is no shake at all: clean, noisy, dark and hazy
                        # validation photos read at most 5.0 (scripts/motion_probe.py)
MOTION_SCALE = (5.0, 25.0)  # px of motion at severity 0 and 1 (m3unet.training.synthesis.params_for)


class MotionDeblurError(ValueError):
    """A clear error about a motion deblur input (length, angle, image)."""


@dataclass
class MotionEstimate:
    """A linear motion blur: ``length`` px along ``angle`` degrees (0-180, clockwise from the
    x axis with y pointing down), the cepstral peak's ``confidence`` and the noise level (1/255)."""
    length: float
    angle: float
    confidence: float = 0.0
    noise: float = 0.0
    symmetry: float = 0.0   # depth of the cepstrum at the perpendicular offset over the peak's: ~1 for
                            # resampling (the same comb along both axes), ~0 for a directional blur
    bow: float = 0.0        # the path's largest offset from its chord over the chord's length, signed
                            # (0: a straight line; see :func:`path_kernel` and :func:`fit_path`)
    match: float = 0.0      # correlation of the fitted path's spectrum with the photo's (0: not fitted)

    def describe(self) -> str:
        bow = f", bowed {self.bow:+.2f}" if self.bow else ""
        return f"motion {self.length:.1f} px at {self.angle:.0f} degrees{bow}, noise {self.noise:.1f}/255"


def _tiles(h: int, w: int, t: int) -> list[tuple[int, int]]:
    ys = list(range(0, h - t + 1, STRIDE)) or [0]
    xs = list(range(0, w - t + 1, STRIDE)) or [0]
    pos = [(y, x) for y in ys for x in xs]
    if len(pos) > MAX_TILES:  # spread evenly over the image
        idx = torch.linspace(0, len(pos) - 1, MAX_TILES).round().long().tolist()
        pos = [pos[i] for i in idx]
    return pos


def power_spectrum(grey: torch.Tensor, tile: int = TILE) -> torch.Tensor:
    """Welch-averaged power spectrum ``[t, t]`` (unshifted) of a ``[H, W]`` image (Hann-windowed tiles)."""
    h, w = grey.shape
    t = min(tile, h, w)
    win = torch.hann_window(t, periodic=False, dtype=torch.float64)
    win2 = win[:, None] * win[None, :]
    acc = torch.zeros(t, t, dtype=torch.float64)
    pos = _tiles(h, w, t)
    for y, x in pos:
        p = grey[y:y + t, x:x + t].double()
        acc += torch.fft.fft2((p - p.mean()) * win2).abs() ** 2
    return acc / len(pos)


def cepstrum(grey: torch.Tensor, tile: int = TILE) -> torch.Tensor:
    """Centred power cepstrum ``[t, t]`` of a ``[H, W]`` image from its Welch-averaged log spectrum."""
    return torch.fft.fftshift(torch.fft.ifft2(torch.log(power_spectrum(grey, tile) + 1e-12)).real)


def noise_level(grey: torch.Tensor) -> float:
    """Noise sigma (1/255) from the median absolute diagonal Haar detail (Donoho & Johnstone 1994)."""
    g = grey.double()
    h, w = (g.shape[0] // 2) * 2, (g.shape[1] // 2) * 2
    g = g[:h, :w]
    hh = (g[0::2, 0::2] - g[0::2, 1::2] - g[1::2, 0::2] + g[1::2, 1::2]) / 2
    return float(hh.abs().median() / 0.6745 * 255)


def estimate_motion(x: torch.Tensor) -> MotionEstimate:
    """The linear motion blur of ``[3, H, W]`` (0-1) read from its cepstrum (see the module)."""
    if x.dim() != 3 or x.shape[0] != 3:
        raise MotionDeblurError(f"estimate_motion takes a [3, H, W] image, got {tuple(x.shape)}")
    g = luminance(x.float())
    c = cepstrum(g)
    t = c.shape[0]
    mid = t // 2
    yy, xx = torch.meshgrid(torch.arange(t) - mid, torch.arange(t) - mid, indexing="ij")
    r = (yy ** 2 + xx ** 2).double().sqrt()
    ring = (r >= MIN_OFFSET) & (r <= min(MAX_LENGTH, mid - 2))
    if not bool(ring.any()):
        return MotionEstimate(0.0, 0.0, 0.0, noise_level(g))
    masked = torch.where(ring, c, torch.full_like(c, float("inf")))
    i = int(masked.argmin())
    py, px = divmod(i, t)
    nb = -c[py - 1:py + 2, px - 1:px + 2]
    nb = (nb - nb.min()).clamp(min=0)
    offs = torch.tensor([-1.0, 0.0, 1.0], dtype=nb.dtype)
    total = float(nb.sum()) or 1.0
    dy = py - mid + float((nb.sum(1) * offs).sum()) / total
    dx = px - mid + float((nb.sum(0) * offs).sum()) / total
    spread = float(c[ring].std()) or 1.0
    qy, qx = mid + int(round(dx)), mid - int(round(dy))  # the offset turned by 90 degrees
    perp = float(-c[max(0, qy - 1):qy + 2, max(0, qx - 1):qx + 2].min()) if 0 < qy < t - 1 and 0 < qx < t - 1 else 0.0
    depth = float(-c[py, px])
    return MotionEstimate(math.hypot(dx, dy), math.degrees(math.atan2(dy, dx)) % 180.0, depth / spread,
                          noise_level(g), max(0.0, perp) / depth if depth > 0 else 1.0)


def motion_severity(length: float) -> float:
    """A motion length (px) on the classifier's motion severity scale (0 at 5 px, 1 at 25 px, clipped)."""
    lo, hi = MOTION_SCALE
    return min(1.0, max(0.0, (length - lo) / (hi - lo)))


def _splat(xs: torch.Tensor, ys: torch.Tensor, size: int) -> torch.Tensor:
    """A ``size x size`` kernel from points ``(xs, ys)`` (px, float64), each spread bilinearly over
    its four neighbours (anti-aliased), normalised to sum 1."""
    k = torch.zeros(size, size, dtype=torch.float64)
    x0, y0 = xs.floor().long(), ys.floor().long()
    fx, fy = xs - x0, ys - y0
    for ddx, ddy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        k.index_put_(((y0 + ddy).clamp(0, size - 1), (x0 + ddx).clamp(0, size - 1)), wgt, accumulate=True)
    return (k / k.sum()).float()


def line_kernel(length: float, angle: float) -> torch.Tensor:
    """A straight motion-blur kernel: a ``length`` px segment at ``angle`` degrees, anti-aliased
    (bilinear splats of points along it), normalised to sum 1, odd side."""
    if not (math.isfinite(length) and length > 0):
        raise MotionDeblurError(f"motion length is {length}; give a positive number of pixels")
    size = (int(math.ceil(length)) + 2) | 1
    c = size // 2
    s = torch.linspace(-0.5, 0.5, max(16, int(8 * length)), dtype=torch.float64) * length
    th = math.radians(angle)
    return _splat(c + s * math.cos(th), c + s * math.sin(th), size)


def path_kernel(length: float, angle: float, bow: float = 0.0) -> torch.Tensor:
    """A motion-blur kernel along a bowed camera path: a chord of ``length`` px at ``angle`` degrees
    whose points are offset perpendicularly by ``bow * length * (1 - t^2)`` (``t`` from -1 to 1 along
    the chord: a parabolic arc, the second-order model of a shake), anti-aliased, centred on its
    centroid, normalised to sum 1, odd side. ``bow`` 0 is :func:`line_kernel`."""
    if not bow:
        return line_kernel(length, angle)
    if not (math.isfinite(length) and length > 0 and math.isfinite(bow)):
        raise MotionDeblurError(f"motion length {length} / bow {bow}; give a positive length and a finite bow")
    t = torch.linspace(-1.0, 1.0, max(32, int(16 * length)), dtype=torch.float64)
    along, off = t * length / 2, bow * length * (1 - t ** 2)
    th = math.radians(angle)
    xs, ys = along * math.cos(th) - off * math.sin(th), along * math.sin(th) + off * math.cos(th)
    xs, ys = xs - xs.mean(), ys - ys.mean()
    size = (int(math.ceil(2 * float(torch.maximum(xs.abs().max(), ys.abs().max())))) + 3) | 1
    c = size // 2
    return _splat(xs + c, ys + c, size)


# Fitting the path to the spectrum: a blur multiplies the photo's power spectrum by |K|^2, whose fine
# structure (the zeros of a line's sinc, smeared along a bowed path) stands out of a natural photo's
# smooth power law once both are high-passed in the log domain.
FIT_BAND = (0.02, 0.45)   # radial frequencies (cycles/px) compared
FIT_FLOOR = 1e-3          # |K|^2 floor: noise and quantisation fill the kernel's zeros
FIT_SMOOTH = 3.0          # the log spectra's smooth part: Gaussian of this many frequency bins
BOWS = tuple(round(0.05 * i, 2) for i in range(-6, 7))   # bows tried: -0.3 .. 0.3
SIGN_CROP = 512           # the bow's sign is judged on the centre of the photo, at most this side (px)


def _highpass(logp: torch.Tensor) -> torch.Tensor:
    """``logp`` ``[..., t, t]`` (unshifted spectra) minus its Gaussian-smoothed self (circular)."""
    r = int(3 * FIT_SMOOTH)
    g = torch.exp(-torch.arange(-r, r + 1, dtype=logp.dtype) ** 2 / (2 * FIT_SMOOTH ** 2))
    g = g / g.sum()
    x = logp.reshape(-1, 1, *logp.shape[-2:])
    sm = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (r, r, r, r), mode="circular"), g[None, None, :, None])
    sm = torch.nn.functional.conv2d(sm, g[None, None, None, :])
    return (x - sm).reshape(logp.shape)


def _matches(observed: torch.Tensor, band: torch.Tensor, params: list[tuple[float, float, float]],
             t: int) -> torch.Tensor:
    """Correlation of the high-passed log spectrum ``observed`` (in ``band``) with each path's."""
    out = torch.full((len(params),), -1.0, dtype=torch.float64)
    ks = []
    for i, (length, angle, bow) in enumerate(params):
        k = path_kernel(length, angle, bow).double()
        if k.shape[0] <= t // 2:
            kp = torch.zeros(t, t, dtype=torch.float64)
            kp[:k.shape[0], :k.shape[1]] = k
            ks.append((i, kp))
    if not ks:
        return out
    model = _highpass(torch.log(torch.fft.fft2(torch.stack([kp for _, kp in ks])).abs() ** 2 + FIT_FLOOR))[:, band]
    model = model - model.mean(1, keepdim=True)
    corr = (model @ observed) / (model.norm(dim=1) * observed.norm() + 1e-12)
    out[[i for i, _ in ks]] = corr
    return out


def _gradient_sparsity(grey: torch.Tensor, kernel: torch.Tensor, balance: float) -> float:
    """``|grad x|_1 / |grad x|_2`` of the deconvolution of ``[H, W]`` by ``kernel`` (Krishnan, Tay &
    Fergus, CVPR 2011): lower for the sharp photo than for one deconvolved by a mirrored path."""
    x = deconvolve(grey[None].float(), kernel, balance)[0].clamp(0, 1)
    gx, gy = x[:, 1:] - x[:, :-1], x[1:, :] - x[:-1, :]
    return float((gx.abs().sum() + gy.abs().sum()) / (gx.pow(2).sum() + gy.pow(2).sum()).sqrt().clamp(min=1e-12))


def fit_path(x: torch.Tensor, est: MotionEstimate, base_balance: float = 0.01) -> MotionEstimate:
    """Refine the cepstrum's straight reading ``est`` of ``[3, H, W]`` into a bowed path
    (:func:`path_kernel`) whose spectrum best matches the photo's.

    Search, each stage around the last's best: straight paths of 0.6-2x the cepstral length within
    20 degrees; then lengths, angles and bows (:data:`BOWS`) near it; then a finer grid. The power
    spectrum cannot tell a path from its mirror image (the same bow with the opposite sign), so the
    sign is the one whose deconvolution has the sparser gradients."""
    g = luminance(x.float())
    p = power_spectrum(g)
    t = p.shape[0]
    f = torch.fft.fftfreq(t, dtype=torch.float64)
    rad = (f[:, None] ** 2 + f[None, :] ** 2).sqrt()
    band = (rad > FIT_BAND[0]) & (rad < FIT_BAND[1])
    observed = _highpass(torch.log(p + 1e-12))[band]
    observed = observed - observed.mean()
    l0, a0 = max(est.length, 3.0), est.angle
    step = max(0.5, l0 / 15)

    def best_of(params):
        c = _matches(observed, band, params, t)
        i = int(c.argmax())
        return params[i], float(c[i])

    lengths = [float(v) for v in torch.arange(max(3.0, 0.6 * l0), min(MAX_LENGTH, 2.0 * l0) + 1e-6, step)]
    (length, angle, _), _ = best_of([(L, a0 + da, 0.0) for L in lengths for da in range(-20, 21, 5)])
    (length, angle, bow), _ = best_of([(L, angle + da, b) for L in (length - step, length, length + step) if L >= 3
                                       for da in (-5.0, -2.5, 0.0, 2.5, 5.0) for b in BOWS])
    (length, angle, bow), match = best_of([(length + dl, angle + da, round(bow + db, 4))
                                           for dl in (-0.5 * step, -0.25 * step, 0.0, 0.25 * step, 0.5 * step)
                                           if length + dl >= 3
                                           for da in (-2.0, -1.0, 0.0, 1.0, 2.0) for db in (-0.025, 0.0, 0.025)])
    if bow:
        balance = balance_for(est.noise, length, base_balance)
        h, w = g.shape
        top, left = max(0, (h - SIGN_CROP) // 2), max(0, (w - SIGN_CROP) // 2)
        part = g[top:top + SIGN_CROP, left:left + SIGN_CROP]
        if _gradient_sparsity(part, path_kernel(length, angle, -bow), balance) < \
                _gradient_sparsity(part, path_kernel(length, angle, bow), balance):
            bow = -bow
    if angle % 360.0 >= 180.0:  # the same path seen from its other end
        angle, bow = angle - 180.0, -bow
    return MotionEstimate(length, angle % 180.0, est.confidence, est.noise, est.symmetry, bow, match)


def _otf(kernel: torch.Tensor, h: int, w: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The kernel's transfer function on an ``h x w`` grid (centred at the origin), half spectrum."""
    kh, kw = kernel.shape
    kp = torch.zeros(h, w, dtype=dtype)
    kp[:kh, :kw] = kernel.to(dtype)
    return torch.fft.rfft2(torch.roll(kp, (-(kh // 2), -(kw // 2)), (0, 1)))


def _taper_ramp(n: int, p: int) -> torch.Tensor:
    i = torch.arange(n)
    return torch.sin(torch.clamp(torch.minimum(i, i.flip(0)).double() / p, 0, 1) * math.pi / 2) ** 2


def _deconvolve_whole(y: torch.Tensor, kernel: torch.Tensor, balance: float,
                      dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Pad by reflection (twice the kernel side), blend the pad into its own circular blur (edge
    tapering, as MATLAB's ``edgetaper``: the padded image then obeys the circular blur model the FFT
    assumes, so the borders do not ring), filter, crop."""
    _, h, w = y.shape
    p = 2 * max(kernel.shape)
    mode = "reflect" if min(h, w) > p else "replicate"
    ext = torch.nn.functional.pad(y[None].to(dtype), (p, p, p, p), mode=mode)[0]
    hh, ww = ext.shape[-2:]
    otf = _otf(kernel, hh, ww, dtype)
    spec = torch.fft.rfft2(ext)
    blurred = torch.fft.irfft2(spec * otf, s=(hh, ww))
    a = (_taper_ramp(hh, p)[:, None] * _taper_ramp(ww, p)[None, :]).to(dtype)
    spec = torch.fft.rfft2(a * ext + (1 - a) * blurred)
    fy = torch.fft.fftfreq(hh, dtype=dtype)[:, None]
    fx = torch.fft.rfftfreq(ww, dtype=dtype)[None, :]
    d2 = (2 - 2 * torch.cos(2 * math.pi * fx)) + (2 - 2 * torch.cos(2 * math.pi * fy))
    out = torch.fft.irfft2(spec * (otf.conj() / (otf.abs() ** 2 + balance * d2)), s=(hh, ww))
    return out[:, p:p + h, p:p + w].to(y.dtype)


BIG = 1 << 22  # from this many pixels the FFTs run in single precision (memory), below in double


def deconvolve(y: torch.Tensor, kernel: torch.Tensor, balance: float) -> torch.Tensor:
    """Wiener / constrained least-squares deconvolution of ``[C, H, W]`` by ``kernel``:
    ``X = K* Y / (|K|^2 + balance |D|^2)`` (``D``: the image gradient, so the mean colour is kept).
    Borders are padded and edge-tapered against ringing. The whole image is filtered at once (the
    regularised inverse of a line kernel reaches far, so tiles would leave seams), one channel at a
    time and in single precision from :data:`BIG` pixels on, which keeps memory to a few copies of
    one channel."""
    _, h, w = y.shape
    dtype = torch.float64 if h * w < BIG else torch.float32
    out = torch.empty_like(y)
    for c in range(y.shape[0]):
        out[c:c + 1] = _deconvolve_whole(y[c:c + 1], kernel, balance, dtype)
    return out


def balance_for(noise: float, length: float, base: float = 0.01) -> float:
    """Wiener balance: ``base`` for a clean 10 px blur, in proportion to the length (a longer kernel
    has more spectral zeros to bridge) and growing with the noise power (``noise`` in 1/255)."""
    return float(min(0.3, base * max(length, 1.0) / 10.0 * (1.0 + (noise / 2.0) ** 2)))


class MotionDeblur:
    """Estimate a linear motion blur, deconvolve it, clean up with an M3UNet pass.

    A pool member outside the classifier-judged steps (``tasks`` is empty): the automatic restore
    runs it as its own step when the classifier reads a blur and the cepstrum finds a confident
    motion kernel (policy ``motion_gate``)."""

    scale = 1
    tasks: tuple[str, ...] = ()
    kind = "motion"

    def __init__(self, restorer, name: str = "motion-deblur", base_balance: float = 0.01,
                 policy: RestorePolicy = DEFAULT_POLICY):
        self.restorer = restorer
        self.name = name
        self.base_balance = base_balance
        self.policy = policy
        self.estimates: list[MotionEstimate] = []

    def would_deconvolve(self, est: MotionEstimate) -> bool:
        """A given length is always deconvolved; an estimated one only when the cepstrum reads a
        kernel deeper than any unshaken photo's (:data:`SHAKE_CONFIDENCE`), at least
        ``motion_min_length`` long and directional (under ``motion_max_symmetry``): a photo with no
        camera shake has no such peak, and deconvolving a guessed kernel ruins it. (The automatic
        restore's motion gate asks for more, ``motion_confidence``.)"""
        if est.length < 1.0:
            return False
        return math.isinf(est.confidence) or (est.confidence >= SHAKE_CONFIDENCE
                                              and est.length >= self.policy.motion_min_length
                                              and est.symmetry < self.policy.motion_max_symmetry)

    def describe(self) -> str:
        return (f"{self.name} (motion kernel from the cepstrum, fitted to a bowed path, Wiener deconvolution, "
                "then an M3UNet clean-up pass; the automatic restore's motion step)")

    def reading(self, x: torch.Tensor, length: float | None = None, angle: float | None = None,
                fit: bool = True) -> MotionEstimate:
        """The cepstrum's reading of ``[3, H, W]``, with ``length`` / ``angle`` replacing it where given;
        with neither given and ``fit``, refined into a bowed path (:meth:`refine`)."""
        est = estimate_motion(x)
        if length is not None:
            if not (math.isfinite(float(length)) and float(length) >= 1.0):
                raise MotionDeblurError(f"motion length is {length}; give at least 1 px (0 in the node: estimate it)")
            est = MotionEstimate(float(length), est.angle if angle is None else float(angle) % 180.0,
                                 float("inf"), est.noise)
        elif angle is not None:
            est = MotionEstimate(est.length, float(angle) % 180.0, est.confidence, est.noise)
        elif fit:
            est = self.refine(x, est)
        return est

    def refine(self, x: torch.Tensor, est: MotionEstimate) -> MotionEstimate:
        """The cepstral reading ``est`` of ``[3, H, W]`` fitted to a bowed path (:func:`fit_path`) when
        policy ``motion_fit_path`` is on and the kernel is worth deconvolving; else ``est``."""
        if self.policy.motion_fit_path and est.match == 0 and self.would_deconvolve(est):
            return fit_path(x, est, self.base_balance)
        return est

    def gate_reading(self, x: torch.Tensor, policy: RestorePolicy | None = None) -> MotionEstimate | None:
        """The spectral half of the automatic restore's motion gate on ``[3, H, W]`` under ``policy``
        (default: the tool's): the fitted reading when the cepstrum reads a confident directional
        kernel (:func:`m3unet.auto.guards.cepstrum_reads_motion`) or a shallower one whose fitted path
        matches the photo's spectrum (:func:`m3unet.auto.guards.fitted_path_reads_motion`); else None."""
        policy = policy or self.policy
        est = self.reading(x, fit=False)
        deep = guards.cepstrum_reads_motion(est, policy)
        if not deep and est.confidence < policy.motion_fit_confidence:
            return None
        est = self.refine(x, est)
        return est if deep or guards.fitted_path_reads_motion(est, policy) else None

    def deconvolve(self, x: torch.Tensor, est: MotionEstimate) -> torch.Tensor:
        """The deconvolution stage alone on ``[3, H, W]`` (skipped where :meth:`would_deconvolve` says no)."""
        return self._deconvolve_with(x, est) if self.would_deconvolve(est) else x

    def _deconvolve_with(self, x: torch.Tensor, est: MotionEstimate) -> torch.Tensor:
        """Deconvolve ``[3, H, W]`` with the kernel of ``est``, whatever its confidence."""
        if est.length < 1.0:
            return x
        k = path_kernel(est.length, est.angle, est.bow)
        return deconvolve(x.float(), k, balance_for(est.noise, est.length, self.base_balance)).clamp(0, 1).to(x.dtype)

    def deblur(self, x: torch.Tensor, est: MotionEstimate, seed: int = 0, tile: int = 512,
               check: Callable[..., None] | None = None) -> torch.Tensor:
        """``[3, H, W]`` -> deblurred with the kernel of ``est`` (the gate's reading: the gate has decided,
        under its own policy, so the kernel is used as given)."""
        return self.restore(x.permute(1, 2, 0)[None], seed=seed, tile=tile, progress=progress_for(check),
                            estimates=[est])[0].permute(2, 0, 1)

    def run(self, x: torch.Tensor, step=None, seed: int = 0, steps: int = 1, tile: int = 512,
            check: Callable[..., None] | None = None) -> torch.Tensor:
        """The pool members' interface: ``[3, H, W]`` float in [0, 1] -> deblurred, same size."""
        return self.restore(x.permute(1, 2, 0)[None], seed=seed, tile=tile,
                            progress=progress_for(check))[0].permute(2, 0, 1)

    def restore(self, image: torch.Tensor, text: str = "", steps: int = 1, seed: int = 0, tile: int = 512,
                progress=None, length: float | None = None, angle: float | None = None,
                estimates: list[MotionEstimate] | None = None) -> torch.Tensor:
        """Restorer-like: IMAGE ``[B, H, W, C]`` (grey/RGB/RGBA, float or uint8) -> IMAGE of the same
        shape and dtype; alpha passes through. ``length`` (px) and ``angle`` (degrees) replace the
        estimate when given, ``estimates`` (one per image, a decision already made) replace the reading
        and are deconvolved whatever their confidence; the readings are kept in :attr:`estimates`."""
        def read(i: int, rgb: torch.Tensor) -> MotionEstimate:
            return estimates[i] if estimates is not None else self.reading(rgb, length, angle)

        deconvolve = self._deconvolve_with if estimates is not None else self.deconvolve
        out, self.estimates = deconvolve_and_clean(image, self.restorer, read, deconvolve, seed, tile, progress)
        return out
