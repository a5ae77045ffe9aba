"""The model pool of the automatic restore: M3UNet plus user models tagged with the task they serve.

User models are anything that maps an image batch ``[B, C, H, W]`` (float 0-1) to
``[B, C, s*H, s*W]``: a spandrel ``ImageModelDescriptor`` (what ComfyUI's *Load Upscale Model*
returns: Real-ESRGAN, SwinIR, NAFNet, SCUNet, ...) or any plain callable. For a descriptor the
pool honours its ``scale``, ``input_channels``/``output_channels``, ``device``/``dtype`` and
``tiling`` hint; for a callable the scale is read from its first output. Large images run in
overlapping tiles (the blending weights of :mod:`m3unet.core.tiling`, repeated ``s`` times per axis at
the output, so they still sum to one). A model whose scale is not 1 has its result resized back
to the input size unless the caller keeps the larger size.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from ..core import tiling
from .plan import MODEL_AUTO, MODEL_M3UNET, TASKS, Step
from .policy import DEFAULT_POLICY, RestorePolicy
from ..core.image import luminance, resize  # noqa: F401 (resize: part of the pool API)
from ..core.weights import FileCache

DEFAULT_TILE = 512
DEFAULT_OVERLAP = 32


def steps_for(task: str | Step, steps: int | None, policy: RestorePolicy = DEFAULT_POLICY) -> int:
    """Sampler steps of an M3UNet pass for ``task`` (or a step: the most its tasks take): ``steps`` if
    given, else the policy's per-task steps (:attr:`RestorePolicy.task_steps`, 1 for the others)."""
    if steps:
        return steps
    return policy.steps_for(task.tasks if isinstance(task, Step) else [task])


def describe_steps(steps: int | None, policy: RestorePolicy = DEFAULT_POLICY) -> str:
    """How many sampler steps the passes take, for measurement records: ``steps``, or the per-task rule."""
    return str(steps) if steps else "per task: " + ", ".join(f"{t} {n}" for t, n in policy.task_steps.items()) + \
        ", else 1"


class PoolError(ValueError):
    """A pool model that cannot be used (bad tag, name, output shape); the message names it."""


