"""Your own digits: MNIST-style preprocessing, the shipped samples, and clear errors for bad images."""

import struct
import zlib

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image, ImageDraw
from scipy import ndimage

from mnist_lab.data import normalize
from mnist_lab.errors import ImageError, InvalidParameterError, MnistLabError
from mnist_lab.handwriting import (
    MAX_PIXELS,
    PREPROCESS_STEPS,
    DigitPad,
    predict_digit,
    preprocess,
    read_digit,
    sample_label,
    sample_paths,
)
from mnist_lab.handwriting.canvas import stroke_points
from mnist_lab.handwriting.photos import CONDITIONS, HELD_OUT, SLANTED, TUNED, drawn_digit, make_photo, mnist_ink
from mnist_lab.handwriting.pipeline import SHEET_EDGE, find_paper, paper_border, paper_is_light
from mnist_lab.models import build_model
from mnist_lab.plots import plot_digit_predictions, plot_preprocessing_steps
from mnist_lab.train import fit

# --- helpers ----------------------------------------------------------------------


def draw(strokes, size=(300, 400), width=24, ink=0, paper=255) -> Image.Image:
    """A grey ("L") image with polylines drawn in `ink` on `paper`."""
    image = Image.new("L", size, paper)
    pen = ImageDraw.Draw(image)
    for stroke in strokes:
        pen.line(stroke, fill=ink, width=width, joint="curve")
    return image


SEVEN = [[(70, 80), (230, 80), (130, 330)]]
# A vertical bar with a foot to its right at the bottom: flipping or transposing would show.
ELL = [[(100, 60), (100, 340)], [(100, 330), (200, 330)]]


def ink_box(digit: torch.Tensor) -> tuple[int, int]:
    """(height, width) of the non-zero pixels of a 28×28 digit."""
    rows = np.nonzero(digit.numpy().any(axis=1))[0]
    cols = np.nonzero(digit.numpy().any(axis=0))[0]
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def centre_of_mass(digit: torch.Tensor) -> tuple[float, float]:
    """(row, column) centre of mass of a 28×28 digit, in pixel indices."""
    d = digit.double()
    idx = torch.arange(28, dtype=torch.float64)
    return float(d.sum(1) @ idx / d.sum()), float(d.sum(0) @ idx / d.sum())


