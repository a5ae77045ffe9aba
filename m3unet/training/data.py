"""Clean training/evaluation photographs from offline sources, with a data manifest.

Sources (see ``../shared/offline-assets.md``): Debian ``mate-backgrounds`` nature photos,
the OpenCV source distribution's ``samples/data`` photos, scikit-image's bundled photos, and the real
photographs among Debian's ``plasma-workspace-wallpapers``, ``lomiri-wallpapers-20.04`` and
``lomiri-wallpapers-16.04``.
Each photo is converted to RGB, down-scaled (area/Lanczos) so that its long side is at most
``max_side`` (which also averages away sensor noise and JPEG artefacts of the originals, giving
cleaner ground truth), and written as PNG. A manifest records source, licence and hashes.
The photos themselves are never committed; ``python -m m3unet prepare-data`` rebuilds them.

The split is by photo, in four parts:

- ``train``: the photos models are trained on;
- ``validation``: never trained on; thresholds, checkpoints and rules of the automatic restore are
  chosen on these (:data:`VALIDATION`);
- ``holdout``: never trained on; measured like validation, in addition to it, on scenes the
  validation photos lack (high-key and grey scenes, shallow depth of field, textures): the
  community photographs of Debian's ``lomiri-wallpapers-16.04`` (:data:`HOLDOUT`), added after every
  earlier choice, so the figures published for validation stay reproducible; later choices are made
  on validation and holdout together;
- ``test``: never trained on and never used to choose anything; published figures come from these
  (:data:`TEST`). They were assigned by a content-blind rule (the six of the twelve Debian wallpaper
  photos whose id has the lowest SHA-256), before any of them was looked at.
"""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..core.image import luminance

OPENCV_SDIST = ("https://files.pythonhosted.org/packages/79/4c/"
                "a438d23e09ce2033c09f7b784ad2fbdb0adf529e434101ed28f142226f98/"
                "opencv_python-5.0.0.93.tar.gz")
OPENCV_SHA256 = "66aac3e5b5faa48d4025816592f3af19e4bfc2c68dec067bae2dbb4ca10aa9e2"

MATE_PHOTOS = ["nature/Aqua.jpg", "nature/Blinds.jpg", "nature/Dune.jpg", "nature/FreshFlower.jpg",
               "nature/Garden.jpg", "nature/GreenMeadow.jpg", "nature/LadyBird.jpg",
               "nature/RainDrops.jpg", "nature/Storm.jpg", "nature/TwoWings.jpg", "nature/Wood.jpg",
               "nature/YellowFlower.jpg", "abstract/Elephants_3840x2160.jpg"]
# Real colour photographs only: no logos, charts, renders, paintings, or images of disputed provenance.
OPENCV_PHOTOS = ["aero1.jpg", "aero3.jpg", "apple.jpg", "baboon.jpg", "board.jpg", "building.jpg",
                 "butterfly.jpg", "castle.jpg", "fruits.jpg", "HappyFish.jpg", "home.jpg",
                 "leuvenA.jpg", "leuvenB.jpg", "messi5.jpg", "orange.jpg", "graf1.png", "graf3.png",
                 "smarties.png", "squirrel_cls.jpg", "stuff.jpg", "rubberwhale1.png",
                 "basketball1.png", "aloeL.jpg", "ela_original.jpg", "mcc_ccm_test.jpg"]
SKIMAGE_PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "hubble_deep_field"]
SKIMAGE_LICENCE = {"astronaut": "public domain (NASA)", "chelsea": "CC0 (Stefan van der Walt)",
                   "coffee": "CC0 (Rachel Michetti)", "rocket": "public domain (SpaceX/NASA)",
                   "motorcycle_left": "Middlebury stereo data set (research use, cited)",
                   "hubble_deep_field": "public domain (NASA/ESA)"}

PLASMA_PHOTOS = ["BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
                 "Kite", "OneStandsOut", "Path", "summer_1am"]
