"""The 2D residual VNet segmenter of Agosti et al., MAGMA 2022, 35:467–483 (SPEC §4).

Encoder RB(w,1,1), RB(2w,2,2), RB(4w,2,2), RB(8w,2,2), RB(16w,2,2), RB(32w,3,3): a 432×432
slice goes 432→216→108→54→27→9. The decoder mirrors it with ``UpBlock``s (transposed conv
3×3/3 for the deepest level, 2×2/2 otherwise), concatenating the encoder feature of each level,
and a 1×1 conv gives the class logits. The paper's softmax is left to the loss / the caller.
With ``width=32`` and 13 classes this is the published network: 45.4 M parameters.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from lib.networks.blocks import ResidualBlock, UpBlock, glorot_init

# (channel multiplier of the base width, first kernel, first stride) per encoder level.
ENCODER_LEVELS = ((1, 1, 1), (2, 2, 2), (4, 2, 2), (8, 2, 2), (16, 2, 2), (32, 3, 3))


class ResidualVNet2D(nn.Module):
    """Residual VNet for one region (thigh or leg), NCHW in, NCHW logits out.

    Args:
        in_channels: image channels (1: the first-echo GRE magnitude).
        num_classes: output channels, background included (thigh 13, leg 7;
            ``lib.labels.num_classes``).
        width: base width ``w`` = channels of the first level (32 in the paper).
        input_dropout: dropout probability applied to the input image (SPEC §5: 0.2); kept as
            the module ``input_dropout`` so ``enable_mc_dropout`` can sample it at inference.

    Inputs must be ``(N, in_channels, H, W)`` with H and W multiples of ``size_multiple``
    (48 = product of the encoder strides; the model grid is 432 = 9 × 48).
    """

    default_input_size = 432

    def __init__(self, in_channels: int = 1, num_classes: int = 13, width: int = 32,
                 input_dropout: float = 0.2):
        super().__init__()
        if min(in_channels, num_classes, width) < 1 or not 0.0 <= input_dropout < 1.0:
            raise ValueError("in_channels, num_classes and width must be >= 1 and "
                             f"0 <= input_dropout < 1, got {in_channels}, {num_classes}, "
                             f"{width}, {input_dropout}")
        self.config = {"in_channels": in_channels, "num_classes": num_classes, "width": width,
                       "input_dropout": input_dropout}
        self.in_channels, self.num_classes = in_channels, num_classes
        self.size_multiple = math.prod(stride for _, _, stride in ENCODER_LEVELS)
        self.input_dropout = nn.Dropout(input_dropout)

        channels = [width * mult for mult, _, _ in ENCODER_LEVELS]
        self.encoder = nn.ModuleList()
        previous = in_channels
        for out, (_, kernel, stride) in zip(channels, ENCODER_LEVELS):
            self.encoder.append(ResidualBlock(previous, out, kernel, stride))
            previous = out
        # Decoder level i upsamples level i+1 by that level's stride back to level i's size.
        self.decoder = nn.ModuleList(
            UpBlock(channels[i + 1], channels[i], scale=ENCODER_LEVELS[i + 1][2])
            for i in reversed(range(len(channels) - 1)))
        self.head = nn.Conv2d(channels[0], num_classes, kernel_size=1)
        glorot_init(self)

    def check_input(self, x: Tensor) -> None:
        """Raise ValueError unless ``x`` is (N, in_channels, H, W), H, W multiples of 48."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if height % self.size_multiple or width % self.size_multiple or min(height, width) == 0:
            raise ValueError(f"input size {height}x{width} is not supported: height and width "
                             f"must be positive multiples of {self.size_multiple} (e.g. 432)")

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        x = self.input_dropout(x)
        features = []
        for block in self.encoder:
            x = block(x)
            features.append(x)
        for block, skip in zip(self.decoder, reversed(features[:-1])):
            x = block(x, skip)
        return self.head(x)
