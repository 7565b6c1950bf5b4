"""The k-textures network in PyTorch (docs/method.md §3-§6; the departures from the paper are options).

Shapes are PyTorch NCHW. C = 4 channels (red, green, blue, NIR) scaled to [0, 1] (docs/method.md §2),
k = number of classes, P = texture period (128 px).

* :class:`ScalarNet` (docs/method.md §3.1): per-pixel 1x1 network, image (N,C,H,W) -> s (N,1,H,W) in (0, 1).
* :func:`hard_bins` (docs/method.md §3.1, closed form): s -> k one-hot masks (N,k,H,W), class 0 = highest s.
* :class:`SpatialMaskNet` (docs/method.md §3.2, variant ``spatial``): 3x3 conv network -> k logits, hard one-hot with a
  straight-through (softmax) gradient.
* :class:`TextureGen` (docs/method.md §4): fixed noise buffer (1,1,P+16,P+16) -> texture (1,C,P,P) in (0, 1).
* :class:`KTextures`: the whole model; ``simulate`` gives the simulated image (docs/method.md §4).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .defaults import VARIANTS

#: Keras defaults translated to PyTorch (docs/method.md §6): momentum 0.01 == Keras 0.99.
BN_MOMENTUM = 0.01
BN_EPS = 1e-3
#: hard-sigmoid ramp slope of the original step network (docs/method.md §3.1)
FAITHFUL_SLOPE = 5000.0
NOISE_STD = 0.0005
LEAKY_SLOPE = 0.3


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS, momentum=BN_MOMENTUM)


def glorot_init(module: nn.Module) -> None:
    """Keras defaults: Glorot-uniform conv kernels, zero biases (docs/method.md §6)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ScalarNet(nn.Module):
    """Per-pixel scalar network (docs/method.md §3.1):
    Conv1x1(C->64)-BN-ELU-Conv1x1(64->64)-BN-ELU-Conv1x1(64->1)-BN-sigmoid.

    Input (N,C,H,W) float32 in [0, 1]; output s (N,1,H,W) float32 in (0, 1). In training mode
    Gaussian noise of std ``noise_std`` (0.0005) is added to s (docs/method.md §3.1). Halo 0 px.
    """

    halo_px = 0

    def __init__(self, in_ch: int = 4, width: int = 64, noise_std: float = NOISE_STD):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, width, 1), _bn(width), nn.ELU(),
            nn.Conv2d(width, width, 1), _bn(width), nn.ELU(),
            nn.Conv2d(width, 1, 1), _bn(1), nn.Sigmoid())
        self.noise_std = float(noise_std)
        glorot_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.net(x)
        if self.training and self.noise_std > 0:
            s = s + torch.randn_like(s) * self.noise_std
        return s


def bin_index(s: torch.Tensor, k: int) -> torch.Tensor:
    """Class of each pixel from s (docs/method.md §3.1, §7): ``k-1 - clamp(floor(k*s), 0, k-1)``, int64, same shape."""
    return (k - 1) - torch.clamp(torch.floor(s * k), 0, k - 1).to(torch.int64)


