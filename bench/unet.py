"""The U-Net denoiser of ouro (`denoiser = "unet"`) in PyTorch, module for module: the same
parameter names and shapes as the safetensors files ouro writes, so that
`UNet(...).load_state_dict(safetensors.torch.load_file(path))` loads a saved ouro model.

Images are (batch, channels, side, side); ouro stores them as rows of side·side·channels values
in (y, x, channel) order and converts. Time enters as the sinusoidal embedding of the schedule's
network time (ouro's `time_embedding`: sin of the first half of the frequencies, then cos).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def time_embedding(t, width):
    """[sin(t f_i), cos(t f_i)] with f_i = 10000^(-i/half), i < half = width/2; t: (batch,)."""
    half = width // 2
    f = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    a = t.float()[:, None] * f[None]
    return torch.cat([a.sin(), a.cos()], 1)


class ResBlock(nn.Module):
    """x + conv2(silu(norm2(conv1(silu(norm1(x))) + emb(e)))), with a 1×1 conv on the skip when
    the channel count changes; e = silu(time + class embedding)."""

    def __init__(self, cin, cout, emb, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, e):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(e)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.skip is None else self.skip(x)) + h


class Attention(nn.Module):
    """One-head self-attention over the pixels: x + proj(softmax(qᵀk/√C) v), q, k, v = qkv(norm(x))."""

    def __init__(self, ch, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        a = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(c), dim=-1)  # (b, hw, hw)
        return x + self.proj((v @ a.transpose(1, 2)).reshape(b, c, h, w))


class UNet(nn.Module):
    """channels[i] at resolution side/2^i; `blocks` residual blocks per level on the way down and
    up (the first one up takes the level's skip, concatenated); a stride-2 3×3 conv down, nearest
    ×2 and a 3×3 conv up; middle: block, [attention], block; time embedding of width channels[0]
    through Linear-SiLU-Linear to 4·channels[0]; class c ∈ 0..classes (classes = ∅) embedded and
    added to it."""

    def __init__(self, in_ch=1, channels=(32, 64, 64), blocks=1, groups=8, classes=0, attention=False):
        super().__init__()
        c0, e = channels[0], 4 * channels[0]
        self.temb = c0
        self.time = nn.Sequential(nn.Linear(c0, e), nn.SiLU(), nn.Linear(e, e))
        self.label = nn.Embedding(classes + 1, e) if classes else None
        self.conv_in = nn.Conv2d(in_ch, c0, 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        c = c0
        for i, ch in enumerate(channels):
            self.down.append(nn.ModuleList([ResBlock(c if j == 0 else ch, ch, e, groups) for j in range(blocks)]))
            c = ch
            if i + 1 < len(channels):
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid1 = ResBlock(c, c, e, groups)
        self.attn = Attention(c, groups) if attention else None
        self.mid2 = ResBlock(c, c, e, groups)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(channels))):
            ch = channels[i]
            self.up.append(nn.ModuleList([ResBlock(c + ch if j == 0 else ch, ch, e, groups) for j in range(blocks)]))
            c = ch
            if i > 0:
                self.upsample.append(nn.Conv2d(ch, channels[i - 1], 3, padding=1))
                c = channels[i - 1]
        self.norm_out = nn.GroupNorm(groups, c0)
        self.conv_out = nn.Conv2d(c0, in_ch, 3, padding=1)

    def forward(self, x, t, y=None):
        e = self.time(time_embedding(t, self.temb))
        if self.label is not None:
            e = e + self.label(y)
        e = F.silu(e)
        h = self.conv_in(x)
        skips = []
        for i, blocks in enumerate(self.down):
            for blk in blocks:
                h = blk(h, e)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid1(h, e)
        if self.attn is not None:
            h = self.attn(h)
        h = self.mid2(h, e)
        for j, blocks in enumerate(self.up):
            h = torch.cat([h, skips.pop()], 1)
            for blk in blocks:
                h = blk(h, e)
            if j < len(self.upsample):
                h = self.upsample[j](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))
