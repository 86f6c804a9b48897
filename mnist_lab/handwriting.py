"""Your own handwriting, made to look like MNIST: read any image, preprocess, predict.

MNIST digits were made in a fixed way: dark ink on white paper was scanned, inverted
(white ink on black), the digit was scaled so that its longer side is 20 pixels
(keeping its aspect ratio, with anti-aliasing, hence the grey edges), and pasted into
a 28×28 frame so that its centre of mass sits at the centre, (14, 14) in pixel
indices. A network trained on MNIST expects exactly that, so `preprocess` repeats it
for a photo or drawing of your own:

1. **grey**: any image Pillow reads (PNG, JPEG, BMP, GIF, TIFF, WebP) to grey levels
   0-255; a transparent background is composited onto white paper, 16-bit images are
   scaled down to 8 bits, and a phone photo's EXIF rotation is applied;
2. **inverted**: when the border is light (paper), dark ink becomes light ink on
   black; the paper's grey level is subtracted and the ink stretched to full contrast;
3. **cropped**: to the bounding box of the ink (small specks of noise ignored);
4. **scaled**: longer side 20 pixels, aspect ratio kept, anti-aliased (a very thin
   pen stroke is first thickened to MNIST's stroke width, about 2 pixels);
5. **centred**: pasted into 28×28 with the centre of mass at (14, 14).

Bad input raises `ImageError` with what to do: a missing, empty or unreadable file, a
huge image (refused from its header, before decoding), an image with no ink, or one
that holds several digits side by side.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections import deque
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor, nn

from .data import NORMALIZATIONS, normalize
from .errors import ImageError, check_bool, check_choice, check_int
from .train import predict

ImageInput = str | os.PathLike | Image.Image | np.ndarray | Tensor  # what preprocess accepts

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
FORMATS = "PNG, JPEG, BMP, GIF, TIFF or WebP"
MAX_PIXELS = 40_000_000  # refuse larger images (a 40-megapixel photo is already far more than needed)
WORK_SIDE = 2048  # larger images are box-averaged down to this longer side first (saves memory)
ANALYSIS_SIDE = 256  # ink blobs are found on a copy with at most this longer side
DIGIT_SIDE = 20  # MNIST: the longer side of the digit
FRAME = 28  # MNIST: the frame the digit is centred in
CENTRE = 14.0  # MNIST: centre of mass at (14, 14), measured in pixel indices
MIN_CONTRAST = 24.0  # grey levels between paper and ink below which we see no ink
INK_LEVEL = 0.35  # a pixel is ink when it is this far from the paper towards the darkest ink
FLOOR_LEVEL = 0.2  # below this fraction of the ink contrast a pixel becomes background (0)
SPECK = 0.02  # blobs smaller than this fraction of the largest one are noise
MNIST_STROKE = 2.0  # median stroke width of MNIST digits, pixels (2 * area / edge count)
THIN_STROKE = 1.3  # strokes thinner than this at 20-pixel scale are thickened to MNIST_STROKE
STEP_NAMES = ("original", "grey", "inverted", "cropped", "thickened", "scaled", "centred")


# --- reading ----------------------------------------------------------------------


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


def _to_image(image_or_path: ImageInput) -> tuple[Image.Image, str]:
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
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
            raise ImageError(
                f"An image array must be (H, W) grey or (H, W, 3/4) colour; got shape {image_or_path.shape}."
            )
        if array.dtype not in (np.uint8, np.uint16):
            array = array.astype(np.uint8 if array.ndim == 3 else np.float32)
        return Image.fromarray(array), "the image"
    raise ImageError(
        f"Expected a file path, a PIL image, a NumPy array or a tensor; got {type(image_or_path).__name__}."
    )


# --- grey levels and ink ----------------------------------------------------------


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


def _block_reduce(array: np.ndarray, factor: int, how: str) -> np.ndarray:
    """Shrink by an integer factor: mean (anti-aliased) or max (keeps thin strokes) of each block."""
    if factor <= 1:
        return array
    h, w = array.shape
    ph, pw = -h % factor, -w % factor
    padded = np.pad(array, ((0, ph), (0, pw)), mode="edge" if how == "mean" else "constant")
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    return blocks.mean(axis=(1, 3)) if how == "mean" else blocks.max(axis=(1, 3))


def _border(grey: np.ndarray) -> np.ndarray:
    band = max(1, round(0.02 * min(grey.shape)))
    return np.concatenate([grey[:band].ravel(), grey[-band:].ravel(), grey[:, :band].ravel(), grey[:, -band:].ravel()])


def _components(mask: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """8-connected blobs of a small boolean mask: (area, top, bottom, left, right) each."""
    seen = np.zeros(mask.shape, dtype=bool)
    h, w = mask.shape
    blobs = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        queue = deque([(y0, x0)])
        area, top, bottom, left, right = 0, y0, y0, x0, x0
        while queue:
            y, x = queue.popleft()
            area += 1
            top, bottom, left, right = min(top, y), max(bottom, y), min(left, x), max(right, x)
            for ny in (y - 1, y, y + 1):
                for nx in (x - 1, x, x + 1):
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        blobs.append((area, int(top), int(bottom), int(left), int(right)))
    return blobs


def _digit_box(mask: np.ndarray, name: str) -> tuple[int, int, int, int]:
    """Rows/columns (top, bottom, left, right; inclusive) of the one digit in an ink mask.

    Blobs much smaller than the largest are noise. Blobs whose columns overlap belong
    to one digit (a 4 or a 5 may be written in two strokes); groups separated by
    empty columns and of comparable size are separate digits, which we refuse.
    """
    blobs = _components(mask)
    largest = max(area for area, *_ in blobs)
    kept = sorted((b for b in blobs if b[0] >= SPECK * largest), key=lambda b: b[3])
    groups: list[list[int]] = []  # [area, top, bottom, left, right] per column group
    for area, top, bottom, left, right in kept:
        if groups and left <= groups[-1][4] + 1:  # no empty column in between: same group
            g = groups[-1]
            g[0] += area
            g[1], g[2], g[4] = min(g[1], top), max(g[2], bottom), max(g[4], right)
        else:
            groups.append([area, top, bottom, left, right])
    tallest = max(g[2] - g[1] + 1 for g in groups)
    biggest = max(g[0] for g in groups)
    digits = [g for g in groups if g[2] - g[1] + 1 >= 0.5 * tallest and g[0] >= 0.15 * biggest]
    if len(digits) > 1:
        raise ImageError(
            f"{name} looks like {len(digits)} digits side by side; the network reads one digit at a time. "
            "Crop one digit per image (or draw each digit in its own file) and try again."
        )
    _, top, bottom, left, right = max(groups, key=lambda g: g[0])
    return top, bottom, left, right


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels: 2 * area / number of ink-paper edges (a w×L stroke has ~2L)."""
    area = mask.sum()
    edges = (mask[1:] != mask[:-1]).sum() + (mask[:, 1:] != mask[:, :-1]).sum()
    edges += mask[0].sum() + mask[-1].sum() + mask[:, 0].sum() + mask[:, -1].sum()
    return 2.0 * float(area) / max(1, int(edges))


