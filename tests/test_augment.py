import math

import pytest
import torch
import torch.nn.functional as F

from mnistlab.core.errors import ConfigError
from mnistlab.data.augment import AugmentParams, BatchAugment, affine_grid, apply


def params(n=1, **overrides) -> AugmentParams:
    base = dict(angle=0.0, scale=1.0, shift_x=0.0, shift_y=0.0, hflip=False, vflip=False, brightness=1.0, contrast=1.0)
    base.update(overrides)
    return AugmentParams(**{k: torch.full((n,), v) if not isinstance(v, bool) else torch.full((n,), v, dtype=torch.bool)
                            for k, v in base.items()})


@pytest.fixture
def image():
    torch.manual_seed(0)
    x = torch.zeros(1, 1, 28, 28)
    x[..., 6:14, 9:20] = torch.rand(1, 1, 8, 11)
    return x


@pytest.mark.parametrize("height, width", [(28, 28), (5, 9)])
def test_affine_grid_equals_torch(height, width):
    theta = torch.randn(7, 2, 3, generator=torch.Generator().manual_seed(0))
    expected = F.affine_grid(theta, [7, 1, height, width], align_corners=False)
    assert torch.allclose(affine_grid(theta, height, width), expected, atol=1e-6)


def test_identity_parameters_change_nothing(image):
    assert torch.allclose(apply(image, params()), image, atol=1e-6)


def test_rotation_is_counter_clockwise_about_the_centre(image):
    rotated = apply(image, params(angle=90.0), photometric=False)
    assert torch.allclose(rotated, torch.rot90(image, k=1, dims=(-2, -1)), atol=1e-5)
    assert not torch.allclose(rotated, torch.rot90(image, k=-1, dims=(-2, -1)), atol=1e-2)


def test_shift_moves_content_by_whole_pixels(image):
    shifted = apply(image, params(shift_x=3.0, shift_y=-2.0), photometric=False)
    expected = torch.roll(image, shifts=(-2, 3), dims=(-2, -1))  # content stays inside: roll == shift
    assert torch.allclose(shifted, expected, atol=1e-5)


def test_flips_match_torch_flip(image):
    assert torch.allclose(apply(image, params(hflip=True), photometric=False), image.flip(-1), atol=1e-6)
    assert torch.allclose(apply(image, params(vflip=True), photometric=False), image.flip(-2), atol=1e-6)


def test_zoom_enlarges_the_ink(image):
    zoomed = apply(image, params(scale=1.5), photometric=False)
    assert (zoomed > 0.05).sum() > 1.8 * (image > 0.05).sum()


def test_brightness_and_contrast_formulas(image):
    bright = apply(image, params(brightness=0.5), geometric=False)
    assert torch.allclose(bright, image * 0.5, atol=1e-6)
    contrast = apply(image, params(contrast=2.0), geometric=False)
    mean = image.mean()
    assert torch.allclose(contrast, ((image - mean) * 2 + mean).clamp(0, 1), atol=1e-6)


def test_each_sample_gets_its_own_parameters():
    aug = BatchAugment(rotation=30, shift=2, scale=0.1)
    same = torch.rand(1, 1, 28, 28).round().repeat(8, 1, 1, 1)
    out = aug(same, generator=torch.Generator().manual_seed(0))
    assert out.shape == same.shape and out.dtype == same.dtype
    distinct = {tuple(o.flatten()[::37].tolist()) for o in out}
    assert len(distinct) == 8


def test_sampled_ranges_and_probabilities():
    aug = BatchAugment(rotation=10, shift=2, scale=0.1, hflip=0.3, vflip=0.0, brightness=0.2, contrast=0.5)
    p = aug.sample(20000, generator=torch.Generator().manual_seed(1))
    assert p.angle.abs().max() <= 10 and p.angle.abs().max() > 9.9
    assert p.shift_x.abs().max() <= 2 and p.shift_y.abs().max() <= 2
    assert p.scale.min() >= 0.9 and p.scale.max() <= 1.1
    assert abs(p.hflip.float().mean().item() - 0.3) < 0.02 and not p.vflip.any()
    assert p.brightness.min() >= 0.8 and p.brightness.max() <= 1.2
    assert p.contrast.min() >= 0.5 and p.contrast.max() <= 1.5


