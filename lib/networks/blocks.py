"""Building blocks of the published networks (Agosti et al., MAGMA 2022, 35:467–483; SPEC §4).

- ``ResidualBlock`` = RB(c, k_first, s_first): conv(k_first, stride s_first) → BN = shortcut;
  ReLU → conv3×3 → BN → ReLU → conv3×3 → BN; add shortcut; ReLU.
- ``UpBlock`` (decoder level): transposed conv (kernel = stride) → BN = shortcut; ReLU;
  concatenate with the encoder feature of that level; conv3×3 → BN → ReLU → conv3×3 → BN;
  add shortcut; ReLU.

Each block lists its (conv, batch norm) pairs in ``fuse_pairs`` so that ``lib.networks.fast``
can fold the batch norms into the convolutions for inference. Also here: the Glorot-normal
initialisation the paper uses and the Monte-Carlo dropout switch shared by every network.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def conv_padding(kernel_size: int, stride: int) -> int:
    """Symmetric padding that gives Keras ``padding="same"`` sizes exactly.

    A stride-1 conv with an odd kernel keeps the size with ``(k - 1) // 2``; a conv whose kernel
    equals its stride tiles the input and needs none (the input must be divisible by the stride,
    which the networks check). Other combinations would need asymmetric padding: refused.

    Args:
        kernel_size: square kernel size.
        stride: stride in both directions.
    """
    if stride == 1 and kernel_size % 2 == 1:
        return (kernel_size - 1) // 2
    if kernel_size == stride:
        return 0
    raise ValueError(f"unsupported conv: kernel {kernel_size} with stride {stride} "
                     "(use an odd kernel with stride 1, or kernel = stride)")


class ResidualBlock(nn.Module):
    """RB(c, k_first, s_first) of SPEC §4; output = ReLU(shortcut + conv path).

    Args:
        in_channels: channels of the input feature map.
        out_channels: ``c``, channels of every conv of the block.
        kernel_size: ``k_first``, kernel of the first conv (the shortcut).
        stride: ``s_first``, stride of the first conv (1 keeps the size, k = s downsamples by s).
    """

    fuse_pairs = (("conv_in", "bn_in"), ("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                                 padding=conv_padding(kernel_size, stride))
        self.bn_in = nn.BatchNorm2d(out_channels)
        self.conv1 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = self.bn_in(self.conv_in(x))
        y = self.relu(self.bn1(self.conv1(nn.functional.relu(shortcut))))
        y = self.bn2(self.conv2(y))
        return self.relu(y + shortcut)

    def encoder_convs(self) -> tuple[nn.Conv2d, ...]:
        """The convs of the main path in order (for receptive fields, SPEC §4 Table 1)."""
        return (self.conv_in, self.conv1, self.conv2)


class UpBlock(nn.Module):
    """Decoder level of the segmenter (SPEC §4); output = ReLU(shortcut + conv path).

    Args:
        in_channels: channels of the deeper feature map being upsampled.
        out_channels: channels of this level (the transposed conv and both 3×3 convs).
        scale: kernel = stride of the transposed conv (3 for the deepest level, 2 otherwise).
        skip_channels: channels of the encoder feature concatenated at this level
            (default: ``out_channels``, as in the symmetric VNet).
    """

    fuse_pairs = (("up", "bn_up"), ("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, in_channels: int, out_channels: int, scale: int = 2,
                 skip_channels: int | None = None):
        super().__init__()
        skip_channels = out_channels if skip_channels is None else skip_channels
        self.up = nn.ConvTranspose2d(in_channels, out_channels, scale, stride=scale)
        self.bn_up = nn.BatchNorm2d(out_channels)
        self.conv1 = nn.Conv2d(out_channels + skip_channels, out_channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        shortcut = self.bn_up(self.up(x))
        y = nn.functional.relu(shortcut)
        y = self.relu(self.bn1(self.conv1(concat_skip(y, skip))))
        y = self.bn2(self.conv2(y))
        return self.relu(y + shortcut)


def concat_skip(upsampled: Tensor, skip: Tensor) -> Tensor:
    """Channel concatenation [upsampled, encoder feature]; sizes must already match."""
    if upsampled.shape[-2:] != skip.shape[-2:]:
        raise ValueError(f"decoder size {tuple(upsampled.shape[-2:])} does not match the "
                         f"encoder feature {tuple(skip.shape[-2:])}")
    return torch.cat((upsampled, skip), dim=1)


def glorot_init(model: nn.Module) -> nn.Module:
    """Glorot-normal weights (``xavier_normal_``) and zero biases for every conv, transposed
    conv and dense layer; batch norms keep PyTorch's (1, 0). SPEC §4. Returns ``model``.

    Args:
        model: the network to initialise in place.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def enable_mc_dropout(model: nn.Module, enabled: bool = True) -> int:
    """Switch only the dropout modules to train mode (Monte-Carlo dropout at inference).

    The rest of the network (batch norm above all) stays as it is, normally in eval mode, so
    repeated forward passes sample the input dropout and nothing else. Returns how many
    dropout modules were switched (0 means the model cannot sample).

    Args:
        model: a network, usually in eval mode (a folded fast model works too).
        enabled: True → dropout samples (train mode); False → back to deterministic eval mode.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.train(enabled)
            count += 1
    return count