def _dilate(image: np.ndarray, radius: int) -> np.ndarray:
    """Grey-level dilation by `radius` pixels (alternating cross and square steps, a rough disc)."""
    out = np.pad(image, radius)
    for step in range(radius):
        p = np.pad(out, 1)
        shifted = [p[1:-1, :-2], p[1:-1, 2:], p[:-2, 1:-1], p[2:, 1:-1]]
        if step % 2:
            shifted += [p[:-2, :-2], p[:-2, 2:], p[2:, :-2], p[2:, 2:]]
        out = np.maximum.reduce([out, *shifted])
    return out


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    # Pillow's Lanczos widens its kernel when shrinking, so this is anti-aliased.
    resized = Image.fromarray(image.astype(np.float32), mode="F").resize((width, height), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0, 255)


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    total = image.sum()
    rows, cols = np.arange(image.shape[0]), np.arange(image.shape[1])
    return float(image.sum(axis=1) @ rows / total), float(image.sum(axis=0) @ cols / total)


def _display(image: Image.Image, grey: np.ndarray) -> np.ndarray:
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


# --- the pipeline -----------------------------------------------------------------


def preprocess(
    image_or_path: ImageInput,
    normalization: str = "standard",
    return_steps: bool = False,
    thicken: bool = True,
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, dict[str, np.ndarray]]:
    """Turn a photo or drawing of one digit into an MNIST-style digit.

    `image_or_path` is a file path, a PIL image, a NumPy array or a tensor. Returns
    ``(x, image)``: ``x`` float32 ``(1, 1, 28, 28)`` normalised as `normalization`
    (one of ``unit``, ``half``, ``standard``; use the model's ``RECIPE.normalize``)
    and ``image`` uint8 ``(28, 28)`` (light digit on black, like `load_mnist`). With
    `return_steps`, also a dict of the intermediate images (uint8 NumPy arrays) named
    as in `STEP_NAMES` (``thickened`` only when a thin stroke was thickened); draw it
    with `plot_preprocessing_steps`. `thicken=False` skips the thickening.
    Raises `ImageError` for an image with no ink or with several digits.
    """
    check_choice("normalization", normalization, NORMALIZATIONS)
    check_bool("return_steps", return_steps)
    check_bool("thicken", thicken)
    image, name = _to_image(image_or_path)
    grey = grey_levels(image)  # (H, W), 0 = black
    steps: dict[str, np.ndarray] = {}
    if return_steps:
        steps["original"] = _display(image, grey)
    if max(grey.shape) > WORK_SIDE:
        grey = _block_reduce(grey, math.ceil(max(grey.shape) / WORK_SIDE), "mean")
    if return_steps:
        steps["grey"] = np.rint(grey).astype(np.uint8)

    lightest, darkest = float(grey.max()), float(grey.min())
    if lightest - darkest < 1:
        raise ImageError(
            f"No ink found: {name} is one flat colour (every pixel is grey level {darkest:.0f} of 255). "
            "Photograph or draw a dark digit on light paper (or a light digit on a dark background)."
        )
    paper = float(np.median(_border(grey)))
    # Light paper: ink is dark, so flip it; then ink is bright on a dark background, as in MNIST.
    ink = (255.0 - grey if paper > 127.5 else grey) - (255.0 - paper if paper > 127.5 else paper)
    contrast = float(ink.max())
    if contrast < MIN_CONTRAST:
        raise ImageError(
            f"No ink found: in {name} the darkest mark differs from the paper by only {contrast:.0f} grey "
            "levels of 255. Use a thick dark pen on plain paper, in good light, and check the right file."
        )
    mask = ink > INK_LEVEL * contrast  # (H, W) bool: ink pixels

    # Find the digit on a small copy; block-max keeps even a one-pixel stroke.
    factor = max(1, math.ceil(max(mask.shape) / ANALYSIS_SIDE))
    top, bottom, left, right = _digit_box(_block_reduce(mask, factor, "max"), name)
    region = mask[top * factor : (bottom + 1) * factor, left * factor : (right + 1) * factor]
    rows, cols = np.nonzero(region.any(axis=1))[0], np.nonzero(region.any(axis=0))[0]
    top, bottom = top * factor + rows[0], top * factor + rows[-1]  # the tight box, full resolution
    left, right = left * factor + cols[0], left * factor + cols[-1]
    box = (slice(top, bottom + 1), slice(left, right + 1))

    # Paper -> 0, the typical ink level -> 255, a linear ramp in between (keeps anti-aliasing).
    floor = FLOOR_LEVEL * contrast
    full = max(float(np.median(ink[box][mask[box]])), floor + 1.0)
    clean = np.clip((ink - floor) / (full - floor), 0.0, 1.0) * 255.0
    crop = clean[box]  # (h, w)
    if return_steps:
        steps["inverted"] = np.rint(clean).astype(np.uint8)
        steps["cropped"] = np.rint(crop).astype(np.uint8)

    scale = DIGIT_SIDE / max(crop.shape)
    if thicken and _stroke_width(crop > 127.5) * scale < THIN_STROKE:
        crop = _thicken(crop)
        if return_steps:
            steps["thickened"] = np.rint(crop).astype(np.uint8)
        scale = DIGIT_SIDE / max(crop.shape)
    height = max(1, min(DIGIT_SIDE, round(crop.shape[0] * scale)))
    width = max(1, min(DIGIT_SIDE, round(crop.shape[1] * scale)))
    small = _resize(crop, height, width)  # (h', w'), longer side 20
    if small.max() > 0:
        small *= 255.0 / small.max()
    if return_steps:
        steps["scaled"] = np.rint(small).astype(np.uint8)

    # Integer shift so that the centre of mass lands on (14, 14), as MNIST did; clamped so
    # the digit stays inside the frame (only an extremely lopsided shape needs that).
    cy, cx = _centre_of_mass(small)
    y0 = min(max(round(CENTRE - cy), 0), FRAME - height)
    x0 = min(max(round(CENTRE - cx), 0), FRAME - width)
    frame = np.zeros((FRAME, FRAME), dtype=np.float32)
    frame[y0 : y0 + height, x0 : x0 + width] = small
    digit = torch.from_numpy(np.rint(frame).astype(np.uint8))  # (28, 28) uint8
    x = normalize(digit.unsqueeze(0), normalization)  # (1, 1, 28, 28) float32
    if return_steps:
        steps["centred"] = digit.numpy().copy()
        return x, digit, steps
    return x, digit