class PoolModel:
    """A user model in the pool: ``model`` (spandrel descriptor or callable) serving ``tasks``."""

    def __init__(self, model: Any, tasks: str | Sequence[str], name: str | None = None,
                 tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP):
        if not callable(model):
            raise PoolError(f"pool model {name or ''!r} is a {type(model).__name__}, not a model: pass a spandrel "
                            "ImageModelDescriptor (ComfyUI's UPSCALE_MODEL) or a callable image -> image")
        self.model = model
        self.tasks = _check_tasks(name, tasks)
        arch = getattr(getattr(model, "architecture", None), "name", None)
        self.name = name or (f"{arch} {getattr(model, 'scale', 1)}x" if arch else type(model).__name__)
        if self.name in (MODEL_AUTO, MODEL_M3UNET):
            raise PoolError(f"pool model name {self.name!r} is reserved; choose another name")
        self.scale: int | None = int(model.scale) if hasattr(model, "scale") else None
        self.in_channels = int(getattr(model, "input_channels", 3))
        self.out_channels = int(getattr(model, "output_channels", 3))
        if self.in_channels not in (1, 3, 4) or self.out_channels not in (1, 3, 4):
            raise PoolError(f"pool model {self.name!r} maps {self.in_channels} to {self.out_channels} channels; "
                            "only grey (1), RGB (3) and RGBA (4) image models can be used")
        hint = getattr(getattr(model, "tiling", None), "name", "SUPPORTED")
        self.tile = None if hint == "INTERNAL" else tile
        self.overlap = overlap

    def describe(self) -> str:
        scale = f"{self.scale}x" if self.scale else "scale from output"
        return f"{self.name} ({'/'.join(self.tasks)}, {scale})"

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        try:
            return torch.device(self.model.device), self.model.dtype
        except (AttributeError, TypeError, StopIteration):
            return torch.device("cpu"), torch.float32

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        """One tile ``[3, h, w]`` -> ``[3, s*h, s*w]`` float32 on the CPU."""
        device, dtype = self._device_dtype()
        inp = x
        if self.in_channels == 1:
            inp = luminance(x)[None]
        elif self.in_channels == 4:
            inp = torch.cat([x, torch.ones_like(x[:1])])
        with torch.inference_mode():
            y = self.model(inp[None].to(device=device, dtype=dtype))
        if not torch.is_tensor(y) or y.ndim != 4 or y.shape[0] != 1:
            raise PoolError(f"pool model {self.name!r} returned {getattr(y, 'shape', type(y).__name__)}; expected an "
                            "image batch [1, C, H, W]")
        y = y[0].float().cpu()
        if y.shape[0] == 1:
            y = y.expand(3, -1, -1)
        elif y.shape[0] >= 3:
            y = y[:3]
        else:
            raise PoolError(f"pool model {self.name!r} returned {y.shape[0]} channels; expected 1, 3 or 4")
        return y

    def _scale_of(self, x: torch.Tensor, y: torch.Tensor) -> int:
        (h, w), (oh, ow) = x.shape[-2:], y.shape[-2:]
        s = oh / h
        if oh % h or ow % w or ow // w != oh // h:
            raise PoolError(f"pool model {self.name!r} turned a {w}x{h} input into {ow}x{oh}: not a whole-number "
                            "scale of the input; only models with an integer scale (1x, 2x, 4x...) can be used")
        return int(s)

    def run(self, x: torch.Tensor, step: Step, seed: int, steps: int, tile: int,
            check: Callable[..., None] | None = None) -> torch.Tensor:
        """The pool members' interface (the step, seed and sampler steps do not apply to an image model)."""
        return self(x, check)

    def __call__(self, x: torch.Tensor, check: Callable[..., None] | None = None) -> torch.Tensor:
        """Run on ``[3, H, W]`` float (0-1); returns ``[3, s*H, s*W]`` (the model's own scale), clamped.

        ``check(fraction)`` is called before every tile (it may raise to interrupt).
        """
        h, w = x.shape[-2:]
        if self.tile is None or max(h, w) <= self.tile + self.overlap:
            if check:
                check(0.0)
            y = self._call(x)
            self._scale_of(x, y)
            return y.clamp(0, 1)
        out = None
        s = self.scale
        n = tiling.count(h, w, self.tile, self.overlap)
        for k, (ys, xs, weight) in enumerate(tiling.grid(h, w, self.tile, self.overlap)):
            if check:
                check(k / n)
            crop = x[:, ys.start:ys.stop, xs.start:xs.stop]
            y = self._call(crop)
            ts = self._scale_of(crop, y)
            if s is None:
                s = ts
            if ts != s:
                raise PoolError(f"pool model {self.name!r} scaled one tile {ts}x and another {s}x")
            if out is None:
                out = torch.zeros(3, h * s, w * s)
            wt = weight.repeat_interleave(s, 0).repeat_interleave(s, 1) if s > 1 else weight
            out[:, ys.start * s:ys.stop * s, xs.start * s:xs.stop * s] += y * wt
        return out.clamp(0, 1)


def _check_tasks(name: str, tasks: str | Sequence[str]) -> tuple[str, ...]:
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise PoolError(f"pool model {name!r}: unknown task tag(s) {bad or tasks}; tag it with one of {', '.join(TASKS)}")
    return tasks