def test_same_generator_seed_same_result_and_disabled_is_identity():
    aug = BatchAugment(rotation=15, shift=2, brightness=0.3)
    x = torch.rand(4, 1, 28, 28)
    a = aug(x, generator=torch.Generator().manual_seed(5))
    b = aug(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.allclose(a, x)
    assert BatchAugment()(x) is x


@pytest.mark.parametrize("kwargs, message", [
    (dict(rotation=-1), "augment.rotation must be >= 0"),
    (dict(hflip=1.5), "augment.hflip is a probability"),
    (dict(scale=1.0), "augment.scale must be < 1"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BatchAugment(**kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_gpu():
    x = torch.rand(16, 1, 28, 28, device="cuda")
    out = BatchAugment(rotation=10, shift=2, hflip=0.5)(x, generator=torch.Generator(device="cuda").manual_seed(0))
    assert out.device.type == "cuda"


def test_zero_alpha_elastic_is_the_identity(image):
    x = image.repeat(4, 1, 1, 1)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(BatchAugment(elastic_alpha=0.0, elastic_sigma=4.0)(x, generator=gen), x)
    from mnistlab.data.augment import displacement_field

    zero = displacement_field(4, 28, 28, 0.0, 4.0, gen, x)
    assert torch.allclose(apply(x, params(4), displacement=zero), x, atol=1e-6)


def test_elastic_field_magnitude_follows_alpha_and_smoothness_sigma():
    from mnistlab.data.augment import displacement_field

    like = torch.zeros(1)

    def field(alpha, sigma):
        return displacement_field(64, 28, 28, alpha, sigma, torch.Generator().manual_seed(3), like)

    assert field(34.0, 4.0).shape == (64, 28, 28, 2)
    assert torch.allclose(field(68.0, 4.0), 2 * field(34.0, 4.0), atol=1e-5)  # linear in alpha
    inner = (slice(None), slice(8, 20), slice(8, 20))  # away from the zero padding at the border

    def roughness(f):  # neighbour differences relative to the field's own size
        return (f[:, :, 1:] - f[:, :, :-1])[inner].abs().mean() / f[inner].abs().mean()

    assert roughness(field(34.0, 1.0)) > 2 * roughness(field(34.0, 4.0)) > 0
    # uniform(-1, 1) smoothed by a Gaussian of sigma 4: std ~ 0.577 / (2 sqrt(pi) 4) = 0.041, x 34 = 1.4 px
    assert 0.8 < field(34.0, 4.0)[inner].std().item() < 2.0


def test_elastic_distortion_moves_ink_a_little_and_is_deterministic(image):
    x = image.repeat(8, 1, 1, 1)
    aug = BatchAugment(elastic_alpha=34.0, elastic_sigma=4.0)
    a = aug(x, generator=torch.Generator().manual_seed(7))
    b = aug(x, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and not torch.allclose(a, x, atol=1e-3)
    assert len({tuple(o.flatten()[::29].tolist()) for o in a}) == 8  # a field of its own per sample
    assert (a.sum() - x.sum()).abs() / x.sum() < 0.15  # the ink moves, little is lost


def test_random_erasing_masks_follow_p_area_and_aspect():
    from mnistlab.data.augment import erase_masks

    masks = erase_masks(4000, 28, 28, 0.5, (0.1, 0.2), (0.5, 2.0), "cpu", torch.Generator().manual_seed(0))
    erased = masks.flatten(1).any(1)
    assert abs(erased.float().mean().item() - 0.5) < 0.03
    areas = masks.flatten(1).sum(1)[erased].float() / (28 * 28)
    assert areas.min() > 0.07 and areas.max() < 0.24  # rounding to whole pixels moves the bounds a little
    rows = masks.any(-1).sum(-1).flatten()[erased].float()
    cols = masks.any(-2).sum(-1).flatten()[erased].float()
    assert (rows / cols).min() > 0.4 and (rows / cols).max() < 2.5
    assert torch.equal(masks, erase_masks(4000, 28, 28, 0.5, (0.1, 0.2), (0.5, 2.0), "cpu",
                                          torch.Generator().manual_seed(0)))
    x = torch.ones(4000, 1, 28, 28)
    out = BatchAugment(erase_p=1.0, erase_scale=(0.1, 0.2))(x, generator=torch.Generator().manual_seed(0))
    assert ((out == 0).flatten(1).sum(1) > 0).all()  # every image lost a rectangle, set to 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(elastic_alpha=-1), "augment.elastic_alpha must be >= 0"),
    (dict(elastic_sigma=0), "augment.elastic_sigma must be > 0"),
    (dict(erase_p=2), "augment.erase_p is a probability"),
    (dict(erase_scale=[0.3, 0.1]), "augment.erase_scale must be"),
    (dict(erase_ratio=[1.0]), "augment.erase_ratio must be"),
])
def test_bad_elastic_and_erasing_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BatchAugment(**kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_elastic_and_erasing_run_on_the_gpu():
    x = torch.rand(16, 1, 28, 28, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    out = BatchAugment(rotation=10, elastic_alpha=34, erase_p=0.5)(x, generator=gen)
    assert out.device.type == "cuda" and out.shape == x.shape


def test_stroke_thickness_thickens_or_thins_each_chosen_digit():
    digit = torch.zeros(64, 1, 28, 28)
    digit[..., 8:20, 12:16] = 1.0  # a 4-pixel-wide upright stroke
    out = BatchAugment(stroke_p=1.0, stroke_radius=2)(digit, generator=torch.Generator().manual_seed(0))
    ink = (out > 0.5).flatten(1).sum(1)
    widths = (out[:, 0, 14] > 0.5).sum(1)  # the stroke's width across its middle row
    assert set(widths.tolist()) == {0, 2, 6, 8}  # eroded by 2 or 1, dilated by 1 or 2: each sample its own
    assert (ink > 48).sum() > 20 and (ink < 48).sum() > 20  # both directions, about half each
    untouched = BatchAugment(stroke_p=0.0)(digit, generator=torch.Generator().manual_seed(0))
    assert torch.equal(untouched, digit)


def test_blur_spreads_ink_by_its_passes_and_keeps_its_sum():
    dot = torch.zeros(200, 1, 28, 28)
    dot[..., 14, 14] = 1.0
    out = BatchAugment(blur_p=0.5, blur_passes=2)(dot, generator=torch.Generator().manual_seed(0))
    spread = (out > 0).flatten(1).sum(1)
    assert set(spread.tolist()) == {1, 9, 25}  # untouched, one 3x3 pass, two passes
    assert 0.35 < (spread == 1).float().mean() < 0.65
    assert torch.allclose(out.flatten(1).sum(1), torch.ones(200), atol=1e-5)  # blurring moves ink, adds none


@pytest.mark.parametrize("settings, message", [
    (dict(stroke_p=1.5), "augment.stroke_p is a probability"),
    (dict(stroke_radius=0), "augment.stroke_radius must be a whole number from 1 to 4, got 0"),
    (dict(blur_passes=2.5), "augment.blur_passes must be a whole number, got 2.5"),
    (dict(blurr_p=0.5), "augment.blurr_p: not an augmentation option"),
    (dict(shear=60), "augment.shear must be degrees from 0 to 45, got 60"),
    (dict(shear=-5), "augment.shear must be degrees from 0 to 45, got -5"),
])
def test_writing_style_options_refuse_bad_values_in_one_line(settings, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        BatchAugment(**settings)


def test_low_resolution_shrinks_then_enlarges_each_chosen_digit():
    digit = torch.zeros(300, 1, 28, 28)
    digit[..., 8:20, 13:15] = 1.0  # a sharp 2-pixel stroke
    out = BatchAugment(lowres_p=0.5, lowres_side=8)(digit, generator=torch.Generator().manual_seed(0))
    soft = ((out > 0.02) & (out < 0.98)).flatten(1).any(1)  # grey edges: shrunk and enlarged again
    assert 0.4 < soft.float().mean() < 0.6  # p 0.5: half of them, each at one of three sides
    assert torch.equal(out[~soft], digit[~soft])  # the others untouched
    widths = {int((o[0, 14] > 0.02).sum()) for o in out[soft]}
    assert len(widths) == 3  # three sides, three blurs of the same stroke
    assert (out.flatten(1).sum(1) / digit.flatten(1).sum(1)).sub(1).abs().max() < 0.3  # ink kept, roughly


def test_stretch_widens_or_narrows_each_digit_and_leaves_other_streams_alone():
    block = torch.zeros(64, 1, 28, 28)
    block[..., 8:20, 10:18] = 1.0
    out = BatchAugment(stretch=0.5)(block, generator=torch.Generator().manual_seed(0))
    factor = out.flatten(1).sum(1) / block[0].sum()  # the ink's width changes by the stretch, its height not
    assert 0.49 < factor.min() < 0.6 and 1.4 < factor.max() < 1.51
    assert torch.equal((out > 0.5).any(dim=3).flatten(1), (block > 0.5).any(dim=3).flatten(1))  # same rows
    gen_a, gen_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    BatchAugment(rotation=10).sample(8, generator=gen_a)
    BatchAugment(rotation=10, stretch=0.2).sample(8, generator=gen_b)
    assert torch.equal(gen_a.get_state(), gen_b.get_state())  # drawn apart: other recipes' streams unchanged


def test_shear_slants_each_digit_and_leaves_other_streams_alone():
    bar = torch.zeros(256, 1, 28, 28)
    bar[..., 4:24, 13:15] = 1.0  # a vertical stroke, 20 rows tall
    out = BatchAugment(shear=30)(bar, generator=torch.Generator().manual_seed(0))
    cols = torch.arange(28.0)

    def centre(rows):  # the ink's mean column over some rows, per sample
        ink = out[:, 0, rows]
        return (ink * cols).sum((1, 2)) / ink.sum((1, 2))

    lean = centre(slice(4, 8)) - centre(slice(20, 24))  # top minus bottom, 16 rows apart
    assert lean.min() < -6 and lean.max() > 6 and lean.abs().max() < 16 * math.tan(math.radians(30)) + 0.5
    assert (lean > 0).float().mean().sub(0.5).abs() < 0.15  # both ways, about equally often
    assert torch.equal((out > 0.5).any(dim=3).flatten(1), (bar > 0.5).any(dim=3).flatten(1))  # same rows
    assert (out.flatten(1).sum(1) / bar[0].sum()).sub(1).abs().max() < 0.05  # ink kept
    gen_a, gen_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    BatchAugment(rotation=10).sample(8, generator=gen_a)
    BatchAugment(rotation=10, shear=10).sample(8, generator=gen_b)
    assert torch.equal(gen_a.get_state(), gen_b.get_state())


def test_strokes_can_be_thickened_only():
    digit = torch.zeros(64, 1, 28, 28)
    digit[..., 8:20, 12:16] = 1.0
    out = BatchAugment(stroke_p=1.0, stroke_thinner=0.0)(digit, generator=torch.Generator().manual_seed(0))
    assert set((out[:, 0, 14] > 0.5).sum(1).tolist()) == {6}  # every one a pixel thicker on each side


def test_a_partial_stroke_pass_thickens_part_of_the_way():
    digit = torch.zeros(400, 1, 28, 28)
    digit[..., 8:20, 12:14] = 1.0  # a 2-pixel stroke, MNIST's usual width
    out = BatchAugment(stroke_p=1.0, stroke_thinner=0.0, stroke_partial=0.5)(
        digit, generator=torch.Generator().manual_seed(0))
    edge = out[:, 0, 14, 11]  # the pixel a whole pass inks fully; a partial pass inks it part way
    whole, partial = edge == 1.0, (edge > 0) & (edge < 1)
    assert whole.logical_or(partial).all() and 0.4 < partial.float().mean() < 0.6  # half of them part way
    assert 0.4 < edge[partial].mean() < 0.6  # their reach uniform in (0, 1)
    assert torch.equal(out[:, 0, 14, 12:14], torch.ones(400, 2))  # the stroke itself stays inked
    whole_only = BatchAugment(stroke_p=1.0, stroke_thinner=0.0)(digit, generator=torch.Generator().manual_seed(0))
    assert torch.equal(whole_only[:, 0, 14, 11], torch.ones(400))  # off: whole passes, as before
