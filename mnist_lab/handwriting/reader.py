"""Reading a digit with a trained model: top-k probabilities, a confidence flag, refusals."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ImageError, check_int
from ..train import predict
from .pipeline import preprocess
from .reading import ImageInput

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"
CONFIDENT = 0.9  # below this probability the reading is flagged as unsure


@dataclass
class Reading:
    """What the model made of one picture: a digit with its probability, or a refusal.

    ``guesses`` holds the top-k ``(digit, probability)`` pairs, best first (empty when
    refused); ``refusal`` the message when the picture was not one digit on paper;
    ``steps`` the preprocessing images (as far as they got); ``digit_image`` the
    28×28 uint8 digit the model saw (None when refused).
    """

    guesses: list[tuple[int, float]]
    refusal: str | None = None
    steps: dict[str, np.ndarray] = field(default_factory=dict)
    digit_image: np.ndarray | None = None

    @property
    def digit(self) -> int | None:
        """The most likely digit, or None when refused."""
        return self.guesses[0][0] if self.guesses else None

    @property
    def probability(self) -> float:
        """The probability of the most likely digit (0 when refused)."""
        return self.guesses[0][1] if self.guesses else 0.0

    @property
    def confident(self) -> bool:
        """True when a digit was read with probability at least `CONFIDENT`."""
        return self.probability >= CONFIDENT

    def describe(self) -> str:
        """One line for a person: the digit and its probability, flagged when unsure, or the refusal."""
        if self.refusal is not None:
            return f"refused: {self.refusal}"
        top = ", ".join(f"{d}: {p:.2f}" for d, p in self.guesses)
        if self.confident:
            return f"prediction: {self.digit} (probability {self.probability:.2f}; top {len(self.guesses)}: {top})"
        return (
            f"unsure: perhaps {self.digit}, but with probability only {self.probability:.2f} "
            f"(top {len(self.guesses)}: {top}). Look at the steps: is the digit clear, large and alone?"
        )


def read_digit(model: nn.Module, image_or_path: ImageInput, k: int = 3) -> Reading:
    """Preprocess and read one picture; a picture that is not one digit gives a refusal, not an error.

    Errors about the file itself (missing, not an image, too large) are still raised:
    there is nothing to show for them.
    """
    check_int("k", k, minimum=1)
    try:
        _, digit, steps = preprocess(image_or_path, return_steps=True)
    except ImageError as error:
        if not hasattr(error, "steps"):
            raise
        return Reading([], refusal=str(error), steps=error.steps)
    return Reading(predict_digits(model, digit, k)[0], steps=steps, digit_image=digit.numpy())


def predict_digit(model: nn.Module, image_or_path: ImageInput, k: int = 3) -> list[tuple[int, float]]:
    """The `k` most likely digits for your image, best first: ``[(digit, probability), ...]``.

    The image is preprocessed as MNIST was, then normalised with the model's own
    recipe (``model.RECIPE.normalize``), so any model of the series can be used.
    Raises `ImageError` when the picture is not one readable digit (`read_digit`
    returns the refusal instead).
    """
    check_int("k", k, minimum=1)
    return predict_digits(model, preprocess(image_or_path)[1], k)[0]


def predict_digits(model: nn.Module, digits: list[Tensor] | Tensor, k: int = 3) -> list[list[tuple[int, float]]]:
    """`predict_digit` for preprocessed 28×28 uint8 digits (a list or a tensor, one or N) in one pass."""
    check_int("k", k, minimum=1)
    probs, classes = predict(model, digits if isinstance(digits, Tensor) else torch.stack(digits), k=k)
    return [[(int(c), float(p)) for c, p in zip(cs, ps)] for cs, ps in zip(classes, probs)]


def sample_paths(kind: str = "digit") -> list[Path]:
    """Images shipped with the package, sorted: ``digit_<d>.png`` (clean) or ``photo_<d>_<condition>.jpg``.

    `kind` is ``"digit"`` (the ten clean drawings of `scripts/make_samples.py`) or
    ``"photo"`` (the harder photos of `scripts/make_photo_set.py`).
    """
    paths = sorted(p for p in SAMPLES_DIR.glob(f"{kind}_*") if p.suffix in (".png", ".jpg"))
    if not paths:
        raise ImageError(
            f"No {kind} sample images in {SAMPLES_DIR}. Reinstall the package (pip install -e .) "
            "or run scripts/make_samples.py and scripts/make_photo_set.py --samples to make them."
        )
    return paths


def sample_label(path: str | os.PathLike[str]) -> int:
    """The digit a sample file shows, read from its name ``digit_<d>...`` or ``photo_<d>...``."""
    match = re.match(r"(?:digit|photo)_(\d)", Path(path).name)
    if match is None:
        raise ImageError(f"{Path(path).name!r} is not named digit_<d>.png, so its true digit is unknown.")
    return int(match.group(1))
