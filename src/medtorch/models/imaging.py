"""Image classifiers, 2-D and 3-D, built with MONAI.

The stem follows the input size: at 64 pixels or less a 3x3 convolution without
down-sampling keeps the detail of a 28-pixel MedMNIST image; larger images get the usual
stride-2 7x7 stem and max pooling.

>>> model = create_model("resnet18", in_channels=1, out_features=2, image_size=28)
"""

from __future__ import annotations

import torch
from torch import nn

from medtorch.registry import register_model

SMALL_INPUT = 64


def _monai_resnet(layers: list[int], block: str, in_channels: int, out_features: int, image_size: int, spatial_dims: int) -> nn.Module:
    from monai.networks.nets import ResNet

    small = image_size <= SMALL_INPUT
    model = ResNet(
        block=block,
        layers=layers,
        block_inplanes=[64, 128, 256, 512],
        spatial_dims=spatial_dims,
        n_input_channels=in_channels,
        conv1_t_size=3 if small else 7,
        conv1_t_stride=1 if small else 2,
        no_max_pool=small,
        num_classes=out_features,
    )
    model.gradcam_layer = "layer4"  # Grad-CAM on the last residual stage's output
    return model


@register_model("resnet18", modality="image", lr=1e-3, weight_decay=1e-4)
def resnet18(in_channels: int, out_features: int, image_size: int = 28, spatial_dims: int = 2) -> nn.Module:
    """ResNet-18 (MONAI), 2-D or 3-D, with a stem sized to the input."""
    return _monai_resnet([2, 2, 2, 2], "basic", in_channels, out_features, image_size, spatial_dims)


@register_model("resnet50", modality="image", lr=1e-3, weight_decay=1e-4)
def resnet50(in_channels: int, out_features: int, image_size: int = 28, spatial_dims: int = 2) -> nn.Module:
    """ResNet-50 (MONAI), 2-D or 3-D, with a stem sized to the input."""
    return _monai_resnet([3, 4, 6, 3], "bottleneck", in_channels, out_features, image_size, spatial_dims)


@register_model("densenet121", modality="image", lr=1e-3, weight_decay=1e-4)
def densenet121(in_channels: int, out_features: int, image_size: int = 28, spatial_dims: int = 2) -> nn.Module:
    """DenseNet-121 (MONAI); small inputs get a 3x3 stem without pooling."""
    from monai.networks.layers.factories import Conv
    from monai.networks.nets import DenseNet121

    model = DenseNet121(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_features)
    if image_size <= SMALL_INPUT:
        model.features.conv0 = Conv[Conv.CONV, spatial_dims](in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.features.pool0 = nn.Identity()
    model.gradcam_layer = "class_layers.relu"
    return model


@register_model("small_cnn", modality="image", lr=1e-3, weight_decay=1e-4)
def small_cnn(in_channels: int, out_features: int, image_size: int = 28, spatial_dims: int = 2, width: int = 32, dropout: float = 0.3) -> nn.Module:
    """The seeds' small CNN: three convolution blocks and a dense head; fast on a CPU."""
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    norm = nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
    pool = nn.MaxPool2d if spatial_dims == 2 else nn.MaxPool3d
    squeeze = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
    layers: list[nn.Module] = []
    channels = in_channels
    for multiple in (1, 2, 4):
        layers += [conv(channels, width * multiple, 3, padding=1), norm(width * multiple), nn.ReLU(inplace=True), pool(2)]
        channels = width * multiple
    return nn.Sequential(*layers, squeeze, nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, out_features))
