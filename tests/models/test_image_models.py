"""Every registered image model builds, trains a step, and survives a bundle round trip; stems follow the input size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medtorch.bundle import load_bundle, save_bundle
from medtorch.registry import create_model, list_models

IMAGE_MODELS = list_models(modality="image")
VOLUME_MODELS = ["resnet18", "small_cnn", "convnext", "vit"]
OUT = 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _forward_backward(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    model.train()
    output = model(batch)
    output.square().mean().backward()
    return output


def _assert_finite_gradients(model: torch.nn.Module) -> None:
    gradients = [p.grad for p in model.parameters() if p.requires_grad]
    assert gradients and all(g is not None for g in gradients), "some parameters got no gradient"
    assert all(torch.isfinite(g).all() for g in gradients)


def test_the_image_registry_lists_the_documented_models():
    assert {"resnet18", "resnet50", "densenet121", "small_cnn", "convnext", "vit"} <= set(IMAGE_MODELS)


@pytest.mark.parametrize("image_size", [28, 96])
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_2d_model_forward_and_backward_give_finite_outputs_per_class(name, image_size):
    torch.manual_seed(0)
    model = create_model(name, in_channels=1, out_features=OUT, image_size=image_size)
    output = _forward_backward(model, torch.randn(2, 1, image_size, image_size))
    assert output.shape == (2, OUT)
    assert torch.isfinite(output).all()
    _assert_finite_gradients(model)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_2d_model_accepts_three_channel_input(name):
    torch.manual_seed(0)
    model = create_model(name, in_channels=3, out_features=1, image_size=28).eval()
    with torch.no_grad():
        output = model(torch.randn(2, 3, 28, 28))
    assert output.shape == (2, 1) and torch.isfinite(output).all()


@pytest.mark.parametrize("name", VOLUME_MODELS)
def test_3d_model_forward_and_backward_give_finite_outputs_per_class(name):
    torch.manual_seed(0)
    model = create_model(name, in_channels=1, out_features=OUT, image_size=16, spatial_dims=3)
    output = _forward_backward(model, torch.randn(2, 1, 16, 16, 16))
    assert output.shape == (2, OUT)
    assert torch.isfinite(output).all()
    _assert_finite_gradients(model)


# ---------------------------------------------------------------- bundle round trip
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_bundle_round_trip_gives_identical_outputs(name, tmp_path, untrained_image_bundle):
    bundle = untrained_image_bundle(name)
    loaded = load_bundle(save_bundle(bundle, tmp_path / "bundle"))
    batch = bundle.preprocessor.transform(np.random.default_rng(1).integers(0, 256, size=(3, 20, 20), dtype=np.uint8))
    with torch.no_grad():
        before, after = bundle.model.eval()(batch), loaded.model(batch)
    torch.testing.assert_close(after, before, rtol=0, atol=0)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_bundle_round_trip_gives_identical_scores_on_raw_images(name, tmp_path, untrained_image_bundle):
    bundle = untrained_image_bundle(name, channels=3)
    loaded = load_bundle(save_bundle(bundle, tmp_path / "bundle"))
    raw = np.random.default_rng(2).integers(0, 256, size=(3, 20, 20, 3), dtype=np.uint8)
    np.testing.assert_array_equal(loaded.predict_scores(raw), bundle.predict_scores(raw))
    assert loaded.preprocessor.get_config() == bundle.preprocessor.get_config()


# ---------------------------------------------------------------- stem follows the input size
@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("image_size", [28, 64])
def test_resnet_stem_keeps_full_resolution_at_64_pixels_or_less(name, image_size):
    model = create_model(name, in_channels=1, out_features=1, image_size=image_size)
    assert model.conv1.stride == (1, 1)
    assert model.conv1.kernel_size == (3, 3)
    assert model.no_max_pool is True


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("image_size", [65, 96, 224])
def test_resnet_stem_downsamples_above_64_pixels(name, image_size):
    model = create_model(name, in_channels=1, out_features=1, image_size=image_size)
    assert model.conv1.stride == (2, 2)
    assert model.conv1.kernel_size == (7, 7)
    assert model.no_max_pool is False


def test_resnet_small_stem_keeps_the_input_resolution_after_the_stem():
    model = create_model("resnet18", in_channels=1, out_features=1, image_size=28).eval()
    with torch.no_grad():
        stem = model.act(model.bn1(model.conv1(torch.zeros(1, 1, 28, 28))))
    assert stem.shape[-2:] == (28, 28)


def test_3d_resnet_stem_follows_the_same_rule():
    small = create_model("resnet18", in_channels=1, out_features=1, image_size=16, spatial_dims=3)
    large = create_model("resnet18", in_channels=1, out_features=1, image_size=96, spatial_dims=3)
    assert small.conv1.stride == (1, 1, 1) and small.no_max_pool is True
    assert large.conv1.stride == (2, 2, 2) and large.no_max_pool is False


@pytest.mark.parametrize(("image_size", "stride", "pooled"), [(28, (1, 1), False), (64, (1, 1), False), (96, (2, 2), True)])
def test_densenet_stem_follows_the_input_size(image_size, stride, pooled):
    model = create_model("densenet121", in_channels=1, out_features=1, image_size=image_size)
    assert model.features.conv0.stride == stride
    assert isinstance(model.features.pool0, torch.nn.MaxPool2d) is pooled


@pytest.mark.parametrize(("image_size", "resolution"), [(28, 28), (64, 64), (96, 24)])
def test_convnext_stem_keeps_small_inputs_whole_and_patchifies_large_ones(image_size, resolution):
    model = create_model("convnext", in_channels=1, out_features=1, image_size=image_size).eval()
    with torch.no_grad():
        assert model.stem(torch.zeros(1, 1, image_size, image_size)).shape[-2:] == (resolution, resolution)


@pytest.mark.parametrize(("image_size", "patch"), [(28, 4), (64, 16), (96, 8), (224, 16), (13, 13)])
def test_vit_patches_cut_the_image_into_few_tokens(image_size, patch):
    from medtorch.models.imaging import patch_size

    assert patch_size(image_size) == patch
    model = create_model("vit", in_channels=1, out_features=2, image_size=image_size).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, image_size, image_size)).shape == (1, 2)