class M3UNetPoolModel:
    """Another M3UNet checkpoint in the pool (e.g. ``weights/m3unet-deblur.safetensors`` for blur and
    motion), steered by the step's restoration text like the main one.

    ``solo``: a specialist fine-tuned on its task alone, which forgets the others (the shipped JPEG
    specialist: noise25 29.43 -> 27.24 dB; the noise specialist: jpeg15 27.61 -> 27.73). The automatic restore gives it its task's step where
    that is the only degradation the classifier reads on the image as given, and never tries it
    elsewhere (:meth:`Pool.candidates`): it was trained on that degradation of clean photos, not
    on what other steps leave (measured, `eval --auto`: run after noise and blur steps on a
    blur+JPEG+noise mix it cost 0.8 dB).

    ``small``: a specialist for images under the classifier's minimum side only (the shipped small
    print model: enlarged scans of small text); never a candidate of a classified step, it is run by
    the automatic restore's small-image path (:meth:`m3unet.auto.restorer.AutoRestorer._small_print`)."""

    scale = 1

    def __init__(self, restorer, tasks: str | Sequence[str], name: str, solo: bool = False, small: bool = False):
        if name in (MODEL_AUTO, MODEL_M3UNET):
            raise PoolError(f"pool model name {name!r} is reserved; choose another name")
        self.restorer = restorer
        self.tasks = _check_tasks(name, tasks)
        self.name = name
        self.solo = solo
        self.small = small

    def describe(self) -> str:
        alone = ", where it is the only degradation read" if self.solo else ""
        if self.small:
            alone = ", for small enlarged images the classifier does not read"
        return f"{self.name} (M3UNet, {'/'.join(self.tasks)}{alone}, steered by the step's text)"

    def run(self, x: torch.Tensor, step: Step, seed: int, steps: int, tile: int,
            check: Callable[..., None] | None = None) -> torch.Tensor:
        return m3unet_pass(self.restorer, x, step, seed, steps, tile, check)


def m3unet_pass(restorer, x: torch.Tensor, step: Step, seed: int, steps: int, tile: int,
                check: Callable[..., None] | None = None) -> torch.Tensor:
    """One M3UNet pass over ``x`` ``[3, H, W]`` steered by the step's restoration text; ``check``
    receives the fraction done after every sampler step of every tile (it may raise to interrupt)."""
    progress = (lambda p: check(p.done / p.total)) if check else None
    out = restorer.restore(x.permute(1, 2, 0)[None], text=step.instruction(), steps=steps, seed=seed,
                           tile=tile, progress=progress)
    return out[0].permute(2, 0, 1)