def png_header(width: int, height: int) -> bytes:
    """The bytes of a PNG that *declares* width × height but holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# --- orientation, inversion, centring, aspect ratio -------------------------------


def test_light_and_dark_backgrounds_give_the_same_digit():
    dark_on_light = draw(SEVEN)
    light_on_dark = draw(SEVEN, ink=255, paper=0)
    _, a = preprocess(dark_on_light)
    _, b = preprocess(light_on_dark)
    assert torch.equal(a, b)
    # MNIST's convention: black background, bright ink
    assert a.dtype == torch.uint8 and a.shape == (28, 28)
    assert a[0].max() == 0 and a[:, 0].max() == 0 and a.max() == 255


def test_orientation_is_kept_not_flipped_or_transposed():
    _, digit = preprocess(draw(ELL))
    d = digit.double()
    rows, cols = np.nonzero(digit.numpy().any(axis=1))[0], np.nonzero(digit.numpy().any(axis=0))[0]
    left, right = d[:, cols[0] : cols[0] + 3].sum(), d[:, cols[-1] - 2 : cols[-1] + 1].sum()
    top, bottom = d[rows[0] : rows[0] + 3].sum(), d[rows[-1] - 2 : rows[-1] + 1].sum()
    assert left > 2 * right  # the bar is still on the left of the ink box
    assert bottom > 2 * top  # the foot is still at the bottom
    height, width = ink_box(digit)
    assert height == 20 and width < 14  # tall stays tall


@pytest.mark.parametrize("strokes", [SEVEN, ELL, [[(60, 200), (240, 200)], [(150, 60), (150, 340)]]])
def test_centre_of_mass_is_at_14_14(strokes):
    _, digit = preprocess(draw(strokes))
    cy, cx = centre_of_mass(digit)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_every_sample_is_centred_and_20_pixels_long():
    for path in sample_paths():
        _, digit = preprocess(path)
        cy, cx = centre_of_mass(digit)
        assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5, path.name
        assert max(ink_box(digit)) == 20, path.name


def test_tall_thin_one_keeps_its_aspect_ratio():
    # 24 px wide, 300 px tall: scaled to 20 px tall it is about 1.6 px wide
    _, digit = preprocess(draw([[(150, 50), (150, 350)]], width=24))
    height, width = ink_box(digit)
    assert height == 20 and width <= 4


def test_wide_dash_keeps_its_width():
    _, digit = preprocess(draw([[(30, 200), (270, 200)]], width=24))
    height, width = ink_box(digit)
    assert width == 20 and height <= 4


def test_thin_pen_is_thickened_to_mnist_strokes():
    image = draw(SEVEN, width=3)  # a 3-pixel pen: 0.24 px at 20-pixel scale
    _, thick, steps = preprocess(image, return_steps=True)
    _, thin = preprocess(image, thicken=False)
    assert "thickened" in steps
    assert (thick > 127).sum() > 2 * (thin > 127).sum()
    assert max(ink_box(thick)) == 20
    # a thick pen is left alone
    _, _, steps = preprocess(draw(SEVEN, width=24), return_steps=True)
    assert "thickened" not in steps


@pytest.mark.slow
def test_mnist_digits_come_back_as_themselves(test_set):
    """An MNIST digit, enlarged and printed dark on light, is preprocessed back into itself.

    A margin of paper is added around the 28×28 frame: some MNIST digits reach its edge,
    and ink touching the edge of a picture is refused (see the test below).
    """
    images, _ = test_set
    correlations = []
    for digit in images[:40]:
        framed = np.pad(255 - digit.numpy(), 4, constant_values=255)  # (36, 36)
        photo = Image.fromarray(framed).resize((360, 360), Image.Resampling.BICUBIC)
        _, back = preprocess(photo)
        correlations.append(np.corrcoef(digit.numpy().ravel(), back.numpy().ravel())[0, 1])
    assert np.median(correlations) > 0.95 and min(correlations) > 0.6


def test_output_is_normalised_as_asked():
    image = draw(SEVEN)
    x, digit = preprocess(image)
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    torch.testing.assert_close(x, normalize(digit.unsqueeze(0), "standard"))
    x_unit, _ = preprocess(image, normalize="unit")
    torch.testing.assert_close(x_unit, digit.float().reshape(1, 1, 28, 28) / 255)
    with pytest.raises(InvalidParameterError, match="standard"):
        preprocess(image, normalize="standad")


def test_small_specks_of_noise_are_ignored():
    clean = draw(SEVEN)
    specked = clean.copy()
    ImageDraw.Draw(specked).ellipse((270, 370, 274, 374), fill=0)  # a 5-pixel dot in a corner
    assert torch.equal(preprocess(clean)[1], preprocess(specked)[1])


def test_a_digit_written_in_two_strokes_is_one_digit():
    # a 5 whose top bar does not touch its body: the columns overlap, so it is one digit
    five = [[(120, 60), (240, 60)], [(100, 110), (95, 200), (200, 210), (220, 290), (110, 330)]]
    _, digit = preprocess(draw(five))
    assert max(ink_box(digit)) == 20


def test_large_photo_is_handled():
    image = draw([[(900, 600), (2000, 600), (1400, 2400)]], size=(3000, 3000), width=90, paper=235)
    _, digit = preprocess(image)
    assert max(ink_box(digit)) == 20


# --- input kinds ------------------------------------------------------------------


def _as_mode(image: Image.Image, mode: str) -> Image.Image:
    """The same grey drawing stored in another image mode."""
    grey = np.asarray(image)
    if mode == "I;16":
        return Image.fromarray(grey.astype(np.uint16) * 257)
    if mode == "I":
        return Image.fromarray(grey.astype(np.int32) * 257, mode="I")
    if mode == "F":
        return Image.fromarray(grey.astype(np.float32) / 255)
    if mode == "RGBA":  # ink opaque, paper transparent
        alpha = 255 - grey
        return Image.fromarray(np.stack([np.zeros_like(grey)] * 3 + [alpha], axis=2), mode="RGBA")
    if mode == "LA":
        return Image.fromarray(np.stack([np.zeros_like(grey), 255 - grey], axis=2), mode="LA")
    if mode == "P":
        return image.convert("RGB").quantize(colors=32)
    return image.convert(mode)


@pytest.mark.parametrize("mode", ["RGB", "I;16", "I", "F", "RGBA", "LA", "P", "CMYK"])
def test_every_image_mode_gives_the_same_digit(mode):
    reference = draw(SEVEN)
    _, expected = preprocess(reference)
    converted = _as_mode(reference, mode)
    assert converted.mode == mode
    _, digit = preprocess(converted)
    assert (digit.int() - expected.int()).abs().max() <= 3


def test_light_ink_on_transparent_background_uses_the_alpha_channel():
    grey = 255 - np.asarray(draw(SEVEN))  # ink strength
    white_ink = Image.fromarray(np.stack([np.full_like(grey, 255)] * 3 + [grey], axis=2), mode="RGBA")
    _, expected = preprocess(draw(SEVEN))
    _, digit = preprocess(white_ink)
    assert (digit.int() - expected.int()).abs().max() <= 3


@pytest.mark.parametrize("suffix", ["png", "jpg", "bmp", "gif", "tiff", "webp"])
def test_files_of_every_common_format_are_read(tmp_path, suffix):
    path = tmp_path / f"seven.{suffix}"
    draw(SEVEN).convert("RGB").save(path)
    _, expected = preprocess(draw(SEVEN))
    _, digit = preprocess(path)
    assert (digit.float() - expected.float()).abs().mean() < 3  # JPEG and WebP are lossy


def test_phone_photo_rotation_is_applied(tmp_path):
    image = draw(ELL).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 3  # orientation: the camera was upside down, show rotated by 180°
    image.rotate(180).save(tmp_path / "photo.jpg", exif=exif.tobytes())
    _, expected = preprocess(image)
    _, digit = preprocess(tmp_path / "photo.jpg")
    assert (digit.float() - expected.float()).abs().mean() < 3


def test_arrays_and_tensors_are_accepted():
    image = draw(SEVEN)
    _, expected = preprocess(image)
    assert torch.equal(preprocess(np.asarray(image))[1], expected)
    assert torch.equal(preprocess(torch.from_numpy(np.asarray(image).copy()))[1], expected)
    with pytest.raises(ImageError, match="path"):
        preprocess(42)


# --- bad files and bad images: clear errors ---------------------------------------


def _error(image_or_path) -> str:
    with pytest.raises(ImageError) as info:
        preprocess(image_or_path)
    assert isinstance(info.value, MnistLabError) and isinstance(info.value, ValueError)
    return str(info.value)


def test_missing_file(tmp_path):
    message = _error(tmp_path / "my_digit.png")
    assert "No image file" in message and "my_digit.png" in message


def test_a_folder_is_not_an_image(tmp_path):
    assert "folder" in _error(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    message = _error(path)
    assert "empty.png" in message and "empty (0 bytes)" in message


def test_text_file_renamed_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are my notes, not a picture\n")
    message = _error(path)
    assert "notes.png" in message and "not an image" in message and "PNG, JPEG" in message


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.png"
    noise = np.random.default_rng(0).integers(0, 255, (300, 300), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    message = _error(path)
    assert "cut.png" in message and "truncated or damaged" in message


def test_huge_image_is_refused_from_its_header(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_header(8000, 8000))  # 64 megapixels declared in a 60-byte file
    assert 8000 * 8000 > MAX_PIXELS
    message = _error(path)
    assert "8000×8000" in message and "megapixel" in message and "decompression" in message


def test_gigantic_image_beyond_pillows_own_guard(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(30000, 30000))  # Pillow itself refuses this one
    assert "megapixel" in _error(path)


@pytest.mark.parametrize("level", [255, 0, 128])
def test_blank_or_constant_image(level):
    message = _error(Image.new("L", (300, 400), level))
    assert "No ink found" in message and "one flat colour" in message and f"grey level {level}" in message


def test_faint_noise_is_not_ink():
    rng = np.random.default_rng(0)
    paper = np.clip(rng.normal(240, 2, (300, 400)), 0, 255).astype(np.uint8)
    message = _error(Image.fromarray(paper))
    assert "No ink found" in message


def test_two_digits_side_by_side():
    two = draw([[(40, 100), (40, 300)], [(120, 100), (260, 100), (170, 300)]], size=(300, 400))
    message = _error(two)
    assert "looks like 2 digits" in message and "one digit per image" in message


def test_three_digits_side_by_side():
    strokes = [[(x, 100), (x + 30, 300)] for x in (40, 140, 240)]
    assert "looks like 3 digits" in _error(draw(strokes, size=(330, 400)))


# --- the shipped samples and predictions ------------------------------------------


def test_samples_are_shipped_in_many_image_kinds():
    paths = sample_paths()
    assert [sample_label(p) for p in paths] == list(range(10))
    modes = {Image.open(p).mode for p in paths}
    assert {"RGB", "RGBA", "LA", "P", "I;16"} <= modes
    for path in paths:
        with Image.open(path) as image:
            assert image.size != (28, 28) and image.size[0] >= 300


@pytest.fixture(scope="module")
def small_cnn():
    """Keras' CNN (T4) trained for one epoch on 10,000 digits: about 95 % accurate, seconds on a CPU."""
    model = build_model("keras_cnn", seed=0)
    history = fit(
        model, device="cpu", limit=10_000, test_limit=1000, epochs=1, batch_size=64, lr=2e-3, progress=False, log=None
    )
    assert history.final_test_acc > 0.9
    return model