def hard_bins(s: torch.Tensor, k: int, slope: float = FAITHFUL_SLOPE, straight_through: bool = False
              ) -> torch.Tensor:
    """k masks from the scalar s, closed form of docs/method.md §3.1.

    Boundaries b_j = j/k (j = 1..k-1), ramps H_j = clamp(slope*(s - b_j) + 0.5, 0, 1); ascending masks
    m_0 = 1 - H_1, m_j = H_j - H_{j+1}, m_{k-1} = H_{k-1}; the channel order is reversed so class 0 holds the
    highest s. With slope 5000 the masks are one-hot except within 1e-4 of a boundary.

    Args:
        s: (N,1,H,W) float32 in [0, 1].
        k: number of classes (>= 2).
        slope: ramp slope S (5000 = faithful; smaller = softer, used by annealing, docs/method.md §3.1).
        straight_through: forward = exact one-hot of :func:`bin_index`, backward = gradient of the ramps
            (docs/method.md §3.1).

    Returns:
        (N,k,H,W) float32; masks sum to 1 per pixel.
    """
    b = torch.arange(1, k, dtype=s.dtype, device=s.device).view(1, k - 1, 1, 1) / k
    ramps = torch.clamp(slope * (s - b) + 0.5, 0.0, 1.0)              # (N,k-1,H,W)
    one = torch.ones_like(s)
    padded = torch.cat([one, ramps, torch.zeros_like(s)], dim=1)       # (N,k+1,H,W)
    asc = padded[:, :-1] - padded[:, 1:]                               # (N,k,H,W), ascending in s
    soft = torch.flip(asc, dims=[1])
    if not straight_through:
        return soft
    hard = F.one_hot(bin_index(s[:, 0], k), k).permute(0, 3, 1, 2).to(s.dtype)
    return hard + (soft - soft.detach())