class Pool:
    """The candidates for each step: M3UNet (if given a Restorer) and the user's models
    (:class:`PoolModel` for image models, :class:`M3UNetPoolModel` for other M3UNet checkpoints)."""

    def __init__(self, restorer=None, models: Sequence[PoolModel | M3UNetPoolModel] = (), steps: int | None = None,
                 tile: int = DEFAULT_TILE, policy: RestorePolicy = DEFAULT_POLICY):
        self.restorer = restorer
        self.models = {}
        from .deblur import KernelDeblur
        from .motion import MotionDeblur
        for m in models:
            if not isinstance(m, (PoolModel, M3UNetPoolModel, KernelDeblur, MotionDeblur)):
                raise PoolError(f"pool entries must be PoolModel(model, task); got {type(m).__name__}")
            if m.name in self.models:
                raise PoolError(f"two pool models are named {m.name!r}; give them distinct names")
            self.models[m.name] = m
        self.steps = steps  # sampler steps of every M3UNet pass; None: per task (steps_for)
        self.tile = tile
        self.policy = policy

    @property
    def names(self) -> list[str]:
        return ([MODEL_M3UNET] if self.restorer is not None else []) + list(self.models)

    @property
    def max_scale(self) -> int:
        return max([m.scale or 1 for m in self.models.values()] + [1])

    def candidates(self, step: Step, strict: bool = True, alone: bool = False) -> list[str]:
        """Model names to try for ``step``: its named model, or (``auto``) the models tagged with its task, then M3UNet.

        ``alone``: the image is as given and its task is the only degradation read; then a ``solo``
        specialist of that task (:class:`M3UNetPoolModel`) replaces M3UNet among the candidates,
        else solo specialists are left out. ``strict``: raise if nothing serves the step (else return an
        empty list).
        """
        if step.model == MODEL_AUTO:
            # A joint step (m3unet.auto.plan.Step.also) goes to models tagged with all of its tasks.
            tagged = [n for n, m in self.models.items()
                      if set(step.tasks) <= set(m.tasks) and not getattr(m, "small", False)]
            solo = [n for n in tagged if getattr(self.models[n], "solo", False)]
            if solo and alone:  # the specialist takes M3UNet's place; user models still compete
                return [n for n in tagged if n not in solo] + solo
            # Models tagged with the step's task come first: the automatic restore keeps the first
            # candidate that is as good as the best one (m3unet.auto.restorer.PREFER_MARGIN).
            names = [n for n in tagged if n not in solo] + ([MODEL_M3UNET] if self.restorer is not None else [])
            if not names and strict:
                raise PoolError(f"no model in the pool serves {step.label!r} (the pool has "
                                f"{', '.join(self.describe()) or 'nothing'})")
            return names
        if step.model not in self.names:
            raise PoolError(f"the plan names model {step.model!r} for {step.task!r}, but the pool has "
                            f"{', '.join(['auto'] + self.names)}")
        return [step.model]

    def describe(self) -> list[str]:
        return (["m3unet (every task, steered by the step's text)"] if self.restorer is not None else []) + \
               [m.describe() for m in self.models.values()]

    def run(self, name: str, x: torch.Tensor, step: Step, seed: int = 0,
            check: Callable[..., None] | None = None) -> torch.Tensor:
        """Restore ``x`` ``[3, H, W]`` float with pool model ``name``; M3UNet keeps the size, others
        return their own scale. Every member answers ``run(x, step, seed, steps, tile, check)``."""
        steps = steps_for(step, self.steps, self.policy)
        if name == MODEL_M3UNET:
            if self.restorer is None:
                raise PoolError("the pool has no M3UNet")
            return m3unet_pass(self.restorer, x, step, seed, steps, self.tile, check)
        return self.models[name].run(x, step, seed, steps, self.tile, check)



def load_pool_model(path, tasks: str | Sequence[str], name: str | None = None) -> PoolModel | M3UNetPoolModel:
    """Load a ``.safetensors`` pool model: an M3UNet checkpoint (recognised by its metadata), or an
    image model through spandrel (as ComfyUI's *Load Upscale Model* does)."""
    from pathlib import Path

    from ..core.weights import load_model, read_metadata
    path = Path(path)
    meta = read_metadata(path)  # clear errors for missing, pickled or corrupt files
    if "m3unet_config" in meta:
        from ..restore.pipeline import Restorer
        return M3UNetPoolModel(Restorer(load_model(path)), tasks, name or path.stem)
    try:
        from spandrel import ImageModelDescriptor, ModelLoader
    except ImportError as e:
        raise PoolError("pool models are loaded with spandrel, which is not installed: pip install spandrel "
                        "(ComfyUI ships it)") from e
    from safetensors.torch import load_file
    try:
        desc = ModelLoader().load_from_state_dict(load_file(str(path)))
    except Exception as e:  # spandrel raises its own UnsupportedModelError and KeyErrors
        raise PoolError(f"{path.name}: spandrel does not recognise this model ({type(e).__name__}: {e}); "
                        "use an architecture spandrel supports (Real-ESRGAN, SwinIR, NAFNet, SCUNet...)") from e
    if not isinstance(desc, ImageModelDescriptor):
        raise PoolError(f"{path.name} is a {type(desc).__name__}; only single-image models can join the pool")
    return PoolModel(desc.eval(), tasks, name or path.stem)


