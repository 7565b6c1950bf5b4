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
        else:
            raise FeatureSpecError(f"unknown feature extractor {part!r}: use 'random', 'ae' (an auto-encoder "
                                   "trained on the scene; 'ae:STEPS'), 'vgg16:PATH' (a local torchvision VGG16 "
                                   "state_dict) or several joined with '+'")
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
