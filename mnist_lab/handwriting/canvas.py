"""Draw a digit with the mouse (or a finger) and watch the model read it.

`DigitPad` keeps the strokes drawn so far and reads them with `read_digit` after
every stroke. The same object works headless (tests, papermill): add strokes with
`add_stroke` and look at `reading`. In Jupyter, `widget()` builds the canvas
(ipycanvas) with a "clear" button, the top-3 prediction and the preprocessing steps,
all updated when you lift the pen.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from torch import nn

from ..errors import InvalidParameterError
from .reader import Reading, read_digit

Point = tuple[float, float]
PAD_SIDE = 280  # canvas pixels (10× MNIST's 28)
PEN = 18  # pen width in canvas pixels: MNIST-like strokes at this canvas size


class DigitPad:
    """A drawing pad for one digit, read by `model` (any trained model of the series); `side` and `pen` in pixels."""

    def __init__(self, model: nn.Module, side: int = PAD_SIDE, pen: int = PEN) -> None:
        self.model = model
        self.side = side
        self.pen = pen
        self.strokes: list[list[Point]] = []
        self.reading: Reading | None = None
        self._canvas = None
        self._label = None
        self._steps = None

    # --- headless part: strokes -> picture -> reading --------------------------------

    def add_stroke(self, points: Sequence[Point]) -> Reading:
        """Add one pen stroke (canvas pixel coordinates, x right, y down) and read the digit again."""
        stroke = [(float(x), float(y)) for x, y in points]
        if not stroke:
            raise InvalidParameterError("A stroke needs at least one point (x, y).")
        self.strokes.append(stroke)
        return self.update()

    def clear(self) -> None:
        """Forget every stroke (and the reading)."""
        self.strokes = []
        self.reading = None
        if self._canvas is not None:
            self._canvas.clear()
            self._canvas.fill_style = "white"
            self._canvas.fill_rect(0, 0, self.side, self.side)
            self._label.value = "Draw one digit, large, then lift the pen."
            self._steps.value = b""

    def picture(self) -> Image.Image:
        """The strokes drawn so far as a grey image: dark pen on white paper, ``side × side``."""
        image = Image.new("L", (self.side, self.side), 255)
        pen = ImageDraw.Draw(image)
        r = self.pen / 2
        for stroke in self.strokes:
            if len(stroke) > 1:
                pen.line(stroke, fill=0, width=self.pen, joint="curve")
            for x, y in (stroke[0], stroke[-1]):  # round ends
                pen.ellipse((x - r, y - r, x + r, y + r), fill=0)
        return image

    def update(self) -> Reading:
        """Read the current drawing; refresh the widget when there is one."""
        self.reading = read_digit(self.model, self.picture(), k=3)
        if self._canvas is not None:
            self._show(self.reading)
        return self.reading

    # --- the widget -------------------------------------------------------------------

    def widget(self):  # -> ipywidgets.VBox (ipywidgets is imported only here)
        """The drawing canvas with a clear button, the prediction line and the steps figure."""
        import ipywidgets as widgets
        from ipycanvas import Canvas

        canvas = Canvas(width=self.side, height=self.side, layout=widgets.Layout(border="1px solid #888"))
        canvas.fill_style = "white"
        canvas.fill_rect(0, 0, self.side, self.side)
        canvas.stroke_style = "black"
        canvas.line_width = self.pen
        canvas.line_cap = "round"
        canvas.line_join = "round"
        self._canvas = canvas
        self._label = widgets.HTML("Draw one digit, large, then lift the pen.")
        self._label.add_class("digit-pad-reading")
        self._steps = widgets.Image(format="png")
        clear = widgets.Button(description="clear", icon="eraser")
        clear.on_click(lambda _: self.clear())
        current: list[Point] = []

        def down(x: float, y: float) -> None:
            current.clear()
            current.append((x, y))

        def move(x: float, y: float) -> None:
            if current:
                canvas.stroke_line(current[-1][0], current[-1][1], x, y)
                current.append((x, y))

        def up(x: float, y: float) -> None:
            if current:
                current.append((x, y))
                canvas.fill_circle(x, y, self.pen / 2)
                self.add_stroke(list(current))
                current.clear()

        canvas.on_mouse_down(down)
        canvas.on_mouse_move(move)
        canvas.on_mouse_up(up)
        canvas.on_mouse_out(up)
        canvas.on_touch_start(lambda points: down(*points[0]))
        canvas.on_touch_move(lambda points: move(*points[0]))
        canvas.on_touch_end(lambda points: up(*points[0]) if points else up(*current[-1]) if current else None)
        for stroke in self.strokes:  # strokes added before the widget existed
            for a, b in zip(stroke, stroke[1:]):
                canvas.stroke_line(a[0], a[1], b[0], b[1])
        if self.reading is not None:
            self._show(self.reading)
        return widgets.VBox([widgets.HBox([canvas, clear]), self._label, self._steps])

    def _show(self, reading: Reading) -> None:
        import html

        import matplotlib.pyplot as plt

        from ..plots import plot_preprocessing_steps

        self._label.value = f"<b>{html.escape(reading.describe())}</b>"
        fig = plot_preprocessing_steps(reading.steps)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=60)
        plt.close(fig)
        self._steps.value = buffer.getvalue()


def stroke_points(path: Sequence[Point], side: int = PAD_SIDE, step: float = 4.0) -> list[Point]:
    """A polyline in unit coordinates (0..1) as densely spaced canvas points, like a mouse would send."""
    unit = np.asarray(path, dtype=np.float64) * side
    points = [unit[0]]
    for a, b in zip(unit, unit[1:]):
        n = max(1, int(np.hypot(*(b - a)) / step))
        points += [a + (b - a) * t for t in np.linspace(0, 1, n + 1)[1:]]
    return [(float(x), float(y)) for x, y in points]
