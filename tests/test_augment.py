import pytest
import torch
import torch.nn.functional as F

from mnistlab.data.augment import AugmentParams, BatchAugment, affine_grid, apply
from mnistlab.errors import ConfigError


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
