"""Your own handwriting, made to look like MNIST: read a photo or drawing, preprocess, predict.

- `reading`: any image file, PIL image, array or tensor to grey levels (`load_image`);
- `pipeline`: `preprocess`, from a phone photo (desk, shadow, ruled paper, noise) to
  an MNIST digit, or a refusal that says what was seen and what to do;
- `reader`: `read_digit` / `predict_digit` with a trained model, the shipped samples;
- `photos`: realistic synthetic photos of real handwritten digits, per condition, to
  measure how well all this works (`scripts/make_photo_set.py`);
- `canvas`: `DigitPad`, draw a digit with the mouse in Jupyter (ipycanvas) or headless.

The figures are in `mnist_lab.plots` (`plot_preprocessing_steps`, `plot_digit_predictions`).
"""

from .canvas import DigitPad
from .pipeline import CENTRE, PREPROCESS_STEPS, centre_of_mass, preprocess
from .reader import (
    CONFIDENT,
    SAMPLES_DIR,
    Reading,
    predict_digit,
    predict_digits,
    read_digit,
    sample_label,
    sample_paths,
)
from .reading import MAX_PIXELS, grey_levels, load_image

__all__ = [
    "CENTRE",
    "CONFIDENT",
    "MAX_PIXELS",
    "PREPROCESS_STEPS",
    "SAMPLES_DIR",
    "DigitPad",
    "Reading",
    "centre_of_mass",
    "grey_levels",
    "load_image",
    "predict_digit",
    "predict_digits",
    "preprocess",
    "read_digit",
    "sample_label",
    "sample_paths",
]
