"""From a photo or drawing of one digit to an MNIST digit, or an honest refusal.

MNIST digits are dark ink on white paper, scanned and inverted (white on black), scaled
so that the longer side is 20 pixels (aspect kept, anti-aliased) and pasted into 28×28
with the centre of mass at (14, 14). A phone photo adds uneven light, a shadow, the desk
around the sheet, ruled or squared paper, sensor noise and JPEG blocks. `preprocess`
first turns the photo into a clean map of ink, then repeats MNIST's steps (the names of
`PREPROCESS_STEPS`):

1. **grey**: grey levels 0-255, the longer side shrunk to at most `WORK_SIDE`;
2. **background**: the sheet (a desk along the frame is masked out, `find_paper`), the
   polarity (`paper_is_light`) and the paper's own brightness under the ink
   (`estimate_background`), so shadows and uneven light are kept and ink is not;
3. **flattened**: how much darker than its background each pixel is (0 = paper,
   1 = black ink), so a digit in a shadow is as strong as one in full light;
4. **cleaned**: speckle (3×3 median) and ruled or squared lines (`remove_lines`) removed,
   what lies outside the paper dropped;
5. **cropped**: to the ink, by a two-level (hysteresis) threshold from the ink's contrast
   and the noise, ignoring specks, blobs at the picture's border and ink on the sheet's
   edge next to a desk (`paper_border`);
6. **thickened** (only a very thin pen), **scaled** (longer side 20), **centred**
   (centre of mass at (14, 14) of 28×28), then normalised as the model was trained.

When the picture does not look like one digit on paper (no ink, only noise, several
digits, ink touching the edge, a "digit" that is most of the picture or too small to
read), `preprocess` raises `ImageError` saying what it saw and what to do, instead of
guessing; the error carries the steps computed so far (``error.steps``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch import Tensor

from ..data import NORMALIZATIONS
from ..data import normalize as normalize_images
from ..errors import ImageError, check_bool, check_choice
from .reading import ImageInput, block_reduce, display_copy, grey_levels, to_image

WORK_SIDE = 640  # the photo is box-averaged down to this longer side (a digit needs no more)
BACKGROUND_SIDE = 128  # the background and the paper are estimated on a copy this small
CLOSING = 0.15  # the closing erases dark strokes narrower than this fraction of the picture
PAPER_CLOSING = 0.04  # the paper is found after a lighter closing (a strip of desk must survive it)
EDGE_STEP = 0.12  # log brightness changing this fast (per small pixel) is an edge: a shadow's slope is gentler
SHEET_MIN = 0.15  # a sheet of paper covers at least this fraction of the picture
DESK_BORDER = 0.25  # a desk shows along at least this fraction of the picture's border
DESK_RATIO = 0.8  # ...and next to the sheet is at most this fraction of the paper's brightness
DESK_REACH = 0.05  # paper and desk are compared within this fraction of the picture of the sheet's border
LINE_ANGLES = np.radians(np.arange(-9.0, 9.01, 1.5))  # slopes tried for ruled and squared lines
LINE_TOLERANCE = 3  # a line may wander this many pixels (half-size copy) across its width (rotation, perspective)
LINE_LENGTH = 0.6  # lines are straight runs at least this fraction of the paper's width (or height)
LINE_WIDTH = 7  # only marks thinner than this (pixels at WORK_SIDE) can be lines; pen strokes are thicker
MIN_CONTRAST = 12.0  # grey levels between paper and ink below which we see no ink
NOISE_SIGMAS = 6.0  # the ink must stand this many noise standard deviations above the paper
LOW, HIGH = 0.3, 0.6  # hysteresis: ink pixels above LOW×contrast, connected to one above HIGH×contrast
FLOOR_LEVEL = 0.2  # below this fraction of the ink contrast a pixel becomes background (0)
SPECK = 0.02  # blobs smaller than this fraction of the largest one are noise
EDGE_BLOB = 0.15  # a blob touching the picture's edge and larger than this (of a side) is not the digit
SHEET_EDGE = 3  # pixels (at WORK_SIDE): ink this close to the desk is the sheet's edge, not the digit
MOST_OF_IMAGE = 0.75  # a "digit" whose box covers more than this fraction of the picture is refused
MIN_DIGIT = 10  # pixels (at the working size): a smaller "digit" is refused as unreadable
DIGIT_SIDE = 20  # MNIST: the longer side of the digit
FRAME = 28  # MNIST: the frame the digit is centred in
CENTRE = 14.0  # MNIST: centre of mass at (14, 14), measured in pixel indices
MNIST_STROKE = 2.0  # median stroke width of MNIST digits, pixels (2 * area / edge count)
THIN_STROKE = 1.3  # strokes thinner than this at 20-pixel scale are thickened to MNIST_STROKE
PREPROCESS_STEPS = (
    "original",
    "grey",
    "background",
    "flattened",
    "cleaned",
    "cropped",
    "thickened",
    "scaled",
    "centred",
)

Steps = dict[str, np.ndarray]


def _refuse(message: str, steps: Steps) -> ImageError:
    """An ImageError that carries the steps computed so far (for the steps figure)."""
    error = ImageError(message)
    error.steps = steps
    return error


def _as_uint8(values: np.ndarray, scale: float = 1.0) -> np.ndarray:
    return np.rint(np.clip(values * scale, 0, 255)).astype(np.uint8)


# --- the paper, polarity and background --------------------------------------------


def _odd(n: float) -> int:
    return max(3, int(round(n)) // 2 * 2 + 1)


def _small_copy(grey: np.ndarray) -> np.ndarray:
    """A box-averaged copy at most `BACKGROUND_SIDE` on its longer side: ``(h, w)`` float32."""
    factor = max(1, math.ceil(max(grey.shape) / BACKGROUND_SIDE))
    return block_reduce(grey.astype(np.float32), factor, "mean")


def _resize(image: np.ndarray, shape: tuple[int, int], resample=Image.Resampling.BILINEAR) -> np.ndarray:
    """`image` resized to ``shape`` (h, w), float32 (Pillow's Lanczos widens its kernel when shrinking: smooth)."""
    resized = Image.fromarray(image.astype(np.float32), mode="F").resize(shape[::-1], resample)
    return np.asarray(resized, dtype=np.float32)


def find_paper(grey: np.ndarray) -> np.ndarray:
    """The sheet of paper, ``(H, W)`` bool: True everywhere unless a desk shows around the sheet.

    A shadow scales paper and desk alike, so in *log* brightness it is a gentle slope
    while the sheet's border is a step, log(paper / desk), however dark the shadow. A
    small copy is cut into regions along steep log edges (`_edge_regions`); the sheet is
    the brightest region covering `SHEET_MIN` of the picture; regions along the frame
    darker than the sheet next to them are desk (`_desk`), which must run along
    `DESK_BORDER` of the frame. Everything else (ink, a part of the sheet cut off by a
    stroke) is paper.
    """
    whole = np.ones(grey.shape, dtype=bool)
    small = _small_copy(grey)
    if min(small.shape) < 3:
        return whole  # too small to hold a sheet and a desk
    log, regions = _edge_regions(small)
    index = np.arange(1, regions.max() + 1)
    areas = ndimage.sum_labels(np.ones_like(log), regions, index=index)
    large = index[areas >= SHEET_MIN * log.size]
    if large.size == 0:
        return whole
    sheet = regions == large[np.argmax(ndimage.median(log, regions, index=large))]
    desk = _desk(log, regions, sheet)
    if np.concatenate([desk[0], desk[-1], desk[:, 0], desk[:, -1]]).mean() < DESK_BORDER:
        return whole  # no desk along the frame
    # The edge between sheet and desk is a band about 4 small pixels wide: keep clear of it.
    paper = ~ndimage.binary_dilation(desk, iterations=4)
    return _resize(paper, grey.shape) > 0.5


def _edge_regions(small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log brightness, regions) of a small copy ``(h, w)``: regions labelled 1.. between steep edges, 0 on them.

    A light closing by `PAPER_CLOSING` first erases most pen strokes and ruled lines
    (not a strip of desk); an edge is where log brightness changes by more than
    `EDGE_STEP` per pixel, widened by a pixel to close gaps.
    """
    size = _odd(PAPER_CLOSING * max(small.shape))
    # Beyond the frame counts as dark, so that a strip of desk along it, however thin, is not closed.
    closed = ndimage.grey_closing(np.pad(small, size), size=(size, size), mode="nearest")[size:-size, size:-size]
    log = np.log1p(closed)  # (h, w)
    steep = np.hypot(*np.gradient(log)) > EDGE_STEP  # (h, w): a step in brightness, not a slope
    regions, _ = ndimage.label(~ndimage.binary_dilation(steep))
    return log, regions


def _desk(log: np.ndarray, regions: np.ndarray, sheet: np.ndarray) -> np.ndarray:
    """The regions along the frame darker than the sheet next to them by `DESK_RATIO`: ``(h, w)`` bool.

    Compared just across the edge, where a shadow darkens paper and desk alike.
    """
    reach = max(2, round(DESK_REACH * max(log.shape)))
    near_sheet = ndimage.binary_dilation(sheet, iterations=reach)
    frame = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    desk = np.zeros(log.shape, dtype=bool)
    for label in frame[(frame > 0) & (frame != regions[sheet][0])]:
        region = regions == label
        outer = region & near_sheet  # the region next to the sheet...
        inner = sheet & ndimage.binary_dilation(region, iterations=reach)  # ...and the sheet next to it
        if outer.any() and inner.any() and np.median(log[inner]) - np.median(log[outer]) >= -math.log(DESK_RATIO):
            desk |= region
    return desk


def paper_is_light(grey: np.ndarray, paper: np.ndarray | None = None) -> bool:
    """Dark ink on light paper (True) or light ink on a dark background (False)?

    The local majority (median over 40 % of the picture) is paper; the ink's side is the
    one with the larger strong deviations from it (99.9th percentile: a digit covers more
    than 0.1 % of the paper). Judged on the `paper` (bool ``(H, W)``, default everywhere)
    only: a desk takes the value of the nearest paper, else a lit corner of the sheet
    would stand out from the dark desk like light ink. In log brightness, so that a
    shadow weakens neither side.
    """
    small = _small_copy(grey)
    log = np.log1p(small)  # (h, w)
    inside = np.ones(small.shape, dtype=bool)
    if paper is not None and not paper.all():
        inside = _small_copy(paper) > 0.99  # (h, w): wholly paper
        if inside.any():
            nearest = ndimage.distance_transform_edt(~inside, return_distances=False, return_indices=True)
            log = log[tuple(nearest)]  # the desk takes the value of the nearest paper
        else:
            inside[:] = True
    local = ndimage.median_filter(log, size=_odd(0.4 * max(small.shape)), mode="nearest")
    darker = float(np.percentile((local - log)[inside], 99.9))
    lighter = float(np.percentile((log - local)[inside], 99.9))
    return darker >= lighter


def estimate_background(grey: np.ndarray) -> np.ndarray:
    """The paper's brightness under the ink, ``(H, W)`` float32, of light paper with dark ink.

    A grey closing of a small copy: strokes narrower than `CLOSING` of the picture
    vanish, light gradients and shadows stay. Smoothed and scaled back up.
    """
    small = _small_copy(grey)  # (h, w), at most 128 on a side
    size = _odd(CLOSING * max(small.shape))
    closed = ndimage.grey_closing(small, size=(size, size))
    smooth = ndimage.uniform_filter(closed, size=3, mode="nearest")
    return np.maximum(_resize(smooth, grey.shape), 1.0)


# --- lines and speckle ------------------------------------------------------------


def _shear_rows(image: np.ndarray, slope: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Shift each column so that lines of `slope` (rows per column) become horizontal."""
    h, w = image.shape
    shifts = np.rint(slope * (np.arange(w) - w / 2)).astype(int)  # (w,)
    pad = int(np.abs(shifts).max())
    rows = np.arange(h)[:, None] + pad + shifts[None, :]  # (h, w) row of each output pixel in the padded image
    return np.pad(image, ((pad, pad), (0, 0)))[rows, np.arange(w)[None, :]], rows, pad


def horizontal_lines(ink: np.ndarray, length: int) -> np.ndarray:
    """Where `ink` lies on straight, nearly horizontal lines at least `length` long: ``(H, W)``.

    For each slope in `LINE_ANGLES`: shear the lines level, open along the rows with a
    `length`-long segment (only runs that long survive: a digit's strokes are shorter),
    shear back. The ink is first thickened by `LINE_TOLERANCE` rows so that a line may
    wander a little (a vertical maximum commutes with the shear's column shifts).
    """
    h, w = ink.shape
    thick = ndimage.maximum_filter1d(ink.astype(np.float32), LINE_TOLERANCE, axis=0)
    lines = np.zeros((h, w), dtype=np.float32)
    for angle in LINE_ANGLES:
        sheared, rows, pad = _shear_rows(thick, math.tan(angle))
        opened = ndimage.maximum_filter1d(ndimage.minimum_filter1d(sheared, length, axis=1), length, axis=1)
        back = np.zeros((h + 2 * pad, w), dtype=np.float32)
        back[rows, np.arange(w)[None, :]] = opened
        lines = np.maximum(lines, back[pad : pad + h])
    return lines


def remove_lines(ink: np.ndarray, paper: np.ndarray) -> np.ndarray:
    """`ink` with ruled and squared lines subtracted (horizontal and vertical ones).

    A line is found wherever ink runs straight and long (any ink: a line crossing a
    stroke is not interrupted by it), but only the *thin* part of the ink is taken
    away (a white top-hat, ink minus its opening by a `LINE_WIDTH` square), so a pen
    stroke crossing a line, or a long stroke, is left whole.
    """
    rows, cols = np.nonzero(paper)
    height = rows.max() - rows.min() + 1 if rows.size else ink.shape[0]
    width = cols.max() - cols.min() + 1 if cols.size else ink.shape[1]
    # Lines are searched on a half-size copy (block maximum keeps a one-pixel line whole): 4× faster.
    half = block_reduce(ink, 2, "max")
    across = horizontal_lines(half, max(3, int(LINE_LENGTH * width / 2)))
    down = horizontal_lines(half.T.copy(), max(3, int(LINE_LENGTH * height / 2))).T
    lines = np.repeat(np.repeat(np.maximum(across, down), 2, axis=0), 2, axis=1)[: ink.shape[0], : ink.shape[1]]
    thin = ink - ndimage.grey_opening(ink, size=(LINE_WIDTH, LINE_WIDTH))
    return np.clip(ink - np.minimum(lines, thin), 0.0, 1.0)


def noise_level(values: np.ndarray) -> float:
    """Robust standard deviation (1.4826 × median absolute deviation): ink barely moves it."""
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


# --- finding the one digit --------------------------------------------------------


def paper_border(paper: np.ndarray) -> np.ndarray:
    """The sheet's own edge, ``(H, W)`` bool: paper pixels within `SHEET_EDGE` pixels of the desk.

    Empty when the whole picture is paper. The desk mask, found on a small copy, misses
    slivers of the border's bright-to-dark step (most at a slanted border's corners) that
    look like ink; ink written on the sheet does not reach its very edge.
    """
    desk = ~paper
    if not desk.any():
        return np.zeros(paper.shape, dtype=bool)
    return paper & ndimage.binary_dilation(desk, structure=np.ones((3, 3)), iterations=SHEET_EDGE)


def _digit_mask(
    ink: np.ndarray, contrast: float, noise: float, name: str, steps: Steps, paper: np.ndarray
) -> np.ndarray:
    """The pixels of the one digit in the cleaned ink map, or a refusal.

    Blobs touching the picture's edge (when large) or the sheet's edge next to a desk
    (`paper_border`, any size) are not the digit; they only matter for the refusals.
    """
    low = max(LOW * contrast, 3.0 * noise)
    high = max(HIGH * contrast, 5.0 * noise)
    labels, count = ndimage.label(ink > low, structure=np.ones((3, 3)))  # 8-connected blobs
    strong = np.unique(labels[(ink > high) & (labels > 0)])
    boxes = ndimage.find_objects(labels)
    index = np.arange(1, count + 1)
    areas = ndimage.sum_labels(np.ones_like(ink), labels, index=index)
    on_sheet_edge = ndimage.maximum(paper_border(paper), labels, index=index) if count else np.zeros(0)  # (count,)
    h, w = ink.shape
    largest = max((float(areas[label - 1]) for label in strong), default=0.0)
    inside, at_edge = [], []  # (label, area, top, bottom, left, right) per blob, bottom/right inclusive
    for label in strong[areas[strong - 1] >= SPECK * largest]:
        rows, cols = boxes[label - 1]
        touches = rows.start == 0 or cols.start == 0 or rows.stop == h or cols.stop == w
        big = max(rows.stop - rows.start, cols.stop - cols.start) >= EDGE_BLOB * min(h, w)
        blob = (int(label), float(areas[label - 1]), rows.start, rows.stop - 1, cols.start, cols.stop - 1)
        (at_edge if (touches and big) or on_sheet_edge[label - 1] else inside).append(blob)
    if not inside:
        raise _refuse(
            f"In {name} the only ink found touches the edge of the picture ({len(at_edge)} "
            "blob(s) running into the border): either the digit is cut off by the frame, or what was "
            "found is the edge of the paper, a shadow or the desk. Photograph the digit with a margin of "
            "paper all around it and only paper in the frame (or crop the photo that way).",
            steps,
        )
    if max(b[1] for b in inside) < SPECK * largest * 5 and at_edge:
        raise _refuse(
            f"In {name} the ink inside the picture is tiny next to the ink at its edge: the digit seems cut "
            "off by the frame, or the picture shows mostly the edge of the paper or the desk. Leave a "
            "margin of paper around the digit.",
            steps,
        )
    top, bottom, left, right = _one_digit(inside, name, steps)
    if max(bottom - top + 1, right - left + 1) < MIN_DIGIT:
        raise _refuse(
            f"In {name} the ink found is only {bottom - top + 1}×{right - left + 1} pixels (after "
            f"shrinking the picture to {max(h, w)} pixels on its longer side): too small to be read as "
            "a digit, and perhaps just a speck. Move closer so that the digit fills a third or more of "
            "the frame, or crop the photo around it.",
            steps,
        )
    if (bottom - top + 1) * (right - left + 1) > MOST_OF_IMAGE * h * w:
        share = (bottom - top + 1) * (right - left + 1) / (h * w)
        raise _refuse(
            f"In {name} the 'digit' found spans {share:.0%} of the picture: that is not one digit on "
            "paper but probably a pattern, a texture or a drawing. Photograph one digit, large, on "
            "plain paper, with a margin of paper around it.",
            steps,
        )
    return np.isin(labels, [b[0] for b in inside])


def _one_digit(blobs: list[tuple], name: str, steps: Steps) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the one digit; refuse several side by side.

    Blobs whose columns overlap belong to one digit (a 4 or a 5 may be written in two
    strokes); groups separated by empty columns and of comparable size are separate
    digits.
    """
    groups: list[list[float]] = []  # [area, top, bottom, left, right] per column group
    for _, area, top, bottom, left, right in sorted(blobs, key=lambda b: b[4]):
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
        raise _refuse(
            f"{name} looks like {len(digits)} digits side by side; the network reads one digit at a time. "
            "Crop one digit per image (or draw each digit in its own file) and try again.",
            steps,
        )
    kept = np.array([g for g in groups if g[0] >= 0.15 * biggest])  # (k, 5): a stray dot is left out of the box
    return int(kept[:, 1].min()), int(kept[:, 2].max()), int(kept[:, 3].min()), int(kept[:, 4].max())


# --- the pipeline -----------------------------------------------------------------


def preprocess(
    image_or_path: ImageInput,
    normalize: str = "standard",
    return_steps: bool = False,
    thicken: bool = True,
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Steps]:
    """Turn a photo or drawing of one digit into an MNIST-style digit.

    `image_or_path` is a file path, a PIL image, a NumPy array or a tensor. Returns
    ``(x, image)``: ``x`` float32 ``(1, 1, 28, 28)`` normalised by `normalize` (one of
    `NORMALIZATIONS`: use the model's ``RECIPE.normalize``) and ``image`` uint8 ``(28, 28)``
    (light digit on black, like `load_mnist`). With `return_steps`, also the intermediate
    images (uint8 NumPy arrays) named as in `PREPROCESS_STEPS` (``thickened`` only when a
    thin stroke was thickened), for `mnist_lab.plots.plot_preprocessing_steps`.
    `thicken=False` skips the thickening. Raises `ImageError` (with ``.steps``) when the
    picture is not one readable digit on paper.
    """
    check_choice("normalize", normalize, NORMALIZATIONS)
    check_bool("return_steps", return_steps)
    check_bool("thicken", thicken)
    image, name = to_image(image_or_path)
    grey = grey_levels(image)  # (H, W), 0 = black
    steps: Steps = {"original": display_copy(image, grey)}
    if max(grey.shape) > WORK_SIDE:
        grey = block_reduce(grey, math.ceil(max(grey.shape) / WORK_SIDE), "mean")
    steps["grey"] = _as_uint8(grey)
    if np.ptp(grey) < 1:
        raise _refuse(
            f"No ink found: {name} is one flat colour (every pixel is grey level {grey.min():.0f} of 255). "
            "Photograph or draw a dark digit on light paper (or a light digit on a dark background).",
            steps,
        )

    paper = find_paper(grey)  # (H, W) bool: False on a desk around the sheet
    light = paper_is_light(grey, paper)
    paper_grey = grey if light else 255.0 - grey  # from here on: dark ink on light paper
    background = estimate_background(paper_grey)
    steps["background"] = _as_uint8(np.where(paper, background, 0.0))
    signed = (background - paper_grey) / background  # (H, W): 0 = paper, 1 = black ink
    noise = noise_level(signed[paper]) if paper.any() else 0.0
    ink = ndimage.median_filter(np.clip(signed, 0.0, 1.0), size=3, mode="nearest")  # speckle out
    steps["flattened"] = _as_uint8(ink, 255)
    ink = np.where(paper, remove_lines(ink, paper), 0.0)
    steps["cleaned"] = _as_uint8(ink, 255)

    contrast = float(ink.max())
    levels = contrast * float(np.median(background[paper])) if paper.any() else 0.0
    if levels < MIN_CONTRAST:
        raise _refuse(
            f"No ink found: in {name} the darkest mark differs from the paper by only {levels:.0f} grey "
            "levels of 255. Use a thick dark pen on plain paper, in good light, and check the right file.",
            steps,
        )
    if contrast < NOISE_SIGMAS * noise:
        raise _refuse(
            f"No ink found: in {name} nothing stands out from the noise (the darkest mark is "
            f"{contrast / max(noise, 1e-9):.1f} noise levels from the paper; a digit needs {NOISE_SIGMAS:.0f}). "
            "Take the photo in brighter light, hold still, and use a thick dark pen.",
            steps,
        )
    keep = _digit_mask(ink, contrast, noise, name, steps, paper)  # (H, W) bool, or a refusal
    near = ndimage.binary_dilation(keep, iterations=2)  # keep the anti-aliased rim of the strokes
    rows, cols = np.nonzero(keep.any(axis=1))[0], np.nonzero(keep.any(axis=0))[0]
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    digit_ink = np.where(near, ink, 0.0)

    # Paper -> 0, the typical ink level -> 255, a linear ramp in between (keeps anti-aliasing).
    floor = max(FLOOR_LEVEL * contrast, 2.0 * noise)
    full = max(float(np.median(ink[keep])), floor + 1e-3)
    crop = np.clip((digit_ink[box] - floor) / (full - floor), 0.0, 1.0) * 255.0  # (h, w)
    steps["cropped"] = _as_uint8(crop)
    digit = _mnist_steps(crop, thicken, steps)
    x = normalize_images(digit.unsqueeze(0), normalize)  # (1, 1, 28, 28) float32
    if return_steps:
        return x, digit, steps
    return x, digit


def _mnist_steps(crop: np.ndarray, thicken: bool, steps: Steps) -> Tensor:
    """Cropped ink (0-255, light on black) -> the 28×28 uint8 MNIST digit."""
    scale = DIGIT_SIDE / max(crop.shape)
    if thicken and _stroke_width(crop > 127.5) * scale < THIN_STROKE:
        crop = _thicken(crop)
        steps["thickened"] = _as_uint8(crop)
        scale = DIGIT_SIDE / max(crop.shape)
    height = max(1, min(DIGIT_SIDE, round(crop.shape[0] * scale)))
    width = max(1, min(DIGIT_SIDE, round(crop.shape[1] * scale)))
    small = np.clip(_resize(crop, (height, width), Image.Resampling.LANCZOS), 0, 255)  # (h', w'), longer side 20
    if small.max() > 0:
        small *= 255.0 / small.max()
    steps["scaled"] = _as_uint8(small)

    # Integer shift so that the centre of mass lands on (14, 14), as MNIST did; clamped so
    # the digit stays inside the frame (only an extremely lopsided shape needs that).
    cy, cx = centre_of_mass(small)
    y0 = min(max(round(CENTRE - cy), 0), FRAME - height)
    x0 = min(max(round(CENTRE - cx), 0), FRAME - width)
    frame = np.zeros((FRAME, FRAME), dtype=np.float32)
    frame[y0 : y0 + height, x0 : x0 + width] = small
    digit = torch.from_numpy(np.rint(frame).astype(np.uint8))  # (28, 28) uint8
    steps["centred"] = digit.numpy().copy()
    return digit


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, column) centre of mass of a grey image, in pixel indices."""
    total = image.sum()
    rows, cols = np.arange(image.shape[0]), np.arange(image.shape[1])
    return float(image.sum(axis=1) @ rows / total), float(image.sum(axis=0) @ cols / total)


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels: 2 * area / number of ink-paper edges (a w×L stroke has ~2L)."""
    area = mask.sum()
    edges = (mask[1:] != mask[:-1]).sum() + (mask[:, 1:] != mask[:, :-1]).sum()
    edges += mask[0].sum() + mask[-1].sum() + mask[:, 0].sum() + mask[:, -1].sum()
    return 2.0 * float(area) / max(1, int(edges))


def _thicken(crop: np.ndarray) -> np.ndarray:
    """Thicken thin strokes to MNIST's width, working at 4× the final scale.

    The crop is first shrunk by block-max (a thin line stays a full-strength line one
    block wide), then dilated until the strokes are `MNIST_STROKE` pixels wide at the
    final 20-pixel scale.
    """
    work_side = 4 * DIGIT_SIDE
    factor = max(1, max(crop.shape) // work_side)
    work = block_reduce(crop, factor, "max")
    width = _stroke_width(work > 127.5)  # in work pixels
    target = MNIST_STROKE * max(work.shape) / DIGIT_SIDE
    radius = max(1, round((target - width) / 2))
    # Dilating grows the box by `radius` on each side; aim for the target at the grown size.
    target = MNIST_STROKE * (max(work.shape) + 2 * radius) / DIGIT_SIDE
    radius = max(1, round((target - width) / 2))
    disc = np.hypot(*np.mgrid[-radius : radius + 1, -radius : radius + 1]) <= radius + 0.5
    return ndimage.grey_dilation(np.pad(work, radius), footprint=disc)
