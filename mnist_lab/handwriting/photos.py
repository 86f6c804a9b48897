"""Realistic "phone photos" of real handwritten digits, to measure the pipeline per condition.

A digit comes from one of two sources: a held-out **MNIST test digit** (written by a
real person; upscaled and turned into smooth ink strokes) or a digit **drawn** here
from pen strokes (`STROKES`, wobbled, slanted, with a random pen). It is put on paper
and photographed under one `CONDITIONS` entry: on a desk, under a shadow, on ruled
or squared paper, with sensor noise and JPEG blocks, in low contrast, rotated and in
perspective. `HELD_OUT` conditions were never looked at while the pipeline was tuned.

Twice a held-out condition failed and was then tuned on (now in `TUNED`): `desk_shadow`
(first measurement, 52 %) and `tilted_desk_dim` (second, 88 %, 8 % wrong with p ≥ 0.9).
Each tuning was checked on conditions written before it began and not run until the next
measurement: `desk_ruled_shadow` and `tilted_desk_dim` for the first, `tilted_desk_shadow`
and `squared_desk_dim` for the second. The order of `CONDITIONS` sets each condition's
seeds, so new conditions go at its end.

Everything is deterministic given the seed. `scripts/make_photo_set.py` measures the
accuracy per condition with a trained model; the tests use `make_photo` directly.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from torch import nn

from ..data import load_mnist
from .reader import read_digit

Point = tuple[float, float]
PHOTO_SIZE = (480, 640)  # (width, height) of a photo: small, since the pipeline shrinks to 640 anyway
# Every condition, in the order that sets each one's seeds (its index): never reordered, new ones appended.
CONDITIONS = (
    "plain",
    "desk",
    "shadow",
    "ruled",
    "squared",
    "noise_jpeg",
    "low_contrast",
    "perspective",
    "chalkboard",
    "desk_shadow",  # held out in the first measurement (failed at 52 %), then tuned on
    "speckle_blur",
    "dim_light",
    "desk_ruled_shadow",
    "tilted_desk_dim",  # held out in the second measurement (88 %, 8 % wrong with p >= 0.9), then tuned on
    "tilted_desk_shadow",
    "squared_desk_dim",
)
HELD_OUT = ("speckle_blur", "dim_light", "desk_ruled_shadow", "tilted_desk_shadow", "squared_desk_dim")
TUNED = tuple(c for c in CONDITIONS if c not in HELD_OUT)  # what the pipeline was tuned on
ON_DESK = ("desk", "desk_shadow", "desk_ruled_shadow", "tilted_desk_dim", "tilted_desk_shadow", "squared_desk_dim")
SHADOWED = ("shadow", "desk_shadow", "desk_ruled_shadow", "tilted_desk_shadow")
RULED = ("ruled", "desk_ruled_shadow")
SQUARED = ("squared", "squared_desk_dim")
SLANTED = ("perspective", "tilted_desk_dim", "tilted_desk_shadow")  # rotated and seen at a slant
DIM = ("dim_light", "tilted_desk_dim", "squared_desk_dim")


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 48) -> list[Point]:
    """Points on an ellipse from angle `start` to `end` (degrees; 0 = right, 90 = down, y grows down)."""
    angles = np.radians(np.linspace(start, end, n))
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]


# Each digit: pen strokes in a unit box (x right, y down, both 0..1).
STROKES: dict[int, list[list[Point]]] = {
    0: [arc(0.5, 0.5, 0.42, 0.5, -100, 275)],
    1: [[(0.62, 0.0), (0.38, 1.0)]],
    2: [arc(0.5, 0.3, 0.4, 0.3, 195, 400) + [(0.08, 0.98), (0.95, 0.97)]],
    3: [arc(0.47, 0.26, 0.36, 0.26, 205, 460) + arc(0.47, 0.74, 0.42, 0.26, 265, 510)],
    4: [[(0.58, 0.0), (0.05, 0.64), (0.97, 0.64)], [(0.74, 0.28), (0.72, 1.0)]],
    5: [[(0.9, 0.02), (0.3, 0.02), (0.24, 0.45)] + arc(0.5, 0.7, 0.42, 0.3, 235, 505)],
    6: [[(0.78, 0.0), (0.55, 0.12), (0.36, 0.3), (0.22, 0.55)] + arc(0.5, 0.72, 0.3, 0.27, 180, -180)],
    7: [[(0.04, 0.03), (0.96, 0.03), (0.42, 1.0)]],
    8: [arc(0.5, 0.25, 0.3, 0.25, 90, 450), arc(0.5, 0.73, 0.38, 0.27, -90, 270)],
    9: [arc(0.47, 0.3, 0.34, 0.28, 0, 360) + [(0.8, 0.6), (0.74, 1.0)]],
}


def wobble(points: list[Point], rng: np.random.Generator, amount: float) -> np.ndarray:
    """Resample a stroke densely and add smooth random wobble (a hand is not a ruler)."""
    pts = np.asarray(points, dtype=np.float64)
    seg = np.r_[0.0, np.cumsum(np.hypot(*np.diff(pts, axis=0).T))]
    t = np.linspace(0.0, seg[-1], max(8, int(seg[-1] * 400)))
    dense = np.stack([np.interp(t, seg, pts[:, 0]), np.interp(t, seg, pts[:, 1])], axis=1)
    noise = rng.normal(0.0, amount, size=dense.shape)
    kernel = np.hanning(15) / np.hanning(15).sum()
    smooth = np.stack([np.convolve(noise[:, i], kernel, mode="same") for i in range(2)], axis=1)
    return dense + smooth * 3.0


def drawn_digit(digit: int, rng: np.random.Generator, height: int = 240) -> np.ndarray:
    """Ink coverage in [0, 1], float ``(height, width)``, of `digit` drawn with a random round pen."""
    aspect = 0.3 if digit == 1 else rng.uniform(0.55, 0.75)
    slant = rng.uniform(-0.05, 0.2)
    pen = rng.uniform(0.07, 0.11) * height
    margin = pen
    width = int(aspect * height + abs(slant) * height + 2 * margin)
    s = 2  # supersample for smooth edges
    canvas = Image.new("L", (width * s, int(height + 2 * margin) * s), 0)
    draw = ImageDraw.Draw(canvas)
    r = pen * s / 2
    for stroke in STROKES[digit]:
        pts = wobble(stroke, rng, amount=0.012)
        xs = margin + (pts[:, 0] * aspect + slant * (1.0 - pts[:, 1]) + max(0.0, -slant)) * height
        ys = margin + pts[:, 1] * height
        for x, y in zip(xs * s, ys * s):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    small = canvas.resize((width, int(height + 2 * margin)), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.float64) / 255.0


def mnist_ink(digit: np.ndarray, height: int = 240) -> np.ndarray:
    """An MNIST digit (28×28 uint8, light on black) as smooth ink coverage ``(height·28/20, ...)`` in [0, 1].

    Upscaled with a bicubic filter, then a soft threshold turns MNIST's grey blur into
    the crisp edge of a pen stroke, slightly blurred again like a photo.
    """
    side = int(round(height * 28 / 20))
    big = Image.fromarray(np.asarray(digit, dtype=np.uint8)).resize((side, side), Image.Resampling.BICUBIC)
    ink = np.clip((np.asarray(big, dtype=np.float64) / 255.0 - 0.3) / 0.3, 0.0, 1.0)
    blurred = Image.fromarray(np.rint(ink * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(side / 250))
    return np.asarray(blurred, dtype=np.float64) / 255.0


# --- photographing: paper, light, lines, camera -----------------------------------


def _image(pixels: np.ndarray) -> Image.Image:
    """Float pixels ``(H, W, 3)`` (any range) as an 8-bit RGB image."""
    return Image.fromarray(np.rint(np.clip(pixels, 0, 255)).astype(np.uint8))


@dataclass
class Sheet:
    """A photo under construction: the paper's colour ``(H, W, 3)`` and the ink's darkness ``(H, W)``."""

    paper: np.ndarray  # (H, W, 3) float, 0-255
    ink: np.ndarray  # (H, W) float in [0, 1]: how much of the light the ink absorbs
    ink_colour: np.ndarray  # (3,) float, 0-255


def _blank(size: tuple[int, int], rng: np.random.Generator, level: tuple[float, float] = (225, 250)) -> Sheet:
    width, height = size
    base = rng.uniform(*level) * np.array([1.0, rng.uniform(0.97, 1.0), rng.uniform(0.92, 1.0)])
    yy, xx = np.mgrid[0:height, 0:width] / max(size)
    tilt = 1.0 + 0.04 * (rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy)  # gentle uneven light
    paper = base[None, None, :] * tilt[..., None]
    colour = rng.choice([np.array([25.0, 25.0, 30.0]), np.array([25.0, 40.0, 120.0]), np.array([40.0, 35.0, 35.0])])
    return Sheet(paper, np.zeros((height, width)), colour)


def _place(sheet: Sheet, coverage: np.ndarray, rng: np.random.Generator, strength: float, fraction: float) -> None:
    """Paste a digit's ink coverage, scaled to `fraction` of the sheet's height, near the middle."""
    height, width = sheet.ink.shape
    scale = fraction * height / coverage.shape[0]
    h, w = max(2, int(coverage.shape[0] * scale)), max(2, int(coverage.shape[1] * scale))
    w = min(w, int(0.8 * width))
    ink = Image.fromarray(np.rint(coverage * 255).astype(np.uint8)).resize((w, h), Image.Resampling.LANCZOS)
    y0 = int((height - h) / 2 + rng.uniform(-0.08, 0.08) * height)
    x0 = int((width - w) / 2 + rng.uniform(-0.1, 0.1) * width)
    region = sheet.ink[y0 : y0 + h, x0 : x0 + w]
    np.maximum(region, np.asarray(ink, dtype=np.float64) / 255.0 * strength, out=region)


def _lines(sheet: Sheet, rng: np.random.Generator, squared: bool) -> None:
    """Ruled lines (with a red margin) or a squared grid, printed on the paper."""
    height, width = sheet.ink.shape
    image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(image)
    spacing = rng.uniform(0.04, 0.05) * height if squared else rng.uniform(0.045, 0.06) * height
    thickness = int(rng.integers(1, 3)) if squared else int(rng.integers(1, 4))
    for y in np.arange(rng.uniform(0, spacing), height, spacing):
        draw.line([(0, y), (width, y)], fill=255, width=thickness)
    if squared:
        for x in np.arange(rng.uniform(0, spacing), width, spacing):
            draw.line([(x, 0), (x, height)], fill=255, width=thickness)
    lines = np.asarray(image, dtype=np.float64) / 255.0 * rng.uniform(0.25, 0.45)
    tint = np.array([0.55, 0.35, 0.1]) if not squared else np.array([0.4, 0.4, 0.4])  # blue-ish or grey
    sheet.paper *= 1.0 - lines[..., None] * (1.0 - tint)[None, None, :] * 1.6
    if not squared:  # the red margin line
        x = int(rng.uniform(0.1, 0.14) * width)
        sheet.paper[:, x : x + 2] *= np.array([1.0, 0.55, 0.55])


def _develop(sheet: Sheet, chalk: bool = False) -> np.ndarray:
    """Paper and ink combined: (H, W, 3) float. Ink absorbs light, so it darkens in a shadow too; chalk does not."""
    ink = sheet.ink[..., None]
    light = 1.0 if chalk else sheet.paper / 255.0
    return sheet.paper * (1.0 - ink) + sheet.ink_colour[None, None, :] * ink * light


def _shadow(pixels: np.ndarray, rng: np.random.Generator, darkest: float) -> np.ndarray:
    """A soft shadow: the light falls from 1 to `darkest` across a random direction."""
    height, width = pixels.shape[:2]
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width]
    t = ((xx - width / 2) * np.cos(angle) + (yy - height / 2) * np.sin(angle)) / (0.5 * max(width, height))
    softness = rng.uniform(0.25, 0.6)  # width of the penumbra, as a fraction of half the picture
    step = 1.0 / (1.0 + np.exp(-(t - rng.uniform(-0.3, 0.3)) / (softness / 4)))
    light = 1.0 - (1.0 - darkest) * step
    return pixels * light[..., None]


def _desk(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The sheet, turned a little, lying on a wooden desk that shows all round it."""
    sheet = _image(pixels)
    height, width = pixels.shape[:2]
    turned = sheet.convert("RGBA").rotate(rng.uniform(-5, 5), resample=Image.Resampling.BICUBIC, expand=True)
    scale = rng.uniform(0.62, 0.82)
    turned = turned.resize((int(turned.width * scale), int(turned.height * scale)), Image.Resampling.LANCZOS)
    wood = np.array([rng.uniform(110, 160), rng.uniform(70, 105), rng.uniform(40, 70)])
    yy, xx = np.mgrid[0:height, 0:width]
    grain = 1.0 + 0.08 * np.sin(xx / rng.uniform(6, 14) + 3 * np.sin(yy / rng.uniform(30, 60)))
    desk = _image(wood[None, None, :] * grain[..., None])
    x0 = int((width - turned.width) / 2 + rng.uniform(-0.06, 0.06) * width)
    y0 = int((height - turned.height) / 2 + rng.uniform(-0.06, 0.06) * height)
    desk.paste(turned, (x0, y0), turned)
    return np.asarray(desk, dtype=np.float64)


def _perspective(pixels: np.ndarray, rng: np.random.Generator, fill_from_corner: bool = False) -> np.ndarray:
    """Rotated by up to ±10° and seen at a slant: each corner moved by up to 7 % of the side.

    The corners the warp uncovers get the picture's median colour, or with
    `fill_from_corner` the top-left pixel's (the desk, when a sheet lies on one).
    """
    image = _image(pixels)
    colour = pixels[0, 0] if fill_from_corner else np.median(pixels.reshape(-1, 3), axis=0)
    fill = tuple(int(v) for v in colour)
    image = image.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BICUBIC, fillcolor=fill)
    w, h = image.size
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    moved = corners + rng.uniform(-0.07, 0.07, size=(4, 2)) * [w, h]
    coeffs = _perspective_coefficients(corners, moved)
    warped = image.transform((w, h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC, fillcolor=fill)
    return np.asarray(warped, dtype=np.float64)


def _perspective_coefficients(target: np.ndarray, source: np.ndarray) -> tuple[float, ...]:
    """PIL's 8 perspective coefficients mapping output corners `target` to input corners `source`."""
    rows = []
    for (x, y), (u, v) in zip(target, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return tuple(np.linalg.solve(np.asarray(rows), source.reshape(-1)))


def _camera(pixels: np.ndarray, rng: np.random.Generator, noise: float, quality: int) -> Image.Image:
    """Sensor noise, then JPEG compression: what a phone hands over."""
    buffer = io.BytesIO()
    _image(pixels + rng.normal(0.0, noise, size=pixels.shape)).save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _salt_and_pepper(pixels: np.ndarray, rng: np.random.Generator, fraction: float) -> np.ndarray:
    hit = rng.random(pixels.shape[:2])
    out = pixels.copy()
    out[hit < fraction / 2] = 0.0
    out[hit > 1 - fraction / 2] = 255.0
    return out


def make_photo(coverage: np.ndarray, condition: str, seed: int) -> Image.Image:
    """A photo (RGB, `PHOTO_SIZE`) of one digit's ink `coverage` under `condition` (see `CONDITIONS`)."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; choose one of {', '.join(CONDITIONS)}")
    rng = np.random.default_rng(seed)
    size = PHOTO_SIZE if rng.random() < 0.75 else PHOTO_SIZE[::-1]  # a quarter of the photos are landscape
    fraction = rng.uniform(0.3, 0.5)  # digit height / photo height
    strength, noise, quality = rng.uniform(0.8, 0.95), 3.0, 85
    sheet = _blank(size, rng, level=(170, 200) if condition == "low_contrast" else (225, 250))
    if condition == "low_contrast":
        strength = rng.uniform(0.18, 0.3)  # a pencil, or a faded pen
    if condition in RULED or condition in SQUARED:
        _lines(sheet, rng, squared=condition in SQUARED)
    if condition == "chalkboard":  # light chalk on a dark green board: the polarity is reversed
        sheet.paper = np.broadcast_to(np.array([45.0, 70.0, 55.0]) * rng.uniform(0.8, 1.2), sheet.paper.shape).copy()
        sheet.ink_colour = np.array([235.0, 235.0, 230.0])
    _place(sheet, coverage, rng, strength, fraction * (0.8 if condition in ON_DESK else 1.0))
    pixels = _develop(sheet, chalk=condition == "chalkboard")
    if condition in ON_DESK:
        pixels = _desk(pixels, rng)
    if condition in SHADOWED:
        pixels = _shadow(pixels, rng, darkest=rng.uniform(0.42, 0.55))
    if condition in SLANTED:
        pixels = _perspective(pixels, rng, fill_from_corner=condition in ON_DESK)
    if condition == "noise_jpeg":
        noise, quality = rng.uniform(12, 20), int(rng.integers(15, 31))
    if condition in DIM:  # a dim room: everything dark, the sensor noisier
        pixels = pixels * rng.uniform(0.3, 0.45)
        noise, quality = rng.uniform(5, 9), 60
    if condition == "speckle_blur":
        pixels = np.asarray(_image(pixels).filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 2.0))), dtype=np.float64)
        pixels = _salt_and_pepper(pixels, rng, fraction=0.02)
        quality = 50
    return _camera(pixels, rng, noise, quality)


def digit_coverage(source: str, index: int, mnist: tuple[np.ndarray, np.ndarray] | None, seed: int) -> tuple:
    """(coverage, label) of digit number `index` from `source` ("mnist" test digits or "drawn")."""
    if source == "mnist":
        images, labels = mnist
        return mnist_ink(images[index]), int(labels[index])
    return drawn_digit(index % 10, np.random.default_rng(seed)), index % 10


# --- measuring ----------------------------------------------------------------------

SPLITS = {"tune": (0, 5000, 0), "eval": (5000, 10000, 1_000_000)}  # MNIST test indices, seed offset
MEASUREMENT = Path(__file__).resolve().parent.parent / "samples" / "photo_set.json"


def photo_set(condition: str, n: int, split: str, mnist: tuple[np.ndarray, np.ndarray]):
    """The `n` photos of one condition in a split: ``(photo, label, source)`` each, deterministic.

    Four in five photos show an MNIST test digit (the "tune" split draws from test
    digits 0-4999, "eval" from 5000-9999, never seen in training either way), one in
    five a digit drawn from pen strokes. Seeds differ per split and per condition.
    """
    start, stop, offset = SPLITS[split]
    rng = np.random.default_rng(offset + CONDITIONS.index(condition))
    indices = rng.choice(np.arange(start, stop), size=n, replace=False)
    for i, index in enumerate(indices):
        source = "drawn" if i % 5 == 4 else "mnist"
        seed = offset + 10_000 * CONDITIONS.index(condition) + i
        coverage, label = digit_coverage(source, int(index) if source == "mnist" else i // 5, mnist, seed)
        yield make_photo(coverage, condition, seed), label, source


def evaluate_photos(
    model: nn.Module,
    conditions: Sequence[str] = CONDITIONS,
    n: int = 150,
    split: str = "eval",
    mnist: tuple[np.ndarray, np.ndarray] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Read `n` photos per condition with `model`; per condition: accuracy and how it failed.

    A refusal counts as not correct. Returns, per condition: ``n``, ``accuracy``,
    ``accuracy_mnist`` and ``accuracy_drawn`` (per digit source), ``refused``,
    ``unsure`` (read, but with probability below `CONFIDENT`) and
    ``confidently_wrong`` (probability at least `CONFIDENT` and wrong), all as
    fractions of the condition's photos.
    """
    if mnist is None:
        images, labels = load_mnist("test")
        mnist = (images.numpy(), labels.numpy())
    table = {}
    for condition in conditions:
        counts = {"correct": 0, "refused": 0, "unsure": 0, "confidently_wrong": 0}
        per_source = {"mnist": [0, 0], "drawn": [0, 0]}  # [correct, total]
        for photo, label, source in photo_set(condition, n, split, mnist):
            reading = read_digit(model, photo, k=3)
            correct = reading.digit == label
            counts["correct"] += correct
            counts["refused"] += reading.refusal is not None
            counts["unsure"] += reading.refusal is None and not reading.confident
            counts["confidently_wrong"] += reading.confident and not correct
            per_source[source][0] += correct
            per_source[source][1] += 1
        row = {"n": n, "accuracy": counts["correct"] / n}
        row.update({f"accuracy_{s}": c / max(t, 1) for s, (c, t) in per_source.items()})
        row.update({k: counts[k] / n for k in ("refused", "unsure", "confidently_wrong")})
        table[condition] = row
        if progress:
            progress(f"{condition:14s} accuracy {row['accuracy']:.1%}")
    return table


def table_markdown(table: dict[str, dict[str, float]]) -> str:
    """The per-condition table as Markdown (held-out conditions marked)."""
    lines = [
        "| condition | photos | accuracy | MNIST digits | drawn digits | refused | unsure (p < 0.9) "
        "| wrong with p ≥ 0.9 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    shares = ("accuracy", "accuracy_mnist", "accuracy_drawn", "refused", "unsure", "confidently_wrong")
    for name, r in table.items():
        label = f"{name} (held out)" if name in HELD_OUT else name
        lines.append(f"| {label} | {r['n']} | " + " | ".join(f"{r[key]:.1%}" for key in shares) + " |")
    return "\n".join(lines)


def load_measurement(path: str | Path = MEASUREMENT) -> dict:
    """The committed measurement of `scripts/make_photo_set.py` (table, command, device, date)."""
    return json.loads(Path(path).read_text())