@pytest.mark.slow
def test_every_shipped_sample_is_predicted_correctly(small_cnn):
    wrong = []
    for path in sample_paths():
        guesses = predict_digit(small_cnn, path)
        if guesses[0][0] != sample_label(path):
            wrong.append((path.name, guesses))
    assert not wrong, f"misread samples: {wrong}"


def test_predict_digit_gives_sorted_top_k(small_cnn):
    guesses = predict_digit(small_cnn, sample_paths()[7], k=4)
    assert len(guesses) == 4 and len({d for d, _ in guesses}) == 4
    probs = [p for _, p in guesses]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert all(isinstance(d, int) and 0 <= d <= 9 for d, _ in guesses)


def test_figures():
    path = sample_paths()[3]
    _, digit, steps = preprocess(path, return_steps=True)
    assert list(steps) == [name for name in PREPROCESS_STEPS if name != "thickened"]
    assert steps["centred"].shape == (28, 28) and steps["scaled"].shape[0] == 20
    fig = plot_preprocessing_steps(steps)
    assert isinstance(fig, Figure) and len(fig.axes) == len(steps)
    fig = plot_digit_predictions([steps["original"]], [digit], [[(3, 0.9), (8, 0.05), (5, 0.01)]], labels=[3])
    assert isinstance(fig, Figure) and len(fig.axes) == 2


