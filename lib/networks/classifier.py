"""The thigh/leg region classifier of Agosti et al., MAGMA 2022, 35:467–483 (SPEC §1, §4).

RB(w,1,1), RB(2w,2,2), RB(4w,2,2), RB(8w,2,2), RB(16w,2,2) → flatten → dense(num_classes) on a
128×128 slice (128→64→32→16→8). Returns logits; the paper's softmax is left to the loss /
the caller. Class order is ``lib.labels.REGIONS``: thigh = 0, leg = 1. With ``width=32`` this
is the published classifier: 7.06 M parameters.

The flatten runs over NCHW (channel-major); weights converted from the original channels-last
Keras model would need their dense rows permuted accordingly.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from lib.networks.blocks import ResidualBlock, glorot_init

# (channel multiplier of the base width, first kernel, first stride) per level.
CLASSIFIER_LEVELS = ((1, 1, 1), (2, 2, 2), (4, 2, 2), (8, 2, 2), (16, 2, 2))


class RegionClassifier(nn.Module):
    """Slice classifier: is this axial slice a thigh or a leg? NCHW in, (N, classes) logits out.

    Args:
        in_channels: image channels (1).
        num_classes: output classes (2: thigh, leg).
        width: base width ``w`` = channels of the first block (32 in the paper).
        input_size: square input side in pixels (128 in the paper); a multiple of 16, fixed
            because the dense layer sees the flattened final feature map.
        input_dropout: dropout probability applied to the input image (SPEC §5: 0.2), kept as
            the module ``input_dropout`` for Monte-Carlo dropout.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, width: int = 32,
                 input_size: int = 128, input_dropout: float = 0.2):
        super().__init__()
        self.size_multiple = math.prod(stride for _, _, stride in CLASSIFIER_LEVELS)
        if min(in_channels, num_classes, width) < 1 or not 0.0 <= input_dropout < 1.0:
            raise ValueError("in_channels, num_classes and width must be >= 1 and "
                             f"0 <= input_dropout < 1, got {in_channels}, {num_classes}, "
                             f"{width}, {input_dropout}")
        if input_size < self.size_multiple or input_size % self.size_multiple:
            raise ValueError(f"input_size {input_size} must be a positive multiple of "
                             f"{self.size_multiple}")
        self.config = {"in_channels": in_channels, "num_classes": num_classes, "width": width,
                       "input_size": input_size, "input_dropout": input_dropout}
        self.in_channels, self.num_classes, self.input_size = in_channels, num_classes, input_size
        self.default_input_size = input_size
        self.input_dropout = nn.Dropout(input_dropout)

        self.encoder = nn.ModuleList()
        previous = in_channels
        for mult, kernel, stride in CLASSIFIER_LEVELS:
            self.encoder.append(ResidualBlock(previous, width * mult, kernel, stride))
            previous = width * mult
        final_side = input_size // self.size_multiple
        self.flatten = nn.Flatten()
        self.dense = nn.Linear(previous * final_side * final_side, num_classes)
        glorot_init(self)

    def check_input(self, x: Tensor) -> None:
        """Raise ValueError unless ``x`` is (N, in_channels, input_size, input_size)."""
        expected = (self.in_channels, self.input_size, self.input_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected input (N, {expected[0]}, {expected[1]}, {expected[2]}), "
                             f"got {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        x = self.input_dropout(x)
        for block in self.encoder:
            x = block(x)
        return self.dense(self.flatten(x))