class SpatialMaskNet(nn.Module):
    """Variant ``spatial`` (docs/method.md §3.2): per-class logits from a small 3x3 conv network.

    Conv3x3(C->w)-BN-ELU-Conv3x3(w->w)-BN-ELU-Conv1x1(w->k)-BN. Input (N,C,H,W) in [0, 1]; output
    logits (N,k,H,W). Receptive field 5x5, so ``halo_px`` = 2: tiles must overlap by 4 px at inference.
    Training uses a hard one-hot forward with a softmax straight-through gradient (:meth:`masks`).
    """

    halo_px = 2

    def __init__(self, k: int, in_ch: int = 4, width: int = 32, noise_std: float = 0.0):
        super().__init__()
        self.k = k
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, width, 3, padding=1), _bn(width), nn.ELU(),
            nn.Conv2d(width, width, 3, padding=1), _bn(width), nn.ELU(),
            nn.Conv2d(width, k, 1), _bn(k))
        self.noise_std = noise_std
        glorot_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def masks(self, logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Hard one-hot (N,k,H,W) of argmax(logits) with the gradient of softmax(logits / temperature)."""
        soft = torch.softmax(logits / temperature, dim=1)
        hard = F.one_hot(torch.argmax(logits, dim=1), self.k).permute(0, 3, 1, 2).to(logits.dtype)
        return hard + (soft - soft.detach())


#: Gaussian scales (pixels) of the context variant's smoothed copies of the bands.
CONTEXT_SIGMAS = (1.0, 2.0, 4.0)
#: Gaussian kernels are truncated at this many standard deviations (radius = ceil(3 sigma)).
GAUSS_TRUNCATE = 3.0


def gaussian_kernel_1d(sigma: float, truncate: float = GAUSS_TRUNCATE) -> torch.Tensor:
    """Normalised 1-D Gaussian kernel, float32 ``(2r+1,)`` with r = ceil(truncate * sigma) px."""
    r = int(math.ceil(truncate * float(sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / float(sigma)) ** 2)
    return (g / g.sum()).float()


class GaussianContext(nn.Module):
    """Fixed (untrained) context features: the bands and their Gaussian-smoothed copies.

    Input (N,C,H,W) float32; output (N,C*(1+S),H,W) = [x, G_sigma1 x, ..., G_sigmaS x], each smoothing a
    separable depthwise convolution with edge padding at the tile edge (torch ``replicate``, ONNX ``Pad``
    mode ``edge``, SciPy ``ndimage`` mode ``nearest``; unlike mirror padding it works on tiles of any
    size). Receptive-field radius = ceil(3 * max sigma) px = ``halo_px``, so tiled
    inference with that halo equals inference on the whole raster (models/README.md, "Halo").
    """

    def __init__(self, in_ch: int = 4, sigmas: Sequence[float] = CONTEXT_SIGMAS):
        super().__init__()
        self.in_ch = int(in_ch)
        self.sigmas = tuple(float(s) for s in sigmas)
        self.radii = []
        for i, s in enumerate(self.sigmas):
            g = gaussian_kernel_1d(s)
            self.radii.append((len(g) - 1) // 2)
            self.register_buffer(f"g{i}", g)
        self.halo_px = max(self.radii) if self.radii else 0
        self.out_ch = self.in_ch * (1 + len(self.sigmas))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        c = self.in_ch
        for i, r in enumerate(self.radii):
            g = getattr(self, f"g{i}")
            h = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1).expand(c, 1, 1, -1),
                         groups=c)
            v = F.conv2d(F.pad(h, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1).expand(c, 1, -1, 1),
                         groups=c)
            outs.append(v)
        return torch.cat(outs, dim=1)


class ContextMaskNet(nn.Module):
    """Variant ``context``: k class logits from the bands and their Gaussian context (receptive field
    2 * ceil(3 * max sigma) + 1 px: 25 px with sigmas 1, 2, 4; 7 px with sigma 1 alone, the default warm start's).

    Graph: :class:`GaussianContext` (fixed) -> per-feature z-score (fixed buffers ``mu``, ``sd``, set by the warm
    start) -> logits = ``head(z) + mlp(z)`` (+ ``quad(z)`` with ``quadratic``). ``head`` is a 1x1 conv (F -> k);
    ``mlp`` (1x1 F -> ``hidden`` -> ELU -> k) starts at zero output; ``quad`` (``quadratic=True``) gives per class
    c ``-0.5 |A_c z + b_c|^2`` (a 1x1 conv F -> k*F, squared, summed per class). The k-means warm starts set the head
    to the nearest-centre rule (:meth:`init_from_kmeans`: w_j = 2 c_j, b_j = -|c_j|^2), the Gaussian-mixture one
    head and ``quad`` to the mixture's log densities (:meth:`init_from_gmm`), so the untrained network *is* the
    warm-start partition and training only moves it. Training masks: hard one-hot of the argmax with the gradient
    of softmax(logits / ``temperature``) (straight-through).

    Input (N,C,H,W) in [0, 1] (beyond it on the unclipped scale); output logits (N,k,H,W) float32;
    ``halo_px`` = ceil(3 * max sigma).
    """

    def __init__(self, k: int, in_ch: int = 4, sigmas: Sequence[float] = CONTEXT_SIGMAS, hidden: int = 16,
                 temperature: float = 1.0, quadratic: bool = False):
        super().__init__()
        self.k = int(k)
        self.context = GaussianContext(in_ch, sigmas)
        f = self.context.out_ch
        self.register_buffer("mu", torch.zeros(1, f, 1, 1))
        self.register_buffer("sd", torch.ones(1, f, 1, 1))
        self.head = nn.Conv2d(f, self.k, 1)
        if quadratic:
            # per class c: -0.5 * |A_c z + b_c|^2 (A_c: F x F); zero at first, set by init_from_gmm
            self.quad = nn.Conv2d(f, self.k * f, 1)
            nn.init.zeros_(self.quad.weight)
            nn.init.zeros_(self.quad.bias)
            block = torch.zeros(self.k, self.k * f, 1, 1)     # -0.5 x the sum of class c's F squares
            for c in range(self.k):
                block[c, c * f:(c + 1) * f] = -0.5
            self.register_buffer("quad_sum", block)
        else:
            self.quad = None
        self.hidden = int(hidden)
        if self.hidden > 0:
            self.mlp = nn.Sequential(nn.Conv2d(f, self.hidden, 1), nn.ELU(), nn.Conv2d(self.hidden, self.k, 1))
            glorot_init(self.mlp)
            nn.init.zeros_(self.mlp[2].weight)
        else:
            self.mlp = None
        glorot_init(self.head)
        self.temperature = float(temperature)
        self.halo_px = self.context.halo_px

    folded = False

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """z-scored context features (N,F,H,W) (unscaled when the z-score is folded into the layers)."""
        f = self.context(x)
        return f if self.folded else (f - self.mu) / self.sd

    @torch.no_grad()
    def folded_copy(self) -> "ContextMaskNet":
        """An equivalent network for export with the z-score folded into the first 1x1 layers
        (w' = w / sd, b' = b - w' . mu): two element-wise passes over the 16 feature maps fewer."""
        import copy
        net = copy.deepcopy(self)
        inv = (1.0 / self.sd).view(1, -1, 1, 1)
        mu = self.mu.view(1, -1, 1, 1)
        for conv in [net.head] + ([net.mlp[0]] if net.mlp is not None else []) + \
                ([net.quad] if net.quad is not None else []):
            w = conv.weight * inv
            conv.bias.copy_(conv.bias - (w * mu).sum(dim=(1, 2, 3)))
            conv.weight.copy_(w)
        net.folded = True
        return net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x)
        out = self.head(z)
        if self.mlp is not None:
            out = out + self.mlp(z)
        if self.quad is not None:
            u = self.quad(z)
            out = out + F.conv2d(u * u, self.quad_sum)
        return out

    @torch.no_grad()
    def init_from_kmeans(self, mu: torch.Tensor, sd: torch.Tensor, centers: torch.Tensor) -> None:
        """Set the z-score (``mu``, ``sd``: (F,)) and the head from k-means centres (k,F) in z units."""
        self.mu.copy_(mu.view(1, -1, 1, 1))
        self.sd.copy_(sd.view(1, -1, 1, 1))
        self.head.weight.copy_((2.0 * centers).view(self.k, -1, 1, 1))
        self.head.bias.copy_(-(centers ** 2).sum(dim=1))

    @torch.no_grad()
    def init_from_gmm(self, mu: torch.Tensor, sd: torch.Tensor, weights: torch.Tensor, means: torch.Tensor,
                      prec_chol: torch.Tensor) -> None:
        """Set the z-score (``mu``, ``sd``: (F,)) and the layers so that the logits are the log of the
        weighted Gaussian densities of a full-covariance mixture in z units, up to one constant:
        logit_c(z) = log w_c + log det L_c - 0.5 |L_c^T (z - m_c)|^2, with ``weights`` w (k,), ``means`` m
        (k,F) and ``prec_chol`` L (k,F,F), the Cholesky factors of the precisions (scikit-learn
        ``GaussianMixture.precisions_cholesky_``, precision = L L^T). Needs ``quadratic=True``; the head's
        weights and the MLP's output start at zero."""
        f = self.context.out_ch
        self.mu.copy_(mu.view(1, -1, 1, 1))
        self.sd.copy_(sd.view(1, -1, 1, 1))
        lt = prec_chol.transpose(1, 2)                                    # (k,F,F): rows of L^T
        self.quad.weight.copy_(lt.reshape(self.k * f, f, 1, 1))
        self.quad.bias.copy_(-torch.einsum("cij,cj->ci", lt, means).reshape(-1))
        self.head.weight.zero_()
        logdet = torch.log(torch.diagonal(prec_chol, dim1=1, dim2=2)).sum(1)
        self.head.bias.copy_(torch.log(weights) + logdet)
        if self.mlp is not None:
            self.mlp[2].weight.zero_()
            self.mlp[2].bias.zero_()

    def masks(self, logits: torch.Tensor) -> torch.Tensor:
        """Hard one-hot (N,k,H,W) of argmax(logits) with the gradient of softmax(logits / temperature)."""
        soft = torch.softmax(logits / self.temperature, dim=1)
        hard = F.one_hot(torch.argmax(logits, dim=1), self.k).permute(0, 3, 1, 2).to(logits.dtype)
        return hard + (soft - soft.detach())


def continuity_loss(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Spatial continuity term (Kim, Kanezaki and Tanaka, IEEE TIP 29, 2020): mean L1 of the vertical and
    horizontal differences of the class-probability map softmax(logits / temperature), (N,k,H,W)."""
    p = torch.softmax(logits / temperature, dim=1)
    return (p[:, :, 1:] - p[:, :, :-1]).abs().mean() + (p[:, :, :, 1:] - p[:, :, :, :-1]).abs().mean()


class TextureGen(nn.Module):
    """One class texture (docs/method.md §4): a fixed N(0,1) noise buffer (1,1,P+16,P+16) ->
    4x[Conv3x3(->16)-BN-LeakyReLU(0.3)] -> Conv3x3(16->C) -> sigmoid -> centre crop 8 -> (1,C,P,P) in (0, 1).

    The noise is drawn once from ``generator`` and saved in the state dict (a buffer), so the texture is a
    deterministic learned image (deep-image-prior style), the same for every tile and step.
    """

    def __init__(self, out_ch: int = 4, period: int = 128, width: int = 16,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        self.register_buffer("noise", torch.randn(1, 1, period + 16, period + 16, generator=generator))
        layers = []
        c = 1
        for _ in range(4):
            layers += [nn.Conv2d(c, width, 3, padding=1), _bn(width), nn.LeakyReLU(LEAKY_SLOPE)]
            c = width
        layers += [nn.Conv2d(width, out_ch, 3, padding=1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)
        self.period = period
        glorot_init(self)

    def forward(self) -> torch.Tensor:
        t = self.net(self.noise)
        return t[:, :, 8:-8, 8:-8]


def crop_textures(textures: torch.Tensor, offsets: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The texture values that fall on each training tile, with period P anchored on the raster grid.

    At raster pixel (row, col) the simulation uses ``textures[:, :, row mod P, col mod P]`` (models/README.md),
    so a tile read at (yoff, xoff) sees the textures shifted by (yoff mod P, xoff mod P).

    Args:
        textures: (k,C,P,P).
        offsets: (N,2) int64 raster (yoff, xoff) of each tile.
        h, w: tile size.

    Returns:
        (N,k,C,h,w).
    """
    k, c, p, _ = textures.shape
    rows = (offsets[:, 0:1] + torch.arange(h).view(1, h)) % p          # (N,h)
    cols = (offsets[:, 1:2] + torch.arange(w).view(1, w)) % p          # (N,w)
    # gather rows then columns: (k,C,N,h,P) -> (k,C,N,h,w)
    t = textures[:, :, rows]                                            # (k,C,N,h,P)
    t = torch.gather(t, 4, cols.view(1, 1, -1, 1, w).expand(k, c, -1, h, w))
    return t.permute(2, 0, 1, 3, 4)




class KTextures(nn.Module):
    """The k-textures model (docs/method.md §3, §4).

    Args:
        k: number of classes, 2..128.
        in_ch: channels C (4: red, green, blue, NIR).
        variant: ``"faithful"`` (1x1 :class:`ScalarNet` + :func:`hard_bins`) or ``"spatial"``
            (:class:`SpatialMaskNet`, halo 2 px).
        period: texture side P in px (128).
        seed: seeds the texture noise buffers (and nothing else).
        straight_through: faithful variant only, hard forward / ramp backward (docs/method.md §3.1).
        mask_width: hidden width of the faithful :class:`ScalarNet` (64 in the paper; narrower = fewer
            multiply-adds per pixel at inference, about 4 * w + w * w + w).
    """

    def __init__(self, k: int, in_ch: int = 4, variant: str = "faithful", *, period: int = 128,
                 seed: int = 0, straight_through: bool = False, spatial_width: int = 32, mask_width: int = 64,
                 context_hidden: int = 16, context_sigmas: Sequence[float] = CONTEXT_SIGMAS,
                 context_quadratic: bool = False):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.k = int(k)
        self.in_ch = in_ch
        self.variant = variant
        self.period = period
        self.straight_through = straight_through
        self.slope = FAITHFUL_SLOPE
        if variant == "faithful":
            self.mask_net = ScalarNet(in_ch, width=mask_width)
        elif variant == "context":
            self.mask_net = ContextMaskNet(self.k, in_ch, context_sigmas, hidden=context_hidden,
                                           quadratic=context_quadratic)
        else:
            self.mask_net = SpatialMaskNet(self.k, in_ch, width=spatial_width)
        gen = torch.Generator().manual_seed(10_000 + int(seed))
        self.textures = nn.ModuleList(TextureGen(in_ch, period, generator=gen) for _ in range(self.k))

    @property
    def halo_px(self) -> int:
        return int(self.mask_net.halo_px)

    def texture_stack(self) -> torch.Tensor:
        """All k textures, (k,C,P,P) float32 in (0, 1)."""
        return torch.cat([g() for g in self.textures], dim=0)

    def masks(self, x: torch.Tensor) -> torch.Tensor:
        """Training masks (N,k,H,W): one-hot (up to the ramp width) with the variant's gradient path."""
        if self.variant == "faithful":
            s = self.mask_net(x)
            return hard_bins(s, self.k, self.slope, self.straight_through)
        return self.mask_net.masks(self.mask_net(x))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class map (N,1,H,W) int64 in 0..k-1 (the ONNX ``class`` output; call in eval mode)."""
        if self.variant == "faithful":
            return bin_index(self.mask_net(x), self.k)
        return torch.argmax(self.mask_net(x), dim=1, keepdim=True)

    def simulate(self, x: torch.Tensor, offsets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Simulated image (docs/method.md §4): ``sim = sum_i mask_i * T_i``.

        Args:
            x: (N,C,H,W) float32 scaled image tiles.
            offsets: (N,2) int64 raster (yoff, xoff) of each tile (textures are anchored on the raster grid).

        Returns:
            ``(sim, masks)``: sim (N,C,H,W) float32, masks (N,k,H,W) float32.
        """
        sim, masks, _ = self.simulate_with_logits(x, offsets)
        return sim, masks

    def simulate_with_logits(self, x: torch.Tensor, offsets: torch.Tensor):
        """:meth:`simulate` plus the mask network's logits (N,k,H,W) (None for the faithful variant)."""
        n, _, h, w = x.shape
        logits = None
        if self.variant == "faithful":
            masks = self.masks(x)
        else:
            logits = self.mask_net(x)
            masks = self.mask_net.masks(logits)
        tex = crop_textures(self.texture_stack(), offsets, h, w)          # (N,k,C,h,w)
        sim = (masks.unsqueeze(2) * tex).sum(dim=1)
        return sim, masks, logits


def mask_net_batchnorms(model: KTextures) -> Sequence[nn.BatchNorm2d]:
    return [m for m in model.mask_net.modules() if isinstance(m, nn.BatchNorm2d)]


@torch.no_grad()
def recalibrate_bn(model: KTextures, batches) -> None:
    """Recompute the mask-network BatchNorm running statistics as a cumulative average over ``batches``
    (docs/method.md §6), so inference-mode binning matches what training saw on average.

    Args:
        batches: iterable of (N,C,H,W) float32 tensors.
    """
    bns = mask_net_batchnorms(model)
    saved = [(bn.momentum,) for bn in bns]
    was_training = model.training
    noise = getattr(model.mask_net, "noise_std", 0.0)
    model.mask_net.noise_std = 0.0
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None                      # cumulative moving average
    model.mask_net.train()
    for x in batches:
        model.mask_net(x)
    for bn, (mom,) in zip(bns, saved):
        bn.momentum = mom
    model.mask_net.noise_std = noise
    model.train(was_training)


def anneal_slope(step: int, total: int, start: float, end: float = FAITHFUL_SLOPE, fraction: float = 0.6
                 ) -> float:
    """Geometric ramp-slope schedule (docs/method.md §3.1): ``start`` -> ``end`` over the first ``fraction`` of
    the steps, then ``end``."""
    if start >= end or total <= 1:
        return end
    t = min(1.0, step / max(1.0, fraction * (total - 1)))
    return float(math.exp(math.log(start) + t * (math.log(end) - math.log(start))))