# --- phone photos: every condition, every refusal ---------------------------------


def _reference(coverage: np.ndarray, angle: float = 0.0) -> torch.Tensor:
    """The digit preprocessed from a perfect scan: the ink on white paper, nothing else (turned by `angle`°)."""
    padded = np.pad(coverage, 40)
    if angle:
        padded = np.clip(ndimage.rotate(padded, angle, reshape=True, order=1), 0.0, 1.0)
    return preprocess(Image.fromarray(np.rint(255 * (1 - padded)).astype(np.uint8)))[1]


def _similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.numpy().ravel().astype(float), b.numpy().ravel().astype(float))[0, 1])


# A slanted photo turns the digit (a sheet on a desk by up to 5°, the camera by up to 10°, plus the
# perspective): it is compared with the scan turned by the angle that matches best.
TURNS = range(-20, 21, 4)


def _turned_similarity(digit: torch.Tensor, coverage: np.ndarray) -> float:
    return max(_similarity(digit, _reference(coverage, angle)) for angle in TURNS)


def _photo_sources(test_set) -> list[np.ndarray]:
    images, _ = test_set
    mnist = [mnist_ink(images[i].numpy()) for i in (0, 1, 2)]
    return mnist + [drawn_digit(d, np.random.default_rng(d)) for d in (4, 7)]


@pytest.mark.parametrize("condition", TUNED)
@pytest.mark.slow
def test_every_photo_condition_gives_back_the_clean_digit(condition, test_set):
    """Desk, shadow, ruled or squared paper, noise, low contrast, perspective, chalk: same digit as a scan.

    A slanted photo is compared with the scan turned to match (`TURNS`).
    """
    for seed, coverage in enumerate(_photo_sources(test_set)):
        _, digit = preprocess(make_photo(coverage, condition, seed=seed))
        if condition in SLANTED:
            similarity = _turned_similarity(digit, coverage)
        else:
            similarity = _similarity(digit, _reference(coverage))
        assert similarity > 0.75, f"{condition}, photo {seed}: similarity {similarity:.2f}"


@pytest.mark.parametrize("condition", HELD_OUT)
@pytest.mark.slow
def test_held_out_conditions_give_the_digit_or_a_refusal(condition, test_set):
    """Conditions kept out of tuning may fail, but never silently: a recognisable digit, or a refusal."""
    for seed, coverage in enumerate(_photo_sources(test_set)):
        try:
            _, digit = preprocess(make_photo(coverage, condition, seed=seed))
        except ImageError as refusal:
            assert refusal.steps and "." in str(refusal)  # says what it saw, with the steps so far
            continue
        assert _similarity(digit, _reference(coverage)) > 0.5, f"{condition}, photo {seed}"


