"""Reading your image: any file, PIL image, array or tensor to grey levels 0-255.

`load_image` checks a file before decoding it (exists, not empty, an image, not
huge) and applies a phone photo's EXIF rotation; `grey_levels` turns any Pillow
mode into grey levels, compositing transparency onto white paper.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from ..errors import ImageError

ImageInput = str | os.PathLike | Image.Image | np.ndarray | Tensor  # what preprocess accepts

FORMATS = "PNG, JPEG, BMP, GIF, TIFF or WebP"
MAX_PIXELS = 40_000_000  # refuse larger images (a 40-megapixel photo is already far more than needed)


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file after checking it: exists, not empty, an image, not huge.

    The size is read from the header and checked against `MAX_PIXELS` *before* the
    pixels are decoded (a small file can declare a gigantic image: Pillow's own
    "decompression bomb" guard only warns below about 89 megapixels). A phone photo's
    EXIF rotation is applied. Returns a decoded PIL image; raises `ImageError`.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ImageError(
            f"No image file at {str(path)!r} (a relative path starts from the working directory, "
            f"{Path.cwd()}). Check the spelling and the folder, or give the full path."
        )
    if path.is_dir():
        raise ImageError(f"{str(path)!r} is a folder, not an image file. Give the path of one {FORMATS} file.")
    if path.stat().st_size == 0:
        raise ImageError(f"{str(path)!r} is empty (0 bytes): it holds no image. Save or copy the image again.")
    with warnings.catch_warnings():
        # Our own limit below is stricter than Pillow's warning; turn its error into ours.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except Image.DecompressionBombError as exc:
            raise _huge_error(path, None) from exc
        except UnidentifiedImageError as exc:
            raise ImageError(
                f"{str(path)!r} is not an image that Pillow can read (its bytes are not a known image "
                f"format, whatever its name ends with). Save your digit as a {FORMATS} file."
            ) from exc
        except OSError as exc:
            raise ImageError(f"{str(path)!r} could not be opened: {exc}. Check that you may read it.") from exc
    with image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise _huge_error(path, (width, height))
        frames = getattr(image, "n_frames", 1)
        if frames > 1:
            raise ImageError(
                f"{str(path)!r} is an animation of {frames} frames; one digit needs one picture. Save the "
                f"frame that shows your digit as a {FORMATS} file and use that."
            )
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(
                f"{str(path)!r} looks like a {image.format} image but its data could not be decoded "
                f"({exc}); the file is probably truncated or damaged. Save it again as {FORMATS}."
            ) from exc
        try:
            return ImageOps.exif_transpose(image)  # a copy, turned upright
        except Exception:  # a damaged EXIF block: the pixels are still fine
            return image.copy()


def _huge_error(path: Path, size: tuple[int, int] | None) -> ImageError:
    what = f"{size[0]}×{size[1]} = {size[0] * size[1] / 1e6:.0f} megapixels" if size else "gigantic"
    return ImageError(
        f"{str(path)!r} is {what}, more than the {MAX_PIXELS / 1e6:.0f}-megapixel limit; it was "
        "refused from its header, before decoding (Pillow's decompression-bomb guard exists because "
        "a small file can declare a huge image). A digit needs far fewer pixels: crop the photo "
        "around the digit or shrink it (e.g. to 1000 pixels wide) and try again."
    )


def to_image(image_or_path: ImageInput) -> tuple[Image.Image, str]:
    """Any accepted input -> (PIL image, a name for messages)."""
    if isinstance(image_or_path, (str, os.PathLike)):
        return load_image(image_or_path), repr(str(image_or_path))
    if isinstance(image_or_path, Image.Image):
        return image_or_path, "the image"
    if isinstance(image_or_path, Tensor):
        image_or_path = image_or_path.detach().cpu().numpy()
    if isinstance(image_or_path, np.ndarray):
        array = np.squeeze(image_or_path)
        if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
            array = np.moveaxis(array, 0, -1)  # channels first (C, H, W) -> (H, W, C)
        if array.size == 0 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
            raise ImageError(
                f"An image array must be (H, W) grey or (H, W, 3/4) colour with at least one pixel; "
                f"got shape {image_or_path.shape}."
            )
        return Image.fromarray(_as_uint8(array)), "the image"
    raise ImageError(
        f"Expected a file path, a PIL image, a NumPy array or a tensor; got {type(image_or_path).__name__}."
    )


def _as_uint8(array: np.ndarray) -> np.ndarray:
    """Pixel values of any numeric array as uint8 0-255, or an `ImageError` saying why they cannot be pixels.

    Floats in [0, 1] (``plt.imread``) are scaled by 255, floats or integers up to 255 kept,
    16-bit values (up to 65535) divided by 257. NaN or infinite values, and negative ones
    (an image already normalised for a model), are refused: they are not grey levels.
    """
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    values = array.astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        raise ImageError(
            f"The image array holds {int(bad.sum())} NaN or infinite value(s): those are not grey levels. "
            "Pass the picture's pixels (0-255, or 0-1 as floats)."
        )
    low, high = float(values.min()), float(values.max())
    if low < 0:
        raise ImageError(
            f"The image array has values from {low:.3g} to {high:.3g}: negative values are not grey levels, so it "
            "looks already normalised for a model. Pass the picture itself (0-255, or 0-1 as floats); "
            "preprocess normalises it."
        )
    if high > 65535:
        raise ImageError(f"The image array's values reach {high:.3g}, beyond 16-bit pixels (65535).")
    if np.issubdtype(array.dtype, np.floating) and high <= 1.0:
        values = values * 255.0  # floats in [0, 1], as plt.imread gives
    elif high > 255:
        values = values / 257.0  # 16-bit pixels: 65535 -> 255
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def grey_levels(image: Image.Image) -> np.ndarray:
    """A PIL image in any mode -> float32 ``(H, W)`` grey levels, 0 (black) to 255 (white).

    Transparent pixels show the white paper behind them (a drawing exported with a
    transparent background is dark ink on white). 16-bit images are divided by 257
    (65535 -> 255); 32-bit integer and float images are scaled by their range.
    """
    mode = image.mode
    if mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float32) / 257.0
    if mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = float(values.max()) if values.size else 0.0
        if mode == "F" and top <= 1.0:
            values = values * 255.0  # floats in [0, 1]
        elif top > 65535:
            values = values * (255.0 / top)
        elif top > 255:
            values = values / 257.0  # 16-bit data in a 32-bit image
        return np.clip(values, 0, 255).astype(np.float32)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        grey = np.asarray(Image.alpha_composite(paper, rgba).convert("L"), dtype=np.float32)
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32)
        if np.ptp(grey) < 1 and np.ptp(alpha) >= 1:
            # Light (or white) ink on a transparent background: the alpha channel is the drawing.
            grey = 255.0 - alpha
        return grey
    if mode not in ("L", "1"):
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.float32)


def block_reduce(array: np.ndarray, factor: int, how: str) -> np.ndarray:
    """Shrink by an integer factor: mean (anti-aliased) or max (keeps thin strokes) of each block."""
    if factor <= 1:
        return array
    h, w = array.shape
    ph, pw = -h % factor, -w % factor
    padded = np.pad(array, ((0, ph), (0, pw)), mode="edge" if how == "mean" else "constant")
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    return blocks.mean(axis=(1, 3)) if how == "mean" else blocks.max(axis=(1, 3))


def display_copy(image: Image.Image, grey: np.ndarray) -> np.ndarray:
    """A small copy of the original for the step-by-step picture."""
    if image.mode in ("RGB", "RGBA", "L"):
        shown = image.copy()
    elif image.mode in ("LA", "PA", "P", "La", "RGBa"):
        shown = image.convert("RGBA")
    elif image.mode in ("CMYK", "YCbCr", "HSV", "LAB", "1"):
        shown = image.convert("RGB")
    else:  # 16-bit and float images: their grey levels
        shown = Image.fromarray(np.rint(grey).astype(np.uint8))
    shown.thumbnail((800, 800))
    return np.asarray(shown)