# Shipped M3UNet specialists of the default pool: file in weights/ -> tasks. Each is fine-tuned
# from the shipped model on its task alone (its model card says how and what it measured), so it is
# a ``solo`` member (see M3UNetPoolModel).
SPECIALISTS = {"m3unet-jpeg.safetensors": ("jpeg",), "m3unet-noise.safetensors": ("noise",)}
# ... and for small images only (M3UNetPoolModel.small): fine-tuned on down-sampling with 70 % text
# pages, it reads enlarged small print better than the input, but makes down-sampled photos worse.
SMALL_SPECIALISTS = {"m3unet-smallprint.safetensors": ("lowres",)}
_specialist_models: FileCache = FileCache()  # loaded once per process, again if a file changes


def is_shipped_default(path) -> bool:
    """Is ``path`` (None: the default) the shipped default M3UNet, whose companions the specialists are?"""
    from pathlib import Path

    from ..core.weights import DEFAULT_WEIGHTS
    return path is None or Path(path).resolve() == DEFAULT_WEIGHTS.resolve()


def shipped_specialists(restorer, solo: bool = True, small: bool = True) -> list[M3UNetPoolModel]:
    """The shipped specialists (:data:`SPECIALISTS`, then :data:`SMALL_SPECIALISTS`) whose files are present, on ``restorer``'s
    device and sharing its text encoder; [] without a restorer. They are fine-tuned from the
    shipped default: callers add them only when it is the main model (:func:`is_shipped_default`),
    so a model the user chose is not replaced on its single-degradation steps. ``solo`` / ``small``:
    include the single-task specialists / the small-print one (the policy decides whether they are used)."""
    if restorer is None:
        return []
    from ..restore.pipeline import Restorer
    from ..core.weights import DEFAULT_WEIGHTS, load_model
    out = []
    for is_small, table in ((False, SPECIALISTS if solo else {}), (True, SMALL_SPECIALISTS if small else {})):
        for file, tasks in table.items():
            path = DEFAULT_WEIGHTS.parent / file
            if path.is_file():
                model = _specialist_models.get(path, lambda p=path: load_model(p)).to(restorer.device)
                out.append(M3UNetPoolModel(Restorer(model, restorer.text_encoder), tasks, path.stem,
                                           solo=not is_small, small=is_small))
    return out


def shipped_tools(restorer, kernel_deblur: bool = True, specialists: bool = True, model_path=None,
                  policy: RestorePolicy = DEFAULT_POLICY) -> list:
    """The default pool's members beside M3UNet (what ``restore``, the Auto Restore node and eval's
    ``auto`` column use): the kernel-aware deblur (:mod:`m3unet.auto.deblur`, the defocus step), the motion
    deblur (:mod:`m3unet.auto.motion`, the motion step, with the policy's ``motion_gate``) and the
    shipped specialists, each when asked for and its weights file is present. ``model_path`` is the
    main model's file (None: the shipped default); the specialists join only beside the shipped
    default (:func:`is_shipped_default`), and only those the ``policy`` uses (the single-task ones with
    ``solo_specialists``, the small-print one with ``small_image_routes``)."""
    from .deblur import shipped_kernel_deblur
    from .motion import MotionDeblur
    motion = [MotionDeblur(restorer, base_balance=policy.motion_balance, policy=policy)] \
        if kernel_deblur and restorer is not None and policy.motion_gate else []
    return (shipped_kernel_deblur(restorer) if kernel_deblur else []) + motion + \
        (shipped_specialists(restorer, solo=policy.solo_specialists, small=policy.small_image_routes)
         if specialists and is_shipped_default(model_path) else [])


def parse_pool_arg(arg: str) -> tuple[str, list[str]]:
    """``FILE=TASK[,TASK]`` (the ``--pool`` option) -> (file, tasks)."""
    if "=" not in arg:
        raise PoolError(f"--pool {arg!r}: write FILE=TASK, e.g. --pool realesrgan.safetensors=lowres "
                        f"(tasks: {', '.join(TASKS)})")
    file, tasks = arg.rsplit("=", 1)
    return file, [t.strip() for t in tasks.split(",") if t.strip()]