# CONDITIONS as first measured, in order: a condition's index sets its photos' seeds, so new
# conditions are appended and moving one between TUNED and HELD_OUT changes none of its photos.
FIRST_CONDITIONS = (
    "plain", "desk", "shadow", "ruled", "squared", "noise_jpeg", "low_contrast", "perspective", "chalkboard",
    "desk_shadow", "speckle_blur", "dim_light", "desk_ruled_shadow", "tilted_desk_dim",
)  # fmt: skip


def test_conditions_split_into_tuned_and_held_out():
    assert set(TUNED) | set(HELD_OUT) == set(CONDITIONS) and not set(TUNED) & set(HELD_OUT)
    assert len(CONDITIONS) == len(set(CONDITIONS))
    assert CONDITIONS[: len(FIRST_CONDITIONS)] == FIRST_CONDITIONS
    with pytest.raises(ValueError, match="unknown condition"):
        make_photo(drawn_digit(1, np.random.default_rng(0)), "underwater", seed=0)


def test_photos_are_deterministic():
    coverage = drawn_digit(3, np.random.default_rng(0))
    a, b = make_photo(coverage, "ruled", seed=5), make_photo(coverage, "ruled", seed=5)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(make_photo(coverage, "ruled", seed=6)))


def test_paper_on_a_desk_is_not_read_as_the_digit():
    """The review's worst case: the desk around the sheet used to make the whole sheet "the digit"."""
    coverage = drawn_digit(7, np.random.default_rng(1))
    photo = make_photo(coverage, "desk", seed=3)
    _, digit, steps = preprocess(photo, return_steps=True)
    assert _similarity(digit, _reference(coverage)) > 0.75
    assert (steps["background"] == 0).mean() > 0.1  # the desk was masked out


def test_a_shadow_is_not_ink():
    """One side of the sheet at 43 % of the light (a soft shadow): the shadow is not taken for ink.

    This was a strict xfail: the bold stroke running into the shadowed side joined it in the old
    paper search (a brightness threshold), whose edge then looked sharp, so the shadow was masked as
    a desk. The paper is now cut only along steep edges of log brightness, which a shadow has not.
    A hard-edged shadow across the digit is not handled (the notebook's advice says so).
    """
    image = np.asarray(draw(SEVEN), dtype=np.float64)
    light = np.linspace(1.0, 0.43, 300)[None, :]  # the light falls off across the sheet
    shaded = Image.fromarray(np.rint(image * light).astype(np.uint8))
    assert _similarity(preprocess(shaded)[1], preprocess(draw(SEVEN))[1]) > 0.9


# Photos of _photo_sources under "desk_shadow" that the first pipeline misread (similarity 0.05-0.45,
# or refused): (source, seed).
DESK_SHADOW_FAILURES = [(0, 4), (1, 5), (2, 4), (3, 0), (4, 5)]


def _sheet_on_desk_in_shadow(darkest: float = 0.45) -> tuple[np.ndarray, np.ndarray]:
    """A grey photo ``(400, 300)`` of a sheet on a dark desk, light falling to `darkest` across it; the sheet's box."""
    photo = np.full((400, 300), 110.0)  # the desk
    sheet = np.zeros((400, 300), dtype=bool)
    sheet[50:350, 40:260] = True
    photo[sheet] = 235.0
    photo = np.minimum(photo, np.asarray(draw(SEVEN, width=20), dtype=np.float64))  # the 7 on the sheet
    light = np.linspace(1.0, darkest, 300)[None, :]  # (1, 300): the shadow falls over the sheet and desk alike
    return photo * light, sheet


def test_the_paper_under_a_shadow_is_kept_and_the_desk_dropped():
    """`find_paper` keeps the shadowed side of the sheet (the first pipeline cut it off as desk)."""
    photo, sheet = _sheet_on_desk_in_shadow()
    paper = find_paper(photo)
    inner = ndimage.binary_erosion(sheet, iterations=15)  # (the mask keeps clear of the sheet's edge)
    assert paper[inner].mean() > 0.99
    assert paper[:, 200:260][inner[:, 200:260]].all()  # the darkest part of the sheet, at about half the light
    assert not paper[~sheet].any()  # no desk


def test_the_ink_side_is_found_next_to_a_desk_in_a_shadow():
    """Dark ink on a sheet in shadow on a desk; light chalk on a board: the polarity from the ink, not the light."""
    photo, _ = _sheet_on_desk_in_shadow()
    assert paper_is_light(photo, find_paper(photo))
    chalk = 255.0 - np.asarray(draw(SEVEN), dtype=np.float64) * 0.75  # light strokes on a dark board
    assert not paper_is_light(chalk, find_paper(chalk))


@pytest.mark.parametrize("source, seed", DESK_SHADOW_FAILURES)
def test_a_sheet_on_a_desk_under_a_shadow_gives_the_digit(source, seed, test_set):
    """desk_shadow, held out in the first measurement: 52 % read, 28 % wrong with p >= 0.9.

    Two causes, both fixed in `pipeline`: the polarity test (a median over paper, shadow and desk)
    took a sheet's lit corner next to the dark desk for light ink, and the paper search cut the
    shadowed part of the sheet off as desk.
    """
    coverage = _photo_sources(test_set)[source]
    _, digit, steps = preprocess(make_photo(coverage, "desk_shadow", seed=seed), return_steps=True)
    assert _similarity(digit, _reference(coverage)) > 0.75
    assert (steps["background"] == 0).mean() > 0.1  # the desk was masked out...
    assert (steps["background"] > 0).mean() > 0.3  # ...and the sheet, shadowed part included, kept


def _assert_read_right(model, test_set, condition: str, failures: list[tuple[int, int]]) -> None:
    """Each (source, seed) photo of _photo_sources under `condition` is read, not refused, as its digit."""
    _, labels = test_set
    digits = [int(labels[i]) for i in (0, 1, 2)] + [4, 7]  # the digits of _photo_sources
    for source, seed in failures:
        photo = make_photo(_photo_sources(test_set)[source], condition, seed=seed)
        reading = read_digit(model, photo)
        assert reading.refusal is None and reading.digit == digits[source], (source, seed, reading.describe())


@pytest.mark.slow
def test_a_desk_shadow_photo_is_read_right_not_confidently_wrong(small_cnn, test_set):
    """The photos the first pipeline failed on are read as their digit by a trained model."""
    _assert_read_right(small_cnn, test_set, "desk_shadow", DESK_SHADOW_FAILURES)


def test_the_sheets_edge_is_the_paper_next_to_the_desk():
    """`paper_border`: the band of paper within `SHEET_EDGE` pixels of the desk; nothing without a desk."""
    assert not paper_border(np.ones((60, 40), dtype=bool)).any()
    paper = np.zeros((60, 40), dtype=bool)
    paper[10:50, 8:32] = True  # a sheet, the desk all round it
    border = paper_border(paper)
    assert not (border & ~paper).any()  # only paper...
    distance = ndimage.distance_transform_cdt(paper, metric="chessboard")  # (60, 40): pixels to the desk
    assert np.array_equal(border, paper & (distance <= SHEET_EDGE))  # ...exactly the band next to the desk


def _sheet_on_desk_with_a_mark_at_its_edge() -> tuple[Image.Image, Image.Image]:
    """A 7 on a sheet on a dark desk, without and with a dark mark running across the sheet's edge."""
    photo = np.full((400, 300), 80.0)  # the desk
    photo[40:360, 30:270] = 235.0  # the sheet
    clean = np.minimum(photo, np.asarray(draw(SEVEN, width=20), dtype=np.float64))
    marked = clean.copy()
    marked[300:312, 20:70] = 80.0  # as dark as the desk, from the desk 40 pixels onto the sheet
    return tuple(Image.fromarray(np.rint(p).astype(np.uint8)) for p in (clean, marked))


def test_ink_at_the_sheets_edge_does_not_join_the_digit():
    """What touches the sheet's edge next to a desk is that edge, not the digit (tilted_desk_dim's miss).

    The paper mask keeps clear of the sheet's border, but a mark across it (here a strip
    of desk-dark; in a slanted photo a sliver of the border's step) reaches inside the
    mask: it was taken as a second piece of the digit and joined the crop.
    """
    clean, marked = _sheet_on_desk_with_a_mark_at_its_edge()
    _, expected = preprocess(clean)
    _, digit, steps = preprocess(marked, return_steps=True)
    assert (steps["background"] == 0).mean() > 0.1  # the desk was found...
    assert steps["cleaned"][300:312].max() > 100  # ...and part of the mark is inside the paper mask
    assert _similarity(digit, expected) > 0.95


# Photos of _photo_sources under "tilted_desk_dim" whose crop took in a sliver of the slanted
# sheet's edge before the fix (turned similarity 0.2-0.6): (source, seed).
TILTED_DESK_DIM_FAILURES = [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)]