LOMIRI_PHOTOS = ["Kleiber_by_Lukas_Baubkus.jpg"]
# Debian lomiri-wallpapers-16.04: its community photographs, with their licences (debian/copyright);
# umang_by_Abhishek_Mudgal is digital art and is left out. All of them form the holdout split.
LOMIRI16_PHOTOS = {"Bridge_by_Sander_Klootwijk.jpg": "CC-BY-SA-4.0", "Dragonfly_by_Bolly.jpg": "CC-BY-SA-4.0",
                   "Picture_0B_by_freespace.jpg": "CC-BY-4.0", "Picture_1A_by_freespace.jpg": "CC-BY-4.0",
                   "Wine_by_Jakkub_Mede.jpg": "CC-BY-4.0", "aitzgorri_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
                   "analogpattern_by_Peter_Nerlich.jpg": "CC-BY-SA-4.0", "free_by_Peter_Nerlich.jpg": "CC-BY-SA-4.0",
                   "friends_by_Aitzol_Berasategi.jpg": "CC-BY-4.0", "greentock_by_Peter_Nerlich.jpg": "CC-BY-SA-4.0",
                   "life_by_Aitzol_Berasategi.jpg": "CC-BY-4.0", "picosdeeuropa_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
                   "seeding_by_Clements_Engelhardt.jpg": "CC0-1.0", "sunset_by_Aitzol_Berasategi.jpg": "CC-BY-4.0"}

# Never used in training; the automatic restore's thresholds and rules are chosen on these. The
# scikit-image ones ship inside the package, so tests and CI can evaluate without downloading anything.
VALIDATION = {"skimage-astronaut", "skimage-chelsea", "skimage-coffee", "opencv-baboon",
              "opencv-fruits", "opencv-butterfly", "opencv-building", "mate-Dune", "mate-LadyBird"}
# Never used in training nor to choose anything: the photos published figures are measured on.
TEST = {"lomiri-Kleiber", "plasma-BytheWater", "plasma-ColdRipple", "plasma-ColorfulCups", "plasma-OneStandsOut",
        "plasma-Path"}


def _lomiri16_id(file_name: str) -> str:
    """``lomiri16-<title>`` from a lomiri-wallpapers-16.04 file name (``<title>_by_<author>.jpg``)."""
    return "lomiri16-" + file_name.split("_by_")[0]


HOLDOUT = {_lomiri16_id(name) for name in LOMIRI16_PHOTOS}
SPLITS = ("train", "validation", "holdout", "test")
EVALUATION_SPLITS = ("validation", "holdout", "test")


@dataclass
class Photo:
    """One clean photo: its id (``source-name``), source description, licence and pixels."""
    id: str
    source: str
    licence: str
    original_sha256: str
    image: Image.Image


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _mate_photos(cache: Path) -> Iterator[Photo]:
    deb, out = _deb(cache, "mate-backgrounds")
    root = out / "usr/share/backgrounds/mate"
    for rel in MATE_PHOTOS:
        data = (root / rel).read_bytes()
        name = Path(rel).stem.replace("_3840x2160", "")
        yield Photo(f"mate-{name}", f"Debian {deb.name}: {rel}", "GPL-2+ (debian/copyright)",
                    _sha256(data), Image.open(io.BytesIO(data)))


def _opencv_photos(cache: Path) -> Iterator[Photo]:
    sdist = cache / Path(OPENCV_SDIST).name
    if not sdist.exists() or _sha256(sdist.read_bytes()) != OPENCV_SHA256:
        subprocess.run(["curl", "-sSfL", "-o", str(sdist), OPENCV_SDIST], check=True)
    if _sha256(sdist.read_bytes()) != OPENCV_SHA256:
        raise RuntimeError(f"{sdist}: unexpected sha256; delete it and run prepare-data again")
    wanted = {f"opencv_python-5.0.0.93/opencv/samples/data/{n}": n for n in OPENCV_PHOTOS}
    with tarfile.open(sdist) as tar:
        for member in tar:
            if member.name in wanted:
                data = tar.extractfile(member).read()
                name = Path(wanted[member.name]).stem
                yield Photo(f"opencv-{name}", f"PyPI opencv-python 5.0.0.93 sdist: samples/data/{wanted[member.name]}",
                            "Apache-2.0 (OpenCV samples)", _sha256(data), Image.open(io.BytesIO(data)))