def _thicken(crop: np.ndarray) -> np.ndarray:
    """Thicken thin strokes to MNIST's width, working at 4× the final scale.

    The crop is first shrunk by block-max (a thin line stays a full-strength line one
    block wide), then dilated until the strokes are `MNIST_STROKE` pixels wide at the
    final 20-pixel scale.
    """
    work_side = 4 * DIGIT_SIDE
    factor = max(1, max(crop.shape) // work_side)
    work = _block_reduce(crop, factor, "max")
    width = _stroke_width(work > 127.5)  # in work pixels
    target = MNIST_STROKE * max(work.shape) / DIGIT_SIDE
    radius = max(1, round((target - width) / 2))
    # Dilating grows the box by `radius` on each side; aim for the target at the grown size.
    target = MNIST_STROKE * (max(work.shape) + 2 * radius) / DIGIT_SIDE
    radius = max(1, round((target - width) / 2))
    return _dilate(work, radius)


# --- predicting -------------------------------------------------------------------


def predict_digit(model: nn.Module, image_or_path: ImageInput, k: int = 3) -> list[tuple[int, float]]:
    """The `k` most likely digits for your image, best first: ``[(digit, probability), ...]``.

    The image is preprocessed as MNIST was, then normalised with the model's own
    recipe (``model.RECIPE.normalize``), so any model of the series can be used.
    """
    check_int("k", k, minimum=1)
    _, digit = preprocess(image_or_path)
    probs, classes = predict(model, digit, k=k)  # uint8 in: normalised by the model's recipe
    return [(int(c), float(p)) for c, p in zip(classes[0], probs[0])]


def sample_paths() -> list[Path]:
    """The digit images shipped with the package (``mnist_lab/samples/digit_<d>.png``), sorted."""
    paths = sorted(SAMPLES_DIR.glob("digit_*.png"))
    if not paths:
        raise ImageError(
            f"No sample images in {SAMPLES_DIR}. Reinstall the package (pip install -e .) "
            "or run scripts/make_samples.py to draw them."
        )
    return paths


def sample_label(path: str | os.PathLike[str]) -> int:
    """The digit a sample file shows, read from its name ``digit_<d>...``."""
    match = re.match(r"digit_(\d)", Path(path).name)
    if match is None:
        raise ImageError(f"{Path(path).name!r} is not named digit_<d>.png, so its true digit is unknown.")
    return int(match.group(1))


# --- pictures ---------------------------------------------------------------------


def plot_preprocessing_steps(steps: dict[str, np.ndarray], title: str | None = None) -> Figure:
    """The steps of `preprocess` side by side, each with its size; the last marks (14, 14)."""
    names = [name for name in STEP_NAMES if name in steps] + [n for n in steps if n not in STEP_NAMES]
    fig, axes = plt.subplots(1, len(names), figsize=(2.3 * len(names), 2.9), squeeze=False)
    for i, (ax, name) in enumerate(zip(axes[0], names)):
        picture = steps[name]
        ax.imshow(picture, cmap=None if picture.ndim == 3 else "gray", vmin=0, vmax=255)
        ax.set_title(f"{i + 1}. {name}\n{picture.shape[1]}×{picture.shape[0]}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if name == "centred":
            cy, cx = _centre_of_mass(picture.astype(np.float64))
            ax.plot([CENTRE], [CENTRE], "r+", markersize=12, label="(14, 14)")
            ax.plot([cx], [cy], "c.", markersize=6, label="centre of mass")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_digit_predictions(
    originals: list[np.ndarray],
    digits: list[np.ndarray | Tensor],
    predictions: list[list[tuple[int, float]]],
    labels: list[int | None] | None = None,
) -> Figure:
    """One column per image: the original above, the 28×28 digit below, titled with the top-k.

    `predictions` holds `predict_digit`'s lists; with `labels`, a wrong top guess is red.
    """
    n = len(digits)
    labels = labels if labels is not None else [None] * n
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n + 0.4, 4.0), squeeze=False)
    for j in range(n):
        top, bottom = axes[0, j], axes[1, j]
        original = originals[j]
        top.imshow(original, cmap=None if original.ndim == 3 else "gray", vmin=0, vmax=255)
        digit = digits[j].numpy() if isinstance(digits[j], Tensor) else digits[j]
        bottom.imshow(digit, cmap="gray", vmin=0, vmax=255)
        guesses = predictions[j]
        wrong = labels[j] is not None and guesses[0][0] != labels[j]
        head = f"true {labels[j]}\n" if labels[j] is not None else ""
        top.set_title(f"{head}guess {guesses[0][0]}", fontsize=10, color="red" if wrong else "black")
        text = "\n".join(f"{d}: {p:.2f}" for d, p in guesses)
        bottom.text(0.5, -0.06, text, transform=bottom.transAxes, ha="center", va="top", fontsize=8)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig
