"""Draw the sample digits shipped in ``mnist_lab/samples/`` (run from the repository root).

Each digit is drawn the way a learner would photograph or paint one: dark strokes
from a thick pen, slanted and a little wobbly, on a light background whose size and
aspect ratio are nothing like MNIST's 28×28. The files deliberately cover the image
kinds `mnist_lab.handwriting.preprocess` must handle: plain RGB, RGBA and grey+alpha
with a transparent background, a palette image, a 16-bit grey image, blue ballpoint on
cream paper, paper in a shadow, and a noisy, JPEG-compressed photo.

The script is deterministic (fixed seeds, no clock): running it again rewrites the
same pixels. Usage: ``python scripts/make_samples.py [--out mnist_lab/samples]``.
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mnist_lab.handwriting.photos import STROKES, wobble  # the pen strokes of each digit, shared

SUPERSAMPLE = 4  # draw at 4× and shrink: smooth, anti-aliased edges like a real scan


@dataclass(frozen=True)
class Sample:
    """How one sample is drawn and stored."""

    size: tuple[int, int]  # canvas (width, height) in pixels
    kind: str  # rgb, rgba, la, palette, jpeg, grey16
    pen: float  # pen width in pixels
    slant: float  # x shift per unit of height (top leans right when > 0)
    ink: tuple[int, int, int] = (20, 20, 25)
    paper: tuple[int, int, int] = (250, 250, 247)
    shadow: float = 0.0  # how much darker the right edge of the paper is (0..1)
    height: float = 0.62  # digit height as a fraction of the canvas height
    aspect: float = 0.68  # width of the unit box relative to its height


SAMPLES: dict[int, Sample] = {
    0: Sample((300, 400), "rgb", pen=26, slant=0.08),
    1: Sample((400, 300), "rgba", pen=22, slant=0.1, aspect=0.3),
    2: Sample((300, 400), "rgb", pen=24, slant=0.05, ink=(25, 45, 150), paper=(245, 238, 220)),
    3: Sample((320, 420), "jpeg", pen=26, slant=0.12, ink=(35, 35, 40), paper=(205, 203, 196)),
    4: Sample((360, 360), "palette", pen=24, slant=0.06, height=0.66),
    5: Sample((300, 400), "la", pen=25, slant=0.1),
    6: Sample((500, 350), "rgb", pen=21, slant=0.08, ink=(65, 65, 72), height=0.7),
    7: Sample((300, 400), "rgba", pen=24, slant=0.05, ink=(10, 80, 35)),
    8: Sample((400, 500), "rgb", pen=26, slant=0.1, shadow=0.18),
    9: Sample((300, 400), "grey16", pen=24, slant=0.1),
}


def coverage(digit: int, spec: Sample, seed: int) -> np.ndarray:
    """Ink coverage in [0, 1], float ``(height, width)``, of one digit drawn with a round pen."""
    rng = np.random.default_rng(seed)
    width, height = spec.size
    s = SUPERSAMPLE
    canvas = Image.new("L", (width * s, height * s), 0)
    draw = ImageDraw.Draw(canvas)
    box_h = spec.height * height
    box_w = spec.aspect * box_h
    x0 = (width - box_w) / 2 + rng.uniform(-0.06, 0.06) * width
    y0 = (height - box_h) / 2 + rng.uniform(-0.05, 0.05) * height
    radius = spec.pen * s / 2
    for stroke in STROKES[digit]:
        pts = wobble(stroke, rng, amount=0.01)
        xs = x0 + (pts[:, 0] + spec.slant * (0.5 - pts[:, 1]) / spec.aspect) * box_w
        ys = y0 + pts[:, 1] * box_h
        # A round pen: stamp a disc every few pixels along the path (a wide polyline
        # would leave seams between its short segments).
        for x, y in zip(xs * s, ys * s):
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    small = canvas.resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.float64) / 255.0


def render(digit: int, spec: Sample, seed: int) -> Image.Image:
    """The sample image of `digit`, in the mode its `spec.kind` asks for."""
    alpha = coverage(digit, spec, seed)[..., None]  # (H, W, 1)
    width, height = spec.size
    ink = np.asarray(spec.ink, dtype=np.float64)
    if spec.kind in ("rgba", "la"):
        rgb = np.broadcast_to(ink, (height, width, 3))
        rgba = np.concatenate([rgb, alpha * 255.0], axis=2)  # transparent paper
        image = Image.fromarray(np.rint(rgba).astype(np.uint8), mode="RGBA")
        return image.convert("LA") if spec.kind == "la" else image
    paper = np.broadcast_to(np.asarray(spec.paper, dtype=np.float64), (height, width, 3)).copy()
    if spec.shadow:
        paper *= (1.0 - spec.shadow * np.linspace(0.0, 1.0, width))[None, :, None]
    pixels = paper * (1.0 - alpha) + ink * alpha
    if spec.kind == "grey16":
        grey = pixels.mean(axis=2) / 255.0 * 65535.0
        return Image.fromarray(np.rint(grey).astype(np.uint16))  # mode I;16
    if spec.kind == "jpeg":
        rng = np.random.default_rng(seed + 1000)
        pixels = pixels + rng.normal(0.0, 9.0, size=pixels.shape)  # sensor noise
    image = Image.fromarray(np.rint(np.clip(pixels, 0, 255)).astype(np.uint8), mode="RGB")
    if spec.kind == "jpeg":
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=30)  # strong compression: blocky artefacts
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    if spec.kind == "palette":
        image = image.quantize(colors=16, dither=Image.Dither.NONE)
    return image


def main() -> None:
    """Draw every sample into ``--out`` (default: the package's samples folder)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("mnist_lab/samples"), help="output folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for digit, spec in SAMPLES.items():
        image = render(digit, spec, seed=digit)
        path = args.out / f"digit_{digit}.png"
        image.save(path, format="PNG", optimize=True)
        print(f"{path}: {image.mode} {image.size[0]}×{image.size[1]}")


if __name__ == "__main__":
    main()