@pytest.mark.slow  # five photos, about 2 s each; paper_border's own tests stay in the fast loop
@pytest.mark.parametrize("source, seed", TILTED_DESK_DIM_FAILURES)
def test_a_slanted_sheet_on_a_desk_in_dim_light_gives_the_digit(source, seed, test_set):
    """tilted_desk_dim, held out in the second measurement: 88 % read, 8 % wrong with p >= 0.9."""
    coverage = _photo_sources(test_set)[source]
    _, digit = preprocess(make_photo(coverage, "tilted_desk_dim", seed=seed))
    assert _turned_similarity(digit, coverage) > 0.75


@pytest.mark.slow
def test_a_tilted_desk_dim_photo_is_read_right_not_confidently_wrong(small_cnn, test_set):
    """The photos whose crop took in the sheet's edge are read as their digit by a trained model."""
    _assert_read_right(small_cnn, test_set, "tilted_desk_dim", TILTED_DESK_DIM_FAILURES)


def test_ruled_lines_do_not_join_the_digit():
    plain = draw(SEVEN)
    ruled = plain.copy()
    pen = ImageDraw.Draw(ruled)
    for y in range(20, 400, 28):
        pen.line([(0, y), (300, y)], fill=165, width=2)  # grey 165 lines, as in the review
    ruled = Image.fromarray(np.minimum(np.asarray(ruled), np.asarray(plain)))
    assert _similarity(preprocess(ruled)[1], preprocess(plain)[1]) > 0.9


@pytest.mark.parametrize("kind", ["gaussian", "salt_and_pepper"])
def test_heavy_noise_and_speckle(kind):
    rng = np.random.default_rng(0)
    image = np.asarray(draw(SEVEN), dtype=np.float64)
    if kind == "gaussian":
        noisy = image + rng.normal(0, 50, image.shape)  # σ = 50 grey levels
    else:
        noisy = image.copy()
        hit = rng.random(image.shape)
        noisy[hit < 0.02], noisy[hit > 0.98] = 0, 255  # 4 % of the pixels
    photo = Image.fromarray(np.rint(np.clip(noisy, 0, 255)).astype(np.uint8))
    assert _similarity(preprocess(photo)[1], preprocess(draw(SEVEN))[1]) > 0.85


def _refusal(image) -> tuple[str, dict]:
    with pytest.raises(ImageError) as info:
        preprocess(image)
    return str(info.value), info.value.steps


def test_a_blob_touching_the_edge_is_not_called_two_digits():
    """A dark blob at the edge (a finger, the desk) next to a digit: the digit is read, the blob ignored.

    (The old pipeline refused this as "2 digits side by side".) The thick pen of the blob drawing
    makes the 7 itself bolder, hence a looser match than 0.95.
    """
    with_blob = draw(SEVEN + [[(0, 150), (30, 250)]], width=40)
    _, digit = preprocess(with_blob)
    assert _similarity(digit, preprocess(draw(SEVEN, width=40))[1]) > 0.9


def test_only_ink_at_the_edge_is_refused_with_what_to_do():
    message, steps = _refusal(draw([[(0, 100), (120, 250)]], width=40))
    assert "touches the edge of the picture" in message and "margin" in message
    assert "digits side by side" not in message
    assert "cleaned" in steps  # the steps so far come with the refusal, to be shown


def test_an_mnist_digit_cut_by_the_frame_is_refused(test_set):
    images, _ = test_set
    digit = images[26].numpy()  # a 7 whose stroke reaches the bottom row of the 28×28 frame
    assert digit[-1].max() > 0
    photo = Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BICUBIC)
    message, _ = _refusal(photo)
    assert "touches the edge" in message or "cut off" in message


def test_a_tiny_mark_is_refused_as_too_small():
    message, _ = _refusal(draw([[(300, 300), (305, 308)]], size=(640, 640), width=3))
    assert "too small" in message and "Move closer" in message


def test_a_pattern_covering_the_picture_is_refused():
    ring = draw([arc_points(150, 200, 135, 185)], size=(300, 400), width=12)
    message, _ = _refusal(ring)
    assert "spans" in message and "of the picture" in message


def arc_points(cx, cy, rx, ry):
    angles = np.linspace(0, 2 * np.pi, 100)
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]


def test_pure_noise_is_refused():
    rng = np.random.default_rng(0)
    noise = np.clip(rng.normal(180, 30, (400, 300)), 0, 255).astype(np.uint8)
    message, _ = _refusal(Image.fromarray(noise))
    assert "No ink found" in message and "noise" in message


