"""Quality on labelled scenes: k-textures beside the strongest k-means peers, several seeds, one run.

Usage (from the repository root; the labelled scenes beside the checkout, docs/development.md §2):

    .venv/bin/python bench/quality.py [--methods kmeans kmeans-context grass ktextures ...] [--seeds 0 1 2 3 4]
                                      [--variant context] [--k-factor 2] [--scenes slovenia amazon ...]

For each labelled scene and seed, each method runs as the user would run it, in a subprocess timed with
a wall clock:

- ``kmeans``: ``python -m ktextures_plugin kmeans IMAGE --bands 3,2,1,4 --k K --seed S`` (the product's
  default: z-scored bands, k-means++ with 3 restarts, the strongest pixel k-means measured);
- ``kmeans-stretch``: the same with ``--scaling stretch`` (2-98 % stretch; the product's former default);
- ``kmeans-context``: the same with ``--context`` (bands plus Gaussian-smoothed copies at sigma 1, 2, 4 px);
- ``grass``: GRASS GIS ``i.cluster`` (k classes) + ``i.maxlik`` (maximum-likelihood assignment) in a
  temporary GRASS location, when the ``grass`` command is installed (Debian ``grass-core``); skipped, with a
  message, when it is not. Deterministic: its seeds give identical results.
- ``bundled``: ``segment`` with the bundled model whose k is closest (``--bundled-scaling``), no fitting;
- ``ktextures``: ``python -m ktextures_plugin fit IMAGE --bands 3,2,1,4 --k K --seed S [options]`` then
  ``python -m ktextures_plugin segment IMAGE --model M --bands 3,2,1,4``; "fit s" = the fit command.

K = the number of reference classes present, times ``--k-factor`` (2 = over-clustering). Scores
(``core/metrics.py``) on pixels labelled in the reference: ARI, NMI, mIoU after majority (many-to-one)
and Hungarian (one-to-one) matching, pixel accuracy (Hungarian), and the sample metrics ``sample_purity``
and ``classes_reached`` (interior samples drawn with the product's sampler). The table gives mean +- sample
standard deviation over the seeds. Every run is appended to bench/out/quality.jsonl; ``--from-log`` prints
the table of the latest records and ``--summary`` the comparison of k-textures with the best peer per scene.

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
        import torch  # noqa: F401

        from ktextures_plugin import training
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


def grass_available():
    import shutil
    return shutil.which("grass") is not None


def grass_cluster(img, bands, k, out_path):
    """GRASS ``i.cluster`` + ``i.maxlik`` on ``bands`` of ``img`` (a temporary location from the file's CRS);
    writes a Byte class raster (1..k, 0 = null) on the image grid."""
    import tempfile
    b = [int(v) for v in bands.split(",")]
    script = "\n".join([
        "set -e",
        f"r.in.gdal -o --quiet input='{img}' output=img",
        "g.region raster=img.1",
        "i.group --quiet group=g subgroup=g input=" + ",".join(f"img.{i}" for i in b),
        f"i.cluster --quiet group=g subgroup=g signaturefile=sig classes={k}",
        "i.maxlik --quiet group=g subgroup=g signaturefile=sig output=cls",
        f"r.out.gdal --quiet -c input=cls output='{out_path}' type=Byte nodata=0 createopt=COMPRESS=LZW",
    ]) + "\n"
    with tempfile.TemporaryDirectory(prefix="ktx_grass_") as tmp:
        sh = os.path.join(tmp, "run.sh")
        with open(sh, "w") as f:
            f.write(script)
        os.chmod(sh, 0o755)
        cp = subprocess.run(["grass", "--tmp-location", img, "--exec", "bash", sh], capture_output=True,
                            text=True, cwd=tmp)
        if cp.returncode != 0:
            raise RuntimeError(f"GRASS failed ({cp.returncode}): {cp.stderr.strip()[-800:]}")


def run_one(scene, method, seed, k, steps=None, variant=None, features=None, scaling="model", binning=None,
            mask_width=None, retries=None, k_factor=1, continuity=None):
    from ktextures_plugin.core import metrics
    img, bands, label, _ = scene_paths(scene)
    os.makedirs(OUT, exist_ok=True)
    tag = "".join(f"_{x}" for x in (variant, features and re.sub(r"\W", "", features), binning,
                                    mask_width and f"w{mask_width}") if x)
    labels = os.path.join(OUT, f"quality_{scene}_{method}{tag}_k{k}_s{seed}.tif")
    rec = {"scene": scene, "method": method, "k": k, "seed": seed}
    km_opts = {"kmeans": [], "kmeans-stretch": ["--scaling", "stretch"], "kmeans-context": ["--context"]}
    if method in km_opts:
        rec["fit_s"] = timed([PY, "-m", "ktextures_plugin", "kmeans", img, "--bands", bands, "--k", str(k),
                              "--seed", str(seed), "--out", labels] + km_opts[method])
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
        from ktextures_plugin.training.train import DEFAULT_MASK_WIDTH, DEFAULT_RETRIES, DEFAULT_VARIANT
        rec["variant"] = variant or DEFAULT_VARIANT
        if variant in (None, "faithful") and not mask_width and DEFAULT_VARIANT == "faithful":
            rec["mask_width"] = DEFAULT_MASK_WIDTH      # recorded even when it is fit's default
        rec["retries"] = DEFAULT_RETRIES if retries is None else int(retries)
        if retries is not None:
            cmd += ["--retries", str(int(retries))]
        if continuity is not None:
            cmd += ["--continuity", str(continuity)]
            rec["continuity"] = continuity
        rec["fit_s"] = timed(cmd)
        rec["segment_s"] = timed([PY, "-m", "ktextures_plugin", "segment", img, "--model", model,
                                  "--bands", bands, "--out", labels, "--quiet"])
    elif method == "grass":
        t0 = time.perf_counter()
        grass_cluster(img, bands, k, labels)
        rec["fit_s"] = time.perf_counter() - t0
    elif method == "bundled":
        model, rec["k"] = bundled_model(k)
        from ktextures_plugin.core.inference import read_model_info
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
    rec["k_factor"] = k_factor
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
                 "retries", "continuity", "k_factor")
METHODS = ["kmeans", "kmeans-stretch", "kmeans-context", "grass", "ktextures", "bundled"]
#: the peers k-textures must beat (pixel k-means: the product's z-scored k-means and GRASS) and match (context)
PIXEL_PEERS = ("kmeans", "kmeans-stretch", "grass")


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
    if r.get("steps"):
        opts.append(f"{r['steps']} steps")
    if r.get("retries"):
        opts.append(f"{r['retries']} refit")
    if r.get("continuity"):
        opts.append(f"continuity {r['continuity']}")
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


def table(records):
    lines = ["| scene | method | k | seeds | labelled px | ARI | NMI | mIoU (majority) | mIoU (Hungarian) | "
             "accuracy (Hungarian) | sample purity | classes reached | fit s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _key, rs in groups(records):
        def col(name, rs=rs):
            return [r[name] for r in rs if r.get(name) is not None]
        lines.append(f"| {rs[0]['scene']} | {_name(rs[0])} | {rs[0]['k']} | {len(rs)} | {rs[0]['pixels']} | "
                     f"{fmt(col('ari'))} | {fmt(col('nmi'))} | {fmt(col('miou_majority'))} | "
                     f"{fmt(col('miou_hungarian'))} | {fmt(col('accuracy'))} | {fmt(col('sample_purity'))} | "
                     f"{fmt(col('classes_reached'), 1)} | {fmt(col('fit_s'), 1)} |")
    return "\n".join(lines)


def summary(records, candidate):
    """Per scene: the mean of ``candidate`` (a method name as in the table, e.g. "ktextures (context)") against
    the best pixel peer and the context k-means on each figure; a figure passes when the candidate is >= the best
    peer (strictly > for ARI and mIoU against the pixel peers)."""
    figs = ("ari", "miou_hungarian", "sample_purity", "classes_reached")
    lines = ["| scene | figure | k-textures | best pixel peer | context k-means | passes |",
             "|---|---|---|---|---|---|"]
    by_scene = {}
    for _key, rs in groups(records):
        by_scene.setdefault(rs[0]["scene"], []).append((_name(rs[0]), rs))
    for scene, cfgs in by_scene.items():
        mean = {name: {f: statistics.mean(r[f] for r in rs) for f in figs} for name, rs in cfgs}
        if candidate not in mean:
            continue
        peers = [n for n in mean if n.split(" (")[0] in PIXEL_PEERS and n != candidate]
        ctx = [n for n in mean if n.split(" (")[0] == "kmeans-context"]
        for f in figs:
            kt = mean[candidate][f]
            best = max((mean[n][f] for n in peers), default=float("nan"))
            cm = max((mean[n][f] for n in ctx), default=float("nan"))
            strict = f in ("ari", "miou_hungarian")
            ok = (kt > best if strict else kt >= best) and (not ctx or kt >= cm)
            lines.append(f"| {scene} | {f} | {kt:.3f} | {best:.3f} | {cm:.3f} | {'yes' if ok else 'no'} |")
    return "\n".join(lines)


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
        records = sorted((r for r in latest.values() if r["scene"] in order and r.get("method") in METHODS
                          and (r.get("k_factor") or 1) == args.k_factor),
                         key=lambda r: (order[r["scene"]], METHODS.index(r["method"]), str(r.get("variant")),
                                        str(r.get("features")), r["seed"]))
        print(summary(records, args.summary) if args.summary else table(records))
        return 0
    methods = args.methods or (["kmeans", "kmeans-context", "grass"]
                               + (["ktextures"] if ktextures_available() else []))
    if "ktextures" in methods and not ktextures_available():
        p.error("ktextures_plugin.training.fit or torch is not available")
    if "grass" in methods and not grass_available():
        print("GRASS GIS is not installed (the 'grass' command; Debian: apt install grass-core): the grass "
              "peer is skipped", file=sys.stderr)
        methods = [m for m in methods if m != "grass"]
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
            for seed in (args.seeds if method not in ("bundled", "grass") else args.seeds[:1]):
                rec = run_one(scene, method, seed, k, args.steps, args.variant, args.features,
                              args.bundled_scaling, args.binning, args.mask_width, args.retries, args.k_factor,
                              args.continuity)
                records.append(rec)
                log.write(json.dumps(rec) + "\n")
                log.flush()
                print(f"{scene:<17} {method:<14} k={k} seed={seed}: ARI {rec['ari']:.3f} NMI {rec['nmi']:.3f} "
                      f"mIoU maj {rec['miou_majority']:.3f} hung {rec['miou_hungarian']:.3f} purity "
                      f"{rec['sample_purity']:.3f} reached {rec['classes_reached']} fit {rec['fit_s']:.1f} s",
                      file=sys.stderr)
    md = table(records)
    print(md)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
