"""Quality on labelled scenes (issue 4): per-pixel k-means baseline and k-textures, several seeds.

Usage (from the repository root; ../shared/data beside the checkout):

    .venv/bin/python bench/quality.py [--methods kmeans ktextures] [--seeds 0 1 2] [--steps N]
                                      [--scenes slovenia amazon ...] [--markdown bench/out/quality.md]

For each labelled scene and seed, each method runs as the user would run it, in a subprocess timed with
a wall clock:

- ``kmeans``: ``python -m ktextures_plugin kmeans IMAGE --bands 3,2,1,4 --k K --seed S`` (2-98 % stretch,
  k-means on a decimated sample, every pixel assigned); "fit s" = the whole command.
- ``kmeans-zscore``: the k-means of the floor in ../shared/data/README.md (bands z-scored), in this process
  with scikit-learn, for comparison with those figures.
- ``bundled``: ``segment`` with the bundled model whose k is closest (``--bundled-scaling``), no fitting.
- ``ktextures`` (only when ``ktextures_plugin/training`` has ``fit()`` and torch imports):
  ``python -m ktextures_plugin fit IMAGE --bands 3,2,1,4 --k K --seed S [--steps N]`` then
  ``python -m ktextures_plugin segment IMAGE --model M --bands 3,2,1,4``; "fit s" = the fit command.

K = the number of reference classes present. Scores (``core/metrics.py``) on pixels labelled in the
reference: ARI, NMI, mIoU after majority (many-to-one) matching -- the figure of the k-means floor in
../shared/data/README.md -- and mIoU and pixel accuracy after Hungarian (one-to-one) matching. The table
gives mean +- sample standard deviation over the seeds. Every run is appended to bench/out/quality.jsonl.

The Amazon label raster's geotransform differs from the image's in the 6th decimal (< 0.1 px at every
corner); ``core.metrics.check_same_grid`` accepts that.
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
        from ktextures_plugin import training
        import torch  # noqa: F401
    except Exception:
        return False
    return callable(getattr(training, "fit", None))


def timed(cmd):
    t0 = time.perf_counter()
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    cp = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
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


def kmeans_zscore(img, bands, k, seed, out_path):
    """The floor's k-means of ../shared/data/README.md: the 4 bands z-scored (mean 0, sd 1 over the valid
    pixels), scikit-learn KMeans (k-means++, 3 restarts) fitted on up to 200 000 pixels, every pixel
    assigned; written as a class raster on the image grid (0 = nodata)."""
    import numpy as np
    from osgeo import gdal
    from sklearn.cluster import KMeans
    from ktextures_plugin.core import raster
    gdal.UseExceptions()
    ds = gdal.Open(img)
    band_list = [int(b) for b in bands.split(",")]
    data, valid = raster.read_window(ds, band_list, (0, 0, ds.RasterXSize, ds.RasterYSize))
    px = data[:, valid].T.astype(np.float64)
    px = (px - px.mean(0)) / px.std(0)
    rng = np.random.default_rng(seed)
    fit_px = px[rng.choice(len(px), min(len(px), 200_000), replace=False)]
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(fit_px)
    labels = np.zeros(valid.shape, np.uint8)
    labels[valid] = km.predict(px) + 1
    out = gdal.GetDriverByName("GTiff").Create(out_path, ds.RasterXSize, ds.RasterYSize, 1, gdal.GDT_Byte)
    out.SetGeoTransform(ds.GetGeoTransform())
    out.SetProjection(ds.GetProjection())
    out.GetRasterBand(1).SetNoDataValue(0)
    out.GetRasterBand(1).WriteArray(labels)
    out = None
    ds = None


def run_one(scene, method, seed, k, steps=None, variant=None, features=None, scaling="model", binning=None,
            mask_width=None, retries=None):
    from ktextures_plugin.core import metrics
    img, bands, label, _ = scene_paths(scene)
    os.makedirs(OUT, exist_ok=True)
    tag = "".join(f"_{x}" for x in (variant, features and re.sub(r"\W", "", features), binning,
                                    mask_width and f"w{mask_width}") if x)
    labels = os.path.join(OUT, f"quality_{scene}_{method}{tag}_k{k}_s{seed}.tif")
    rec = {"scene": scene, "method": method, "k": k, "seed": seed}
    if method == "kmeans":
        rec["fit_s"] = timed([PY, "-m", "ktextures_plugin", "kmeans", img, "--bands", bands, "--k", str(k),
                              "--seed", str(seed), "--out", labels])
    elif method == "ktextures":
        model = os.path.join(OUT, f"quality_{scene}{tag}_k{k}_s{seed}.onnx")
        cmd = [PY, "-m", "ktextures_plugin", "fit", img, "--bands", bands, "--k", str(k), "--seed", str(seed),
               "--out", model, "--quiet"]
        tile = fit_tile_size(img)
        if tile != 128:  # fit's default tile is 128 px; smaller scenes (Slovenia, 100x101) need a smaller one
            cmd += ["--tile-size", str(tile)]
            rec["tile_size"] = tile
        if steps:
            cmd += ["--steps", str(steps)]
            rec["steps"] = steps
        for opt, value in (("--variant", variant), ("--features", features), ("--binning", binning),
                           ("--mask-width", mask_width)):
            if value:
                cmd += [opt, str(value)]
                rec[opt[2:].replace("-", "_")] = value
        from ktextures_plugin.training.train import DEFAULT_MASK_WIDTH, DEFAULT_RETRIES
        if variant != "spatial" and not mask_width:
            rec["mask_width"] = DEFAULT_MASK_WIDTH      # recorded even when it is fit's default
        rec["retries"] = DEFAULT_RETRIES if retries is None else int(retries)
        if retries is not None:
            cmd += ["--retries", str(int(retries))]
        rec["fit_s"] = timed(cmd)
        rec["segment_s"] = timed([PY, "-m", "ktextures_plugin", "segment", img, "--model", model,
                                  "--bands", bands, "--out", labels, "--quiet"])
    elif method == "kmeans-zscore":
        t0 = time.perf_counter()
        kmeans_zscore(img, bands, k, seed, labels)
        rec["fit_s"] = time.perf_counter() - t0
    elif method == "bundled":
        model, rec["k"] = bundled_model(k)
        from ktextures_plugin.core.modelinfo import read_model_info
        rec["mask_width"] = read_model_info(model).provenance.get("mask_width", LEGACY_MASK_WIDTH)
        rec["fit_s"] = 0.0
        rec["scaling"] = scaling
        labels = labels.replace(".tif", f"_{scaling}.tif")
        rec["segment_s"] = timed([PY, "-m", "ktextures_plugin", "segment", img, "--model", model,
                                  "--bands", bands, "--scaling", scaling, "--out", labels, "--quiet"])
    else:
        raise ValueError(method)
    s = metrics.evaluate_rasters(labels, label)
    rec.update(s.as_dict())
    rec["accuracy_majority"] = s.accuracy_majority
    return rec


def fmt(values, digits=3):
    if not values:
        return "-"
    m = statistics.mean(values)
    if len(values) < 2:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


#: the fields that tell one configuration of a record from another (besides its seed)
CONFIG_FIELDS = ("scene", "method", "k", "variant", "features", "binning", "steps", "scaling", "mask_width",
                 "retries")


#: fit's mask width before DEFAULT_MASK_WIDTH became 16; records of that time carry no ``mask_width``
LEGACY_MASK_WIDTH = 64


def effective(r):
    """The record with its mask width filled in (faithful k-textures and bundled-model records written before it
    was recorded: the bundled models were width 64 until they were refitted at 16)."""
    if r.get("method") in ("ktextures", "bundled") and r.get("variant") != "spatial" and not r.get("mask_width"):
        r = dict(r, mask_width=LEGACY_MASK_WIDTH)
    if r.get("method") == "bundled" and not r.get("scaling"):    # early records: the model's own scaling
        r = dict(r, scaling="model")
    if r.get("method") == "ktextures" and r.get("retries") is None:  # before fit refitted on unused classes
        r = dict(r, retries=0)
    return r


def config_key(r):
    r = effective(r)
    return tuple(r.get(f) for f in CONFIG_FIELDS)


def table(records):
    lines = ["| scene | method | k | seeds | labelled px | ARI | NMI | mIoU (majority) | mIoU (Hungarian) | "
             "accuracy (Hungarian) | fit s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = []
    for r in records:
        key = config_key(r)
        if key not in keys:
            keys.append(key)
    for key in keys:
        scene, method, k = key[:3]
        rs = [effective(r) for r in records if config_key(r) == key]
        col = lambda name: [r[name] for r in rs]  # noqa: E731
        opts = [f"{rs[0][o]}" for o in ("variant", "features", "binning", "scaling") if rs[0].get(o)]
        if rs[0].get("mask_width"):
            opts.append(f"width {rs[0]['mask_width']}")
        if rs[0].get("steps"):
            opts.append(f"{rs[0]['steps']} steps")
        if rs[0].get("retries"):
            opts.append(f"{rs[0]['retries']} refit")
        name = f"{method} ({', '.join(opts)})" if opts else method
        lines.append(f"| {scene} | {name} | {k} | {len(rs)} | {rs[0]['pixels']} | {fmt(col('ari'))} | "
                     f"{fmt(col('nmi'))} | {fmt(col('miou_majority'))} | {fmt(col('miou_hungarian'))} | "
                     f"{fmt(col('accuracy'))} | {fmt(col('fit_s'), 1)} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenes", nargs="+", default=list(SCENES), choices=list(SCENES))
    p.add_argument("--methods", nargs="+", default=None, choices=["kmeans", "kmeans-zscore", "ktextures", "bundled"],
                   help="default: kmeans, plus ktextures when training is available")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=None, help="k-textures training steps (default: fit's default)")
    p.add_argument("--variant", default=None, choices=["faithful", "spatial"], help="fit --variant (default: fit's)")
    p.add_argument("--features", default=None, help="fit --features (default: fit's)")
    p.add_argument("--binning", default=None, choices=["faithful", "anneal", "ste"], help="fit --binning")
    p.add_argument("--mask-width", type=int, default=None, help="fit --mask-width")
    p.add_argument("--retries", type=int, default=None, help="fit --retries (default: fit's)")
    p.add_argument("--bundled-scaling", default="model", choices=["model", "stretch"],
                   help="segment --scaling for the bundled models (stretch suits scenes of other radiometry)")
    p.add_argument("--from-log", action="store_true",
                   help="run nothing: print the table of every configuration in bench/out/quality.jsonl (the "
                        "latest record of each scene, method, options and seed), scenes in --scenes order")
    p.add_argument("--markdown", default=os.path.join(OUT, "quality.md"), help="write the table here too")
    args = p.parse_args(argv)
    if args.from_log:
        latest = {}
        with open(os.path.join(OUT, "quality.jsonl")) as fh:
            for line in fh:
                r = json.loads(line)
                latest[config_key(r) + (r.get("seed"),)] = r
        order = {s: i for i, s in enumerate(args.scenes)}
        records = sorted((r for r in latest.values() if r["scene"] in order),
                         key=lambda r: (order[r["scene"]], r["method"] != "kmeans", r["method"] != "kmeans-zscore",
                                        r["method"] != "bundled", str(r.get("variant")), str(r.get("features")),
                                        r["seed"]))
        print(table(records))
        return 0
    methods = args.methods or (["kmeans", "ktextures"] if ktextures_available() else ["kmeans"])
    if "ktextures" in methods and not ktextures_available():
        p.error("ktextures_plugin.training.fit or torch is not available")
    records = []
    os.makedirs(OUT, exist_ok=True)
    log = open(os.path.join(OUT, "quality.jsonl"), "a")
    for scene in args.scenes:
        img, _, label, desc = scene_paths(scene)
        if not (os.path.exists(img) and os.path.exists(label)):
            print(f"skip {scene}: {img} or {label} missing", file=sys.stderr)
            continue
        k = n_classes(label)
        for method in methods:
            for seed in (args.seeds if method != "bundled" else args.seeds[:1]):
                rec = run_one(scene, method, seed, k, args.steps, args.variant, args.features,
                              args.bundled_scaling, args.binning, args.mask_width, args.retries)
                records.append(rec)
                log.write(json.dumps(rec) + "\n")
                log.flush()
                print(f"{scene:<17} {method:<9} k={k} seed={seed}: ARI {rec['ari']:.3f} NMI {rec['nmi']:.3f} "
                      f"mIoU maj {rec['miou_majority']:.3f} hung {rec['miou_hungarian']:.3f} "
                      f"fit {rec['fit_s']:.1f} s", file=sys.stderr)
    md = table(records)
    print(md)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