def _skimage_photos() -> Iterator[Photo]:
    import skimage.data
    from skimage import io as skio
    folder = Path(skimage.data.__file__).parent
    for name in SKIMAGE_PHOTOS:
        files = sorted(folder.glob(f"{name}.*"))
        arr = getattr(skimage.data, name)() if not files else skio.imread(files[0])
        yield Photo(f"skimage-{name}", f"scikit-image skimage.data.{name}()", SKIMAGE_LICENCE[name],
                    _sha256(np.ascontiguousarray(arr).tobytes()), Image.fromarray(arr))


def skimage_validation(max_side: int = 1024) -> dict[str, np.ndarray]:
    """Validation photos that ship inside scikit-image (usable in tests/CI with no download)."""
    return {p.id: np.asarray(_normalise(p.image, max_side))
            for p in _skimage_photos() if p.id in VALIDATION}


def _deb(cache: Path, package: str) -> tuple[Path, Path]:
    """Download (once) and unpack a Debian package into ``cache``; returns (the .deb, its tree)."""
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", package], cwd=cache, check=True)
        debs = sorted(cache.glob(f"{package}_*.deb"))
    out = cache / package
    if not out.exists():
        subprocess.run(["dpkg", "-x", str(debs[-1]), str(out)], check=True)
    return debs[-1], out


def _plasma_photos(cache: Path) -> Iterator[Photo]:
    deb, root = _deb(cache, "plasma-workspace-wallpapers")
    for name in PLASMA_PHOTOS:
        images = root / "usr/share/wallpapers" / name / "contents/images"
        files = sorted(images.glob("*.jpg"), key=lambda f: int(f.stem.split("x")[0]) * int(f.stem.split("x")[1]))
        data = files[-1].read_bytes()  # the largest rendition
        yield Photo(f"plasma-{name}", f"Debian {deb.name}: wallpapers/{name}/contents/images/{files[-1].name}",
                    "LGPL-3 (the wallpaper's metadata)", _sha256(data), Image.open(io.BytesIO(data)))


def _lomiri_photos(cache: Path) -> Iterator[Photo]:
    deb, root = _deb(cache, "lomiri-wallpapers-20.04")
    for rel in LOMIRI_PHOTOS:
        data = (root / "usr/share/backgrounds" / rel).read_bytes()
        yield Photo(f"lomiri-{rel.split('_')[0]}", f"Debian {deb.name}: backgrounds/{rel}",
                    "CC-BY-SA-3.0 (debian/copyright)", _sha256(data), Image.open(io.BytesIO(data)))


def _lomiri16_photos(cache: Path) -> Iterator[Photo]:
    deb, root = _deb(cache, "lomiri-wallpapers-16.04")
    for rel, licence in LOMIRI16_PHOTOS.items():
        data = (root / "usr/share/backgrounds" / rel).read_bytes()
        yield Photo(_lomiri16_id(rel), f"Debian {deb.name}: backgrounds/{rel}",
                    f"{licence} (debian/copyright)", _sha256(data), Image.open(io.BytesIO(data)))


def split_of(photo_id: str) -> str:
    """Which split a photo belongs to: ``validation``, ``holdout``, ``test`` or ``train``."""
    return ("validation" if photo_id in VALIDATION else "holdout" if photo_id in HOLDOUT else
            "test" if photo_id in TEST else "train")


def _normalise(img: Image.Image, max_side: int) -> Image.Image:
    img = img.convert("RGB")
    scale = max_side / max(img.size)
    if scale < 1:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS)
    return img


