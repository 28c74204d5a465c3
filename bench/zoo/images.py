"""Real photos shipped inside the scikit-image and scikit-learn wheels, split by photo, and crops of them.

Every photo belongs to exactly one split, so scored crops never share a photo with calibration or tuning crops
(the stereo pair motorcycle_left/right is one scene and stays in one split). Grayscale photos are replicated to
three channels. Nothing is downloaded: only images that load from the installed wheels are used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from .store import ZooError

# split -> photos (skimage.data names; "sklearn:<name>" for sklearn's load_sample_images)
PHOTO_SPLITS: dict[str, tuple[str, ...]] = {
    "calibration": ("astronaut", "coffee", "hubble_deep_field", "immunohistochemistry", "camera", "coins", "grass"),
    "eval": ("sklearn:china", "motorcycle_left", "motorcycle_right", "rocket", "moon", "brick"),
    "score": ("chelsea", "sklearn:flower", "retina", "clock", "gravel", "cell"),
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@lru_cache(maxsize=32)
def load_photo(name: str) -> np.ndarray:
    """An RGB uint8 HxWx3 array of a bundled photo."""
    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image

        return np.ascontiguousarray(load_sample_image(name.split(":", 1)[1] + ".jpg"))
    import skimage.data as skd

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _disp = skd.stereo_motorcycle()
        arr = left if name == "motorcycle_left" else right
    else:
        fn = getattr(skd, name, None)
        if fn is None:
            raise ZooError(f"skimage.data has no image {name!r}")
        arr = fn()
    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3].astype(np.uint8))


def photo_split(split: str) -> tuple[str, ...]:
    return PHOTO_SPLITS[split]


@dataclass(frozen=True)
class Crop:
    photo: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the photo
    flipped: bool
    pixels: np.ndarray  # HxWx3 uint8 at the requested size


def _resize(arr: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """Crop `box` of an HxWx3 uint8 array and resize it to (height, width) with antialiased bilinear (PIL)."""
    im = Image.fromarray(arr)
    return np.asarray(im.resize((size[1], size[0]), Image.BILINEAR, box=box))


def center_crop(photo: str, size: int = 224, resize: int = 256) -> Crop:
    """torchvision's eval transform: shorter side to `resize`, centre `size` x `size`."""
    arr = load_photo(photo)
    h, w = arr.shape[:2]
    scale = resize / min(h, w)
    side = size / scale  # the crop's side in photo pixels
    x0, y0 = (w - side) / 2, (h - side) / 2
    box = (round(x0), round(y0), round(x0 + side), round(y0 + side))
    return Crop(photo, box, False, _resize(arr, box, (size, size)))


def random_crops(photos: Sequence[str], n: int, size: tuple[int, int], rng: np.random.Generator, *,
                 scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 canonical_first: bool = True) -> list[Crop]:
    """`n` crops, photos taken in turn; RandomResizedCrop-style area/aspect sampling, random flips.

    With `canonical_first` each photo's first crop is its centre crop (the torchvision eval view).
    """
    out: list[Crop] = []
    for i in range(n):
        photo = photos[i % len(photos)]
        if canonical_first and i < len(photos) and size[0] == size[1]:
            out.append(center_crop(photo, size[0], round(size[0] * 256 / 224)))
            continue
        arr = load_photo(photo)
        h, w = arr.shape[:2]
        for _ in range(20):
            area = rng.uniform(*scale) * h * w
            r = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
            cw, ch = int(round(np.sqrt(area * r))), int(round(np.sqrt(area / r)))
            if 8 <= cw <= w and 8 <= ch <= h:
                break
        else:
            cw = ch = min(h, w)
        x0 = int(rng.integers(0, w - cw + 1))
        y0 = int(rng.integers(0, h - ch + 1))
        pix = _resize(arr, (x0, y0, x0 + cw, y0 + ch), size)
        flipped = bool(rng.random() < 0.5)
        if flipped:
            pix = pix[:, ::-1]
        out.append(Crop(photo, (x0, y0, x0 + cw, y0 + ch), flipped, np.ascontiguousarray(pix)))
    return out


def imagenet_tensor(pixels: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> 3xHxW float32, (x/255 - mean) / std with the ImageNet statistics."""
    x = pixels.astype(np.float32) / 255.0
    x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def mtcnn_tensor(pixels: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> 3xHxW float32, (x - 127.5) * 0.0078125 as facenet-pytorch's detect_face does."""
    x = (pixels.astype(np.float32) - 127.5) * 0.0078125
    return np.ascontiguousarray(x.transpose(2, 0, 1))


# faces ------------------------------------------------------------------------------------------------------

# skimage.data.lfw_subset(): 200 25x25 grayscale patches from Labeled Faces in the Wild, 0-99 faces, 100-199 not
LFW_SPLITS: dict[str, tuple[range, range]] = {
    "calibration": (range(0, 30), range(100, 130)),
    "eval": (range(30, 60), range(130, 160)),
    "score": (range(60, 100), range(160, 200)),
}


@lru_cache(maxsize=1)
def _lfw() -> np.ndarray:
    import skimage.data as skd

    return (np.clip(skd.lfw_subset(), 0, 1) * 255).round().astype(np.uint8)


def lfw_patch(index: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """LFW patch `index` (RGB uint8), a random 22-25 px window of it resized to `size` x `size`."""
    patch = _lfw()[index]
    side = int(rng.integers(22, 26))
    x0 = int(rng.integers(0, 25 - side + 1))
    y0 = int(rng.integers(0, 25 - side + 1))
    rgb = np.repeat(patch[:, :, None], 3, axis=2)
    return _resize(rgb, (x0, y0, x0 + side, y0 + side), (size, size))


def paste_face(background: np.ndarray, index: int, rng: np.random.Generator,
               face_px: tuple[int, int] = (12, 36)) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Paste LFW face `index`, scaled to a random size, at a random place in `background`; returns its box."""
    h, w = background.shape[:2]
    s = int(rng.integers(face_px[0], min(face_px[1], h, w) + 1))
    face = lfw_patch(index, s, rng)
    x0 = int(rng.integers(0, w - s + 1))
    y0 = int(rng.integers(0, h - s + 1))
    out = background.copy()
    out[y0:y0 + s, x0:x0 + s] = face
    return out, (x0, y0, x0 + s, y0 + s)


# OpenCV-style resize (rapid-layout pre-processing uses cv2.resize, INTER_LINEAR, no antialiasing) -----------

def resize_linear(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """cv2.resize(img, (width, height)) with INTER_LINEAR semantics (half-pixel centres, edge clamp), float32."""
    src = img.astype(np.float32)
    h, w = src.shape[:2]

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (pos - i0).astype(np.float32)

    y0, y1, wy = axis(height, h)
    x0, x1, wx = axis(width, w)
    rows = src[y0] * (1 - wy)[:, None, None] + src[y1] * wy[:, None, None]
    return rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]
