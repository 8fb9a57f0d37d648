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


class ConvNeXt(nn.Module):
    """A ConvNeXt-style classifier (Liu et al. 2022) from MONAI's MedNeXt blocks (Roy et al. 2023).

    MONAI ships MedNeXt only as a segmentation net, so the classifier's frame (stem, stages,
    pooled head) is written here; every block is MONAI's. Small inputs keep full resolution in
    the stem; larger ones are cut into 4x4 patches as in ConvNeXt.
    """

    def __init__(self, in_channels: int, out_features: int, image_size: int, spatial_dims: int, widths: tuple[int, ...], depth: int, kernel_size: int):
        from monai.networks.blocks.mednext_block import MedNeXtBlock, MedNeXtDownBlock

        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        dim = f"{spatial_dims}d"
        patch = 1 if image_size <= SMALL_INPUT else 4
        self.stem = conv(in_channels, widths[0], kernel_size=3 if patch == 1 else patch, stride=patch, padding=1 if patch == 1 else 0)
        stages: list[nn.Module] = []
        for index, width in enumerate(widths):
            blocks: list[nn.Module] = []
            if index:
                blocks.append(MedNeXtDownBlock(widths[index - 1], width, kernel_size=kernel_size, use_residual_connection=True, dim=dim))
            blocks += [MedNeXtBlock(width, width, kernel_size=kernel_size, dim=dim) for _ in range(depth)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.norm = nn.LayerNorm(widths[-1])
        self.head = nn.Linear(widths[-1], out_features)
        self.gradcam_layer = f"stages.{len(widths) - 1}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.stages(self.stem(x))).flatten(1)
        return self.head(self.norm(features))


@register_model("convnext", modality="image", lr=1e-3, weight_decay=0.05)
def convnext(
    in_channels: int, out_features: int, image_size: int = 28, spatial_dims: int = 2,
    widths: tuple[int, ...] = (32, 64, 128, 256), depth: int = 2, kernel_size: int = 5,
) -> nn.Module:
    """A small ConvNeXt-style net (depthwise convolutions, inverted bottlenecks) from MONAI's MedNeXt blocks."""
    return ConvNeXt(in_channels, out_features, image_size, spatial_dims, tuple(widths), depth, kernel_size)


class VisionTransformer(nn.Module):
    """MONAI's ViT as a classifier: the class token's logits (MONAI's ViT also returns every block's states)."""

    def __init__(self, in_channels: int, out_features: int, image_size: int, spatial_dims: int, hidden_size: int, layers: int, heads: int):
        from monai.networks.nets import ViT

        super().__init__()
        patch = patch_size(image_size)
        self.vit = ViT(
            in_channels=in_channels, img_size=image_size, patch_size=patch, hidden_size=hidden_size, mlp_dim=4 * hidden_size,
            num_layers=layers, num_heads=heads, classification=True, num_classes=out_features, post_activation=None,
            spatial_dims=spatial_dims, dropout_rate=0.1, qkv_bias=True,
        )
        for block in self.vit.blocks:  # MONAI builds a cross-attention norm even without cross-attention: unused weights break DDP
            block.norm_cross_attn = nn.Identity()
        # Grad-CAM on the patch embedding: a map at patch resolution (a transformer has no later spatial layer)
        self.gradcam_layer = "vit.patch_embedding.patch_embeddings"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(x)[0]


def patch_size(image_size: int) -> int:
    """The smallest patch that divides the image into at most 7 patches a side (14 above 64 px): CPU-sized token counts."""
    most = 7 if image_size <= SMALL_INPUT else 14
    return next(p for p in range(1, image_size + 1) if image_size % p == 0 and image_size // p <= most)


@register_model("vit", modality="image", lr=5e-4, weight_decay=0.05)
def vit(
    in_channels: int, out_features: int, image_size: int = 28, spatial_dims: int = 2, hidden_size: int = 192, layers: int = 6, heads: int = 3
) -> nn.Module:
    """A small Vision Transformer (MONAI's ViT; ViT-Tiny widths, six layers), patches sized to the input."""
    return VisionTransformer(in_channels, out_features, image_size, spatial_dims, hidden_size, layers, heads)
