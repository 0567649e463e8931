"""MoEDiff-SR's feature extractor: a transformer over multi-scale patch embeddings of the
upsampled low-resolution slice, one feature vector per token.

Tokens sit on an 8-pixel grid. Each token is embedded at two scales: its own 8x8 patch (local
texture) and the 16x16 patch centred on it (context), concatenated and projected. A depthwise
convolution on the token grid adds position (size-agnostic, unlike a learned table, so a network
trained on 64x64 patches runs on any slice). Attention is within windows of 8x8 tokens (64x64
pixels), the training patch size, so inference sees the same number of tokens per attention as
training did; the positional convolution carries information across windows.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TOKEN = 8  # pixels per token side (the finer patch scale)
CONTEXT = 16  # the coarser patch scale, centred on each token
WINDOW = 8  # tokens per attention-window side


class MultiScaleTokens(nn.Module):
    def __init__(self, dim: int = 32, layers: int = 2, heads: int = 4):
        super().__init__()
        self.dim = dim
        self.local = nn.Conv2d(1, dim, TOKEN, stride=TOKEN)
        # Kernel 16 at stride 8 with 4 pixels of padding: the 16x16 patch centred on each 8x8 token.
        self.context = nn.Conv2d(1, dim, CONTEXT, stride=TOKEN, padding=(CONTEXT - TOKEN) // 2)
        self.project = nn.Linear(2 * dim, dim)
        self.position = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) with H, W multiples of TOKEN -> (N, dim, H / TOKEN, W / TOKEN)."""
        tokens = torch.cat([self.local(image), self.context(image)], dim=1)
        tokens = self.project(tokens.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        tokens = tokens + self.position(tokens)
        n, d, h, w = tokens.shape
        ph, pw = (-h) % WINDOW, (-w) % WINDOW
        padded = F.pad(tokens, (0, pw, 0, ph))
        valid = F.pad(torch.ones(n, 1, h, w, dtype=torch.bool, device=image.device), (0, pw, 0, ph))
        H, W = h + ph, w + pw
        # (N, d, H, W) -> (N * windows, WINDOW * WINDOW, d)
        windows = padded.reshape(n, d, H // WINDOW, WINDOW, W // WINDOW, WINDOW).permute(0, 2, 4, 3, 5, 1)
        windows = windows.reshape(-1, WINDOW * WINDOW, d)
        keep = valid.reshape(n, 1, H // WINDOW, WINDOW, W // WINDOW, WINDOW).permute(0, 2, 4, 3, 5, 1).reshape(-1, WINDOW * WINDOW)
        encoded = self.encoder(windows, src_key_padding_mask=~keep)
        encoded = encoded.reshape(n, H // WINDOW, W // WINDOW, WINDOW, WINDOW, d).permute(0, 5, 1, 3, 2, 4).reshape(n, d, H, W)
        return encoded[:, :, :h, :w]
