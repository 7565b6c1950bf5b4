"""Quality on labelled scenes: k-textures beside the strongest k-means peers, several seeds, one run.

Usage (from the repository root; the labelled scenes beside the checkout, docs/development.md §2):

    .venv/bin/python bench/quality.py [--methods kmeans kmeans-mrf grass grass-smap ktextures ...] [--seeds 0 1 2 3 4]
                                      [--variant context] [--warm-start pixel] [--anchor 1] [--features imagenet]
                                      [--smoothing 0 3 10] [--k-factor 2] [--scenes slovenia amazon ...]

For each labelled scene and seed, each method runs as the user would run it, in a subprocess timed with
a wall clock:

- ``kmeans``: ``python -m ktextures_plugin kmeans IMAGE --bands 3,2,1,4 --k K --seed S`` (the product's
  default: z-scored bands, k-means++ with 3 restarts, the strongest pixel k-means measured);
- ``kmeans-stretch``: the same with ``--scaling stretch`` (2-98 % stretch; the product's former default);
- ``kmeans-context``: the same with ``--context`` (bands plus Gaussian-smoothed copies at sigma 1, 2, 4 px);
- ``kmeans-mrf``: k-means + Potts MRF, in this process (:func:`kmeans_mrf`): scikit-learn ``KMeans(k, n_init=3)``
  on the z-scored bands, unary = squared distance to each centre, Potts beta 1, 3 and 10 per disagreeing
  8-neighbour, 10 synchronous ICM sweeps (``core/segment/smoothing.py``); one record per beta;
- ``grass``: GRASS GIS ``i.cluster`` (k classes) + ``i.maxlik`` (maximum-likelihood assignment) in a
  temporary GRASS location, when the ``grass`` command is installed (Debian ``grass-core``); skipped, with a
  message, when it is not. Deterministic: its seeds give identical results.
- ``grass-smap``: the same ``i.cluster`` + ``i.maxlik`` classes train ``i.gensigset``, then ``i.smap`` (GRASS's
  contextual classifier) classifies; deterministic.
- ``bundled``: ``segment`` with the bundled model whose k is closest (``--bundled-scaling``), no fitting;
- ``ktextures``: ``python -m ktextures_plugin fit IMAGE --bands 3,2,1,4 --k K --seed S [options]`` then
  ``python -m ktextures_plugin segment IMAGE --model M --bands 3,2,1,4 [--smoothing B]`` once per ``--smoothing``
  beta (one record each; none = segment's default, the model's ``ktextures.smoothing_beta``); "fit s" = the fit
  command.

K = the number of reference classes present, times ``--k-factor`` (2 = over-clustering). Scores
(``core/evaluate/metrics.py``) on pixels labelled in the reference: ARI, NMI, mIoU after majority (many-to-one)
and Hungarian (one-to-one) matching, pixel accuracy and Cohen's kappa (Hungarian), the sample metrics
``sample_purity`` and ``classes_reached`` (interior samples drawn with the product's sampler) and the downstream
figures ``downstream_miou`` / ``downstream_accuracy`` (a random forest trained on those samples, scored on the
reference). ``--summary`` compares a configuration with the best peer (every configuration of ``kmeans``,
``kmeans-stretch``, ``kmeans-mrf``, ``grass``, ``grass-smap``) per scene on ARI, Hungarian mIoU and
downstream mIoU. The table gives mean +- sample
standard deviation over the seeds. Every run is appended to bench/out/quality.jsonl; ``--from-log`` prints
the table of the latest records and ``--summary`` the comparison of k-textures with the best peer per scene.

The Amazon label raster's geotransform differs from the image's in the 6th decimal (< 0.1 px at every
corner); ``core.evaluate.metrics.check_same_grid`` accepts that.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
OUT = os.path.join(ROOT, "bench", "out")
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
PY = sys.executable

#: name -> (image, 1-based bands in R,G,B,NIR order, reference labels, description)
SCENES = {
    "brandenburg_west": ("s2_brandenburg_west/s2_t33uuu_west_b2b3b4b8_10m.tif", "3,2,1,4",
                         "s2_brandenburg_west/osm_landuse_label_west_10m.tif",
                         "S2 Brandenburg west 768x768 vs OSM land use"),
    "slovenia": ("s2_slovenia/s2_slovenia_ref4_b2b3b4b8_10m.tif", "3,2,1,4", "s2_slovenia/lulc_label_10m.tif",
                 "S2 Slovenia ref4 100x101 vs LULC"),
    "amazon": ("s2_amazon/s2_amazon_b2b3b4b8_10m_reflectance.tif", "3,2,1,4", "s2_amazon/train_polygons_label.tif",
               "S2 Amazon 247x237 vs sparse polygons"),
    "sample": (os.path.join(ROOT, "data", "s2_brandenburg_sample_b2b3b4b8_10m.tif"), "3,2,1,4",
               os.path.join(ROOT, "data", "s2_brandenburg_sample_osm_label.tif"),
               "bundled S2 sample 512x768 vs OSM land use"),
}


def scene_paths(name):
    img, bands, label, desc = SCENES[name]
    return os.path.join(SHARED, img), bands, os.path.join(SHARED, label), desc


def n_classes(label_path):
    """Number of reference classes present (values other than 0 and the file's nodata)."""
    import numpy as np
    from osgeo import gdal
    ds = gdal.Open(label_path)
    b = ds.GetRasterBand(1)
    a = b.ReadAsArray()
    nd = b.GetNoDataValue()
    vals = set(np.unique(a).tolist()) - {0, nd}
    return len(vals)


def fit_tile_size(image_path, default=128):
    """fit's default training tile, or the largest power of two that fits a smaller raster."""
    from osgeo import gdal
    ds = gdal.Open(image_path)
    side = min(ds.RasterXSize, ds.RasterYSize)
    tile = default
    while tile > side and tile > 16:
        tile //= 2
    return tile


def ktextures_available():
    try:
        import torch  # noqa: F401

        from ktextures_plugin import training
    except Exception:
        return False
    return callable(getattr(training, "fit", None))


def timed(cmd, cwd=ROOT):
    t0 = time.perf_counter()
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    cp = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if cp.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({cp.returncode}): {cp.stderr.strip()[-800:]}")
    return dt


def bundled_model(k):
    """The bundled model whose k is closest to ``k`` (ties: the larger k), as (path, k)."""
    ks = sorted(int(m.group(1)) for m in (re.match(r"s2_10m_k(\d+)\.onnx$", f)
                                          for f in os.listdir(os.path.join(ROOT, "models"))) if m)
    best = min(ks, key=lambda kk: (abs(kk - k), -kk))
    return os.path.join(ROOT, "models", f"s2_10m_k{best}.onnx"), best


def grass_available():
    import shutil
    return shutil.which("grass") is not None


def grass_cluster(img, bands, k, out_path, smap=False):
    """GRASS ``i.cluster`` + ``i.maxlik`` on ``bands`` of ``img`` (a temporary location from the file's CRS);
    writes a Byte class raster (1..k, 0 = null) on the image grid. With ``smap``: GRASS's contextual classifier
    instead of ``i.maxlik``, unsupervised: the ``i.maxlik`` classes train ``i.gensigset`` (Gaussian-mixture
    signatures, one mixture per class), then ``i.smap`` (sequential maximum a posteriori over a multiscale random
    field) classifies."""
    import tempfile

    from osgeo import gdal
    b = [int(v) for v in bands.split(",")]
    steps = ["set -e", f"r.in.gdal -o --quiet input='{img}' output=img", "g.region raster=img.1"]
    names = [f"img.{i}" for i in b]
    if gdal.GetDataTypeName(gdal.Open(img).GetRasterBand(1).DataType).startswith("Float"):
        # reflectance 0-1 (Amazon): i.gensigset drops every subsignature as singular at that scale
        steps += [f"r.mapcalc --quiet expression='s{i} = img.{i} * 10000.0'" for i in b]
        names = [f"s{i}" for i in b]
    steps += [
        "i.group --quiet group=g subgroup=g input=" + ",".join(names),
        f"i.cluster --quiet group=g subgroup=g signaturefile=sig classes={k}",
        "i.maxlik --quiet group=g subgroup=g signaturefile=sig output=cls",
    ]
    if smap:
        steps += ["i.gensigset --quiet trainingmap=cls group=g subgroup=g signaturefile=sms",
                  "i.smap --quiet group=g subgroup=g signaturefile=sms output=smp"]
    steps.append(f"r.out.gdal --quiet --overwrite -c input={'smp' if smap else 'cls'} output='{out_path}' "
                 "type=Byte nodata=0 createopt=COMPRESS=LZW")
    script = "\n".join(steps) + "\n"
    with tempfile.TemporaryDirectory(prefix="ktx_grass_") as tmp:
        sh = os.path.join(tmp, "run.sh")
        with open(sh, "w") as f:
            f.write(script)
        os.chmod(sh, 0o755)
        cp = subprocess.run(["grass", "--tmp-location", img, "--exec", "bash", sh], capture_output=True,
                            text=True, cwd=tmp)
        if cp.returncode != 0:
            raise RuntimeError(f"GRASS failed ({cp.returncode}): {cp.stderr.strip()[-800:]}")


#: Potts weights of the ``kmeans-mrf`` peer (squared z-distance units per disagreeing 8-neighbour)
MRF_BETAS = (1.0, 3.0, 10.0)


def kmeans_mrf(img, bands, k, seed, out_paths):
    """The k-means + Potts MRF peer: scikit-learn ``KMeans(k, n_init=3, random_state=seed)`` on the z-scored bands
    (every valid pixel), unary cost of class c = squared distance to centre c, Potts weight beta per disagreeing
    8-neighbour, 10 synchronous ICM sweeps (``core.segment.smoothing.icm_potts``). Writes one Byte class raster (1..k,
    0 = nodata) per beta of ``out_paths`` {beta: path}; returns the wall time of the k-means and of each ICM."""
    import numpy as np
    from sklearn.cluster import KMeans

    from ktextures_plugin.core.io import raster
    from ktextures_plugin.core.segment.smoothing import icm_potts, squared_distance_costs
    t0 = time.perf_counter()
    ds = raster.open_raster(img)
    b = [int(v) for v in bands.split(",")]
    data, valid = raster.read_window(ds, b, (0, 0, ds.RasterXSize, ds.RasterYSize))
    px = data[:, valid].T.astype(np.float64)
    mu, sd = px.mean(0), px.std(0)
    sd[sd < 1e-12] = 1.0
    z = ((data - mu[:, None, None].astype(np.float32)) / sd[:, None, None].astype(np.float32)).astype(np.float32)
    km = KMeans(n_clusters=k, n_init=3, random_state=int(seed)).fit((px - mu) / sd)
    costs = squared_distance_costs(z, km.cluster_centers_)
    km_s = time.perf_counter() - t0
    times = {}
    for beta, path in out_paths.items():
        t1 = time.perf_counter()
        labels = icm_potts(costs, beta, valid=valid)
        times[beta] = km_s + time.perf_counter() - t1
        _write_classes(ds, np.where(valid, labels + 1, 0), path)
    return times


def _write_classes(like, labels, path):
    from osgeo import gdal
    out = gdal.GetDriverByName("GTiff").Create(path, like.RasterXSize, like.RasterYSize, 1, gdal.GDT_Byte,
                                               options=["COMPRESS=LZW"])
    out.SetGeoTransform(like.GetGeoTransform())
    out.SetProjection(like.GetProjection())
    band = out.GetRasterBand(1)
    band.SetNoDataValue(0)
    band.WriteArray(labels.astype("uint8"))
    out = None


def score(labels, label, img, bands):
    """Every figure of ``core.evaluate.metrics`` on the labelled pixels, the downstream ones included."""
    from ktextures_plugin.core.evaluate import metrics
    s = metrics.evaluate_rasters(labels, label, image_path=img, bands=[int(v) for v in bands.split(",")])
    d = s.as_dict()
    d["accuracy_majority"] = s.accuracy_majority
    return d


def run_one(scene, method, seed, k, args):
    """Run ``method`` on ``scene`` once; returns its records (one per Potts beta for ``kmeans-mrf``, one per
    smoothing for ``ktextures`` / ``bundled``), each with every figure of :func:`score`."""
    img, bands, label, _ = scene_paths(scene)
    os.makedirs(OUT, exist_ok=True)
    base = {"scene": scene, "method": method, "k": k, "seed": seed, "k_factor": args.k_factor}
    stem = os.path.join(OUT, f"quality_{scene}_{method}_k{k}_s{seed}")
    if method == "kmeans-mrf":
        paths = {beta: f"{stem}_b{beta:g}.tif" for beta in MRF_BETAS}
        times = kmeans_mrf(img, bands, k, seed, paths)
        return [dict(base, beta=beta, fit_s=times[beta], **score(paths[beta], label, img, bands)) for beta in paths]
    if method in ("ktextures", "bundled"):
        return run_model(scene, method, seed, k, args, base)
    labels = stem + ".tif"
    km_opts = {"kmeans": [], "kmeans-stretch": ["--scaling", "stretch"], "kmeans-context": ["--context"]}
    if method in km_opts:
        fit_s = timed([PY, "-m", "ktextures_plugin", "kmeans", img, "--bands", bands, "--k", str(k),
                       "--seed", str(seed), "--out", labels] + km_opts[method])
    elif method in ("grass", "grass-smap"):
        t0 = time.perf_counter()
        grass_cluster(img, bands, k, labels, smap=method == "grass-smap")
        fit_s = time.perf_counter() - t0
    else:
        raise ValueError(method)
    return [dict(base, fit_s=fit_s, **score(labels, label, img, bands))]


def _fit_command(img, bands, k, seed, model, args, rec):
    """The ``fit`` command line of the ``ktextures`` method; records its options in ``rec``."""
    cmd = [PY, "-m", "ktextures_plugin", "fit", img, "--bands", bands, "--k", str(k), "--seed", str(seed),
           "--out", model, "--quiet"]
    tile = fit_tile_size(img)
    if tile != 128:  # fit's default tile is 128 px; smaller scenes (Slovenia, 100x101) need a smaller one
        cmd += ["--tile-size", str(tile)]
        rec["tile_size"] = tile
    for opt in ("steps", "variant", "features", "binning", "mask_width", "retries", "continuity", "warm_start",
                "anchor"):
        value = getattr(args, opt, None)
        if value is not None:
            cmd += ["--" + opt.replace("_", "-"), str(value)]
            rec[opt] = value
    from ktextures_plugin.training.defaults import DEFAULT_VARIANT
    rec["variant"] = args.variant or DEFAULT_VARIANT
    return cmd


def run_model(scene, method, seed, k, args, base):
    """``ktextures`` (fit, then segment) or ``bundled`` (segment only), segmented at each ``--smoothing`` beta
    (None = segment's default)."""
    img, bands, label, _ = scene_paths(scene)
    rec = dict(base)
    tag = "".join(f"_{re.sub(r'[^A-Za-z0-9.]', '', str(getattr(args, o)))}" for o in
                  ("variant", "features", "steps", "warm_start", "anchor", "continuity") if getattr(args, o, None))
    stem = os.path.join(OUT, f"quality_{scene}_{method}{tag}_k{k}_s{seed}")
    if method == "bundled":
        model, rec["k"] = bundled_model(k)
        rec.update(fit_s=0.0, scaling=args.bundled_scaling)
        extra = ["--scaling", args.bundled_scaling]
    else:
        model = stem + ".onnx"
        rec["fit_s"] = timed(_fit_command(img, bands, k, seed, model, args, rec))
        extra = []
    from ktextures_plugin.core.segment.inference import read_model_info
    info = read_model_info(model)
    rec["train_seconds"] = info.provenance.get("train_seconds")
    rec["steps_done"] = info.provenance.get("steps_done")
    out = []
    for beta in (args.smoothing or [None]):
        labels = f"{stem}_sm{beta}.tif"
        cmd = [PY, "-m", "ktextures_plugin", "segment", img, "--model", model, "--bands", bands, "--out", labels,
               "--quiet"] + extra
        if beta is not None:
            cmd += ["--smoothing", str(beta)]
        r = dict(rec, smoothing=beta, segment_s=timed(cmd, args.segment_checkout or ROOT))
        out.append(dict(r, **score(labels, label, img, bands)))
    return out


def fmt(values, digits=3):
    if not values:
        return "-"
    m = statistics.mean(values)
    if len(values) < 2:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


#: the fields that tell one configuration of a record from another (besides its seed)
CONFIG_FIELDS = ("scene", "method", "k", "variant", "features", "binning", "steps", "scaling", "mask_width",
                 "retries", "continuity", "k_factor", "beta", "warm_start", "anchor", "smoothing")
METHODS = ["kmeans", "kmeans-stretch", "kmeans-context", "kmeans-mrf", "grass", "grass-smap", "ktextures", "bundled"]
#: the peers k-textures must beat: pixel k-means (the product's z-scored k-means and its stretch), GRASS (i.maxlik
#: and i.smap) and k-means + Potts MRF (every beta; the best per scene and figure is the bar)
PEERS = ("kmeans", "kmeans-stretch", "grass", "grass-smap", "kmeans-mrf")
#: the figures of the bar
BAR_FIGURES = ("ari", "miou_hungarian", "downstream_miou")
#: deterministic methods: one run whatever the seeds
DETERMINISTIC = ("bundled", "grass", "grass-smap")


#: fit's mask width before DEFAULT_MASK_WIDTH became 16; records of that time carry no ``mask_width``
LEGACY_MASK_WIDTH = 64


def effective(r):
    """The record with its mask width filled in (faithful k-textures and bundled-model records written before it
    was recorded: the bundled models were width 64 until they were refitted at 16)."""
    if (r.get("method") in ("ktextures", "bundled") and r.get("variant") in (None, "faithful")
            and not r.get("mask_width")):
        r = dict(r, mask_width=LEGACY_MASK_WIDTH)
    if r.get("method") == "bundled" and not r.get("scaling"):    # early records: the model's own scaling
        r = dict(r, scaling="model")
    if r.get("method") == "ktextures" and r.get("retries") is None:  # before fit refitted on unused classes
        r = dict(r, retries=0)
    return r


def config_key(r):
    r = effective(r)
    return tuple(r.get(f) for f in CONFIG_FIELDS)


def _name(r):
    opts = [f"{r[o]}" for o in ("variant", "features", "binning", "scaling") if r.get(o)]
    if r.get("mask_width"):
        opts.append(f"width {r['mask_width']}")
    for field_name, label in (("steps", "{} steps"), ("retries", "{} refit"), ("continuity", "continuity {}"),
                              ("warm_start", "warm start {}"), ("anchor", "anchor {}"), ("beta", "beta {:g}"),
                              ("smoothing", "smoothing {:g}")):
        if r.get(field_name) is not None and (r.get(field_name) or field_name in ("steps", "smoothing", "anchor")):
            opts.append(label.format(r[field_name]))
    return f"{r['method']} ({', '.join(opts)})" if opts else r["method"]


def groups(records):
    """[(key, [records])] per configuration, in first-seen order."""
    keys, out = [], {}
    for r in records:
        key = config_key(r)
        if key not in out:
            keys.append(key)
            out[key] = []
        out[key].append(effective(r))
    return [(key, out[key]) for key in keys]


COLUMNS = (("ari", "ARI"), ("nmi", "NMI"), ("miou_majority", "mIoU (majority)"),
           ("miou_hungarian", "mIoU (Hungarian)"), ("accuracy", "accuracy (Hungarian)"), ("kappa", "kappa"),
           ("sample_purity", "sample purity"), ("classes_reached", "classes reached"),
           ("downstream_miou", "downstream mIoU"), ("downstream_accuracy", "downstream accuracy"), ("fit_s", "fit s"))


def table(records):
    lines = ["| scene | method | k | seeds | labelled px | " + " | ".join(t for _, t in COLUMNS) + " |",
             "|---" * (5 + len(COLUMNS)) + "|"]
    for _key, rs in groups(records):
        def col(name, rs=rs):
            return [r[name] for r in rs if r.get(name) is not None]
        cells = [fmt(col(name), 1 if name in ("classes_reached", "fit_s") else 3) for name, _ in COLUMNS]
        lines.append(f"| {rs[0]['scene']} | {_name(rs[0])} | {rs[0]['k']} | {len(rs)} | {rs[0]['pixels']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def _means(records):
    """{scene: {config name: {figure: mean over seeds}}} for the figures of :data:`BAR_FIGURES`."""
    by_scene = {}
    for _key, rs in groups(records):
        by_scene.setdefault(rs[0]["scene"], {})[_name(rs[0])] = {
            f: statistics.mean(r[f] for r in rs) if all(r.get(f) is not None for r in rs) else float("nan")
            for f in BAR_FIGURES}
    return by_scene


def summary(records, candidate):
    """Per scene and figure of :data:`BAR_FIGURES`: the mean of ``candidate`` (a configuration as named in the
    table, e.g. "ktextures (context, smoothing 3)") against the best peer of :data:`PEERS` (every configuration,
    e.g. every beta of kmeans-mrf; the best mean per figure); passes when strictly better."""
    lines = ["| scene | figure | candidate | best peer | best peer is | passes |", "|---|---|---|---|---|---|"]
    for scene, mean in _means(records).items():
        if candidate not in mean:
            continue
        peers = [n for n in mean if n.split(" (")[0] in PEERS and n != candidate]
        for f in BAR_FIGURES:
            kt = mean[candidate][f]
            best = max(peers, key=lambda n: mean[n][f], default=None)
            bv = mean[best][f] if best else float("nan")
            lines.append(f"| {scene} | {f} | {kt:.3f} | {bv:.3f} | {best} | {'yes' if kt > bv else 'no'} |")
    return "\n".join(lines)


def read_log(scenes, k_factor=1):
    """The latest record of each configuration and seed in bench/out/quality.jsonl, scenes in ``scenes`` order."""
    latest = {}
    with open(os.path.join(OUT, "quality.jsonl")) as fh:
        for line in fh:
            r = json.loads(line)
            latest[config_key(r) + (r.get("seed"),)] = r
    order = {s: i for i, s in enumerate(scenes)}
    return sorted((r for r in latest.values() if r["scene"] in order and r.get("method") in METHODS
                   and (r.get("k_factor") or 1) == k_factor),
                  key=lambda r: (order[r["scene"]], METHODS.index(r["method"]), str(r.get("variant")),
                                 str(r.get("features")), str(r.get("steps")), str(r.get("beta")),
                                 str(r.get("smoothing")), r["seed"]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenes", nargs="+", default=list(SCENES), choices=list(SCENES))
    p.add_argument("--methods", nargs="+", default=None, choices=METHODS,
                   help="default: kmeans, kmeans-context, grass, plus ktextures when training is available")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=None, help="k-textures training steps (default: fit's default)")
    p.add_argument("--variant", default=None, choices=["faithful", "spatial", "context"],
                   help="fit --variant (default: fit's)")
    p.add_argument("--continuity", type=float, default=None, help="fit --continuity (default: fit's)")
    p.add_argument("--k-factor", type=int, default=1,
                   help="k = this many times the number of reference classes (2 = over-clustering)")
    p.add_argument("--summary", default=None, metavar="METHOD",
                   help="with --from-log: compare METHOD (as named in the table, e.g. 'ktextures (context)') with "
                        "the best peers per scene")
    p.add_argument("--features", default=None, help="fit --features (default: fit's)")
    p.add_argument("--binning", default=None, choices=["faithful", "anneal", "ste"], help="fit --binning")
    p.add_argument("--mask-width", type=int, default=None, help="fit --mask-width")
    p.add_argument("--retries", type=int, default=None, help="fit --retries (default: fit's)")
    p.add_argument("--warm-start", default=None, help="fit --warm-start (default: fit's)")
    p.add_argument("--anchor", type=float, default=None, help="fit --anchor (default: fit's)")
    p.add_argument("--smoothing", nargs="+", type=float, default=None,
                   help="segment --smoothing betas to score each model at (default: segment's default only)")
    p.add_argument("--segment-checkout", default=None, metavar="DIR",
                   help="run segment from this checkout of the project (another version; default: this one)")
    p.add_argument("--bundled-scaling", default="model", choices=["model", "stretch"],
                   help="segment --scaling for the bundled models (stretch suits scenes of other radiometry)")
    p.add_argument("--from-log", action="store_true",
                   help="run nothing: print the table of every configuration in bench/out/quality.jsonl (the "
                        "latest record of each scene, method, options and seed), scenes in --scenes order")
    p.add_argument("--markdown", default=os.path.join(OUT, "quality.md"), help="write the table here too")
    args = p.parse_args(argv)
    if args.from_log:
        records = read_log(args.scenes, args.k_factor)
        print(summary(records, args.summary) if args.summary else table(records))
        return 0
    methods = args.methods or (["kmeans", "kmeans-mrf", "grass", "grass-smap"]
                               + (["ktextures"] if ktextures_available() else []))
    if "ktextures" in methods and not ktextures_available():
        p.error("ktextures_plugin.training.fit or torch is not available")
    if {"grass", "grass-smap"} & set(methods) and not grass_available():
        print("GRASS GIS is not installed (the 'grass' command; Debian: apt install grass-core): the grass "
              "peers are skipped", file=sys.stderr)
        methods = [m for m in methods if not m.startswith("grass")]
    records = []
    os.makedirs(OUT, exist_ok=True)
    log = open(os.path.join(OUT, "quality.jsonl"), "a")
    for scene in args.scenes:
        img, _, label, desc = scene_paths(scene)
        if not (os.path.exists(img) and os.path.exists(label)):
            print(f"skip {scene}: {img} or {label} missing", file=sys.stderr)
            continue
        k = n_classes(label) * args.k_factor
        for method in methods:
            for seed in (args.seeds if method not in DETERMINISTIC else args.seeds[:1]):
                for rec in run_one(scene, method, seed, k, args):
                    records.append(rec)
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    print(f"{scene:<17} {_name(rec):<40} k={k} seed={seed}: ARI {rec['ari']:.3f} mIoU hung "
                          f"{rec['miou_hungarian']:.3f} downstream mIoU {rec.get('downstream_miou', float('nan')):.3f}"
                          f" purity {rec['sample_purity']:.3f} fit {rec['fit_s']:.1f} s", file=sys.stderr)
    md = table(records)
    print(md)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