def prepare(out: Path, cache: Path | None = None, max_side: int = 1024) -> dict:
    """Gather, normalise and write the photos to ``out/{train,validation,test}``; return the manifest."""
    out = Path(out)
    cache = Path(cache) if cache else Path(tempfile.gettempdir()) / "m3unet-data-cache"
    cache.mkdir(parents=True, exist_ok=True)
    entries = []
    for gen in (_mate_photos(cache), _opencv_photos(cache), _skimage_photos(), _plasma_photos(cache),
                _lomiri_photos(cache), _lomiri16_photos(cache)):
        for photo in gen:
            split = split_of(photo.id)
            img = _normalise(photo.image, max_side)
            path = out / split / f"{photo.id}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            img.save(path)
            entries.append({"id": photo.id, "split": split, "source": photo.source,
                            "licence": photo.licence, "original_sha256": photo.original_sha256,
                            "file": f"{split}/{path.name}", "size": list(img.size),
                            "sha256": _sha256(path.read_bytes())})
    manifest = {"max_side": max_side, "photos": entries,
                "counts": {s: sum(e["split"] == s for e in entries) for s in SPLITS}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def load_split(root: Path, split: str) -> dict[str, np.ndarray]:
    """Load the photos of one split written by :func:`prepare` as uint8 HxWx3 arrays."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    root = Path(root)
    manifest_path = root / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path} not found: run `python -m m3unet prepare-data --out {root}` first")
    manifest = json.loads(manifest_path.read_text())
    if split != "train" and not any(e["split"] == split for e in manifest["photos"]):
        raise FileNotFoundError(f"{manifest_path} has no {split} photos (written by an older version): run "
                                f"`python -m m3unet prepare-data --out {root}` again")
    return {e["id"]: np.asarray(Image.open(root / e["file"]).convert("RGB"))
            for e in manifest["photos"] if e["split"] == split}


DEFAULT_DATA = Path("data/photos")


def evaluation_photos(data: str | None, split: str = "validation") -> dict[str, np.ndarray]:
    """The photos of ``split`` (``validation``, ``holdout`` or ``test``) under ``data`` (default
    ``data/photos`` if prepared). Without prepared data the validation split falls back to the
    scikit-image validation photos; the others need ``python -m m3unet prepare-data``."""
    if split not in EVALUATION_SPLITS:
        raise ValueError(f"evaluation split must be {', '.join(EVALUATION_SPLITS)}; got {split!r}")
    if data is None and (DEFAULT_DATA / "manifest.json").exists():
        data = str(DEFAULT_DATA)
    if data:
        return load_split(Path(data), split)
    if split != "validation":
        raise FileNotFoundError(f"the {split} photos are not prepared: run `python -m m3unet prepare-data` first "
                                "(or pass --split validation)")
    return skimage_validation()


def dark_region(x: torch.Tensor, size: int, gen: torch.Generator | None = None, among: float = 0.0,
                stride: int = 16) -> torch.Tensor:
    """A ``size`` px square of ``x`` (``[3, H, W]``, 0-1) in the photo's dark part (shadows, a night
    sky, a dark background), on a ``stride`` px grid: the darkest square, or with ``gen`` one drawn
    at random among the darkest ``among`` share of the squares (at least one)."""
    _, h, w = x.shape
    s = min(size, h, w)
    m = F.avg_pool2d(luminance(x)[None, None], s, stride=stride).flatten()
    if gen is None or among <= 0:
        i = int(m.argmin())
    else:
        darkest = m.argsort()[:max(1, int(round(among * m.numel())))]
        i = int(darkest[int(torch.randint(0, darkest.numel(), (), generator=gen))])
    cols = (w - s) // stride + 1
    y0, x0 = (i // cols) * stride, (i % cols) * stride
    return x[:, y0:y0 + s, x0:x0 + s].contiguous()


def center_crop(a: np.ndarray, size: int) -> torch.Tensor:
    x = torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1).float() / 255
    if size <= 0:
        return x
    _, h, w = x.shape
    s = min(size, h, w)
    return x[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s].contiguous()