# --- reading: probabilities, the confidence flag, refusals as results -------------


def test_read_digit_reports_probability_and_flags_doubt(small_cnn):
    reading = read_digit(small_cnn, sample_paths()[7])
    assert reading.digit == 7 and reading.confident and reading.refusal is None
    assert reading.describe().startswith("prediction: 7 (probability")
    assert reading.digit_image.shape == (28, 28)
    clueless = build_model("softmax_regression", seed=0)
    with torch.no_grad():
        for p in clueless.parameters():
            p.zero_()  # every class equally likely: 0.10 each
    doubtful = read_digit(clueless, sample_paths()[7])
    assert not doubtful.confident and abs(doubtful.probability - 0.1) < 1e-6
    assert doubtful.describe().startswith("unsure:")


def test_read_digit_returns_a_refusal_instead_of_raising(small_cnn, tmp_path):
    reading = read_digit(small_cnn, Image.new("L", (300, 400), 255))
    assert reading.digit is None and not reading.confident and "No ink found" in reading.refusal
    assert reading.describe().startswith("refused: No ink found")
    with pytest.raises(ImageError, match="No image file"):
        read_digit(small_cnn, tmp_path / "missing.png")  # a file problem has nothing to show: raised


def test_shipped_photo_samples_show_harder_conditions():
    photos = sample_paths("photo")
    conditions = {p.stem.split("_", 2)[2] for p in photos}
    assert {"desk", "shadow", "ruled"} <= conditions
    assert all(0 <= sample_label(p) <= 9 for p in photos)


# --- drawing a digit: the canvas, headless ------------------------------------------

ONE = [(0.55, 0.15), (0.45, 0.85)]
SEVEN_STROKE = [(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]


def test_digit_pad_reads_strokes_headless(small_cnn):
    pad = DigitPad(small_cnn)
    reading = pad.add_stroke(stroke_points(SEVEN_STROKE))
    assert reading.digit == 7 and pad.reading is reading
    assert set(PREPROCESS_STEPS) - {"thickened"} <= set(reading.steps) | {"thickened"}
    pad.clear()
    assert pad.strokes == [] and pad.reading is None
    assert pad.add_stroke(stroke_points(ONE)).digit == 1
    with pytest.raises(InvalidParameterError, match="at least one point"):
        pad.add_stroke([])


def test_digit_pad_widget_builds_without_a_browser(small_cnn):
    pad = DigitPad(small_cnn)
    pad.add_stroke(stroke_points(ONE))
    box = pad.widget()  # ipycanvas and ipywidgets, no front end needed
    assert "prediction: 1" in pad._label.value and len(pad._steps.value) > 1000  # a PNG of the steps
    assert box.children[0].children[0] is pad._canvas


# --- arrays and files that are not plain pictures (issue 15, class 7) ------------------------


def _digit_array(scale=255.0):
    canvas = np.zeros((60, 60), dtype=np.float64)
    canvas[15:45, 27:33] = 1.0  # a "1": ink = 1, paper = 0, then turned dark-on-light below
    return (1.0 - canvas) * scale


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((40, 40), np.nan), "NaN or infinite"),
        (np.where(np.eye(40) > 0, np.inf, 255.0), "NaN or infinite"),
        (np.zeros((0, 28)), "at least one pixel"),
        ((_digit_array() / 255.0 - 0.1307) / 0.3081, "already normalised"),
    ],
)
def test_arrays_that_are_not_pixels_are_refused_with_the_reason(array, message):
    with pytest.raises(ImageError, match=message):
        preprocess(array)


def test_float_rgba_from_imread_and_16_bit_colour_read_as_the_same_digit():
    grey = _digit_array()  # float 0-255, dark ink on white
    _, reference = preprocess(grey.astype(np.uint8))
    rgba = np.dstack([grey / 255.0] * 3 + [np.ones_like(grey)])  # what plt.imread gives for a PNG
    colour16 = (np.dstack([grey] * 3) * 257).astype(np.uint16)
    for array in (rgba, colour16):
        _, digit = preprocess(array)
        assert torch.equal(digit, reference)


def test_an_animated_gif_is_refused_with_what_to_do(tmp_path):
    blank = Image.new("L", (60, 60), 255)
    digit = Image.fromarray(_digit_array().astype(np.uint8))
    path = tmp_path / "anim.gif"
    blank.save(path, save_all=True, append_images=[digit])
    with pytest.raises(ImageError, match="animation of 2 frames"):
        preprocess(path)
