"""core.evaluate.metrics: hand-checkable cases, scikit-learn cross-checks on real label rasters, windowed
accumulation, grid checks. Class rasters come from the k-means baseline (core.kmeans) on real imagery."""
import itertools

import numpy as np
import pytest
from osgeo import gdal
from sklearn.metrics import adjusted_rand_score, jaccard_score, normalized_mutual_info_score

from conftest import SAMPLE, SAMPLE_LABEL, shared
from ktextures_plugin.core.evaluate import metrics
from ktextures_plugin.core.kmeans import KMeansOptions, kmeans

gdal.UseExceptions()

SLO = "s2_slovenia/s2_slovenia_ref4_b2b3b4b8_10m.tif"
SLO_LABEL = "s2_slovenia/lulc_label_10m.tif"


def _read(path):
    ds = gdal.Open(str(path))
    return ds.GetRasterBand(1).ReadAsArray()


@pytest.fixture(scope="module")
def slovenia_km(tmp_path_factory):
    img, label = shared(SLO), shared(SLO_LABEL)
    out = tmp_path_factory.mktemp("km") / "slo_k5.tif"
    kmeans.kmeans_raster(str(img), str(out), KMeansOptions(5, bands="3,2,1,4", seed=0))
    return str(out), str(label)


@pytest.fixture(scope="module")
def sample_km(tmp_path_factory):
    out = tmp_path_factory.mktemp("km") / "bb_k6.tif"
    kmeans.kmeans_raster(str(SAMPLE), str(out), KMeansOptions(6, bands="3,2,1,4", seed=1))
    return str(out), str(SAMPLE_LABEL)


# ------------------------------------------------------------------------------- hand-checkable cases
def test_permuted_labels_score_one():
    ref = np.array([[1, 1, 2, 2], [3, 3, 3, 1]])
    pred = np.array([[7, 7, 4, 4], [9, 9, 9, 7]])  # a relabelling of ref
    s = metrics.scores(metrics.contingency(pred, ref))
    assert s.ari == 1.0 and s.nmi == pytest.approx(1.0)
    assert s.accuracy == 1.0 and s.miou_hungarian == 1.0 and s.miou_majority == 1.0
    assert s.pixels == 8
    # the Hungarian mapping is the inverse permutation
    t = s.table
    assert dict(zip(t.pred_labels.tolist(), t.ref_labels[s.hungarian].tolist())) == {4: 2, 7: 1, 9: 3}


def test_independent_partitions_by_hand():
    # contingency [[1, 1], [1, 1]]: sum C(n_ij,2) = 0, sum C(a_i,2) = sum C(b_j,2) = 2, C(4,2) = 6
    # ARI = (0 - 2*2/6) / ((2+2)/2 - 2*2/6) = -0.5; MI = 0 -> NMI 0
    pred, ref = np.array([1, 1, 2, 2]), np.array([1, 2, 1, 2])
    s = metrics.scores(metrics.contingency(pred, ref))
    assert s.ari == pytest.approx(-0.5)
    assert s.nmi == 0.0
    assert s.accuracy == pytest.approx(0.5)
    assert s.miou_hungarian == pytest.approx(1 / 3)  # TP 1, FP 1, FN 1 for each class
    assert s.table.counts.tolist() == [[1, 1], [1, 1]]


def test_more_clusters_than_classes():
    pred = np.array([1, 1, 2, 2, 3, 3])
    ref = np.array([1, 1, 2, 2, 2, 2])
    s = metrics.scores(metrics.contingency(pred, ref))
    # Hungarian: one of clusters 2/3 stays unmatched -> accuracy 4/6; IoU(1) = 1, IoU(2) = 2/4
    assert (s.hungarian == -1).sum() == 1
    assert s.accuracy == pytest.approx(4 / 6)
    assert s.iou_hungarian.tolist() == pytest.approx([1.0, 0.5])
    assert s.miou_hungarian == pytest.approx(0.75)
    # majority: 2 and 3 both -> class 2: perfect
    assert s.accuracy_majority == 1.0 and s.miou_majority == 1.0
    assert s.ari < 1.0
    assert s.ari == pytest.approx(adjusted_rand_score(ref, pred))


def test_fewer_clusters_than_classes():
    pred = np.array([1, 1, 1, 1, 2, 2])
    ref = np.array([1, 1, 2, 2, 3, 3])
    s = metrics.scores(metrics.contingency(pred, ref))
    # cluster 2 -> class 3 exactly; cluster 1 -> class 1 or 2 (2 of its 4 px); the third class gets IoU 0
    assert s.accuracy == pytest.approx(4 / 6)
    assert sorted(s.iou_hungarian.tolist()) == pytest.approx([0.0, 0.5, 1.0])
    assert s.miou_hungarian == pytest.approx(0.5)


def test_nodata_excluded_and_reference_nodata_none():
    pred = np.array([0, 1, 1, 2, 2, 2])
    ref = np.array([1, 0, 1, 2, 2, 0])
    t = metrics.contingency(pred, ref)
    assert t.pixels == 3 and t.pred_labels.tolist() == [1, 2] and t.ref_labels.tolist() == [1, 2]
    t2 = metrics.contingency(pred, ref, ref_nodata=None)
    assert t2.pixels == 5 and t2.ref_labels.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="nothing to score"):
        metrics.scores(metrics.contingency(np.zeros(4, int), np.ones(4, int)))


def test_fractional_reference_rejected():
    with pytest.raises(ValueError, match="whole-number"):
        metrics.contingency(np.array([1, 2]), np.array([1.0, 2.5]))


def test_random_tables_match_sklearn():
    rng = np.random.default_rng(42)
    for trial in range(20):
        n = int(rng.integers(50, 3000))
        k, m = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        ref = rng.integers(1, m + 1, n)
        pred = np.where(rng.random(n) < rng.random(), ref, rng.integers(1, k + 1, n))
        s = metrics.scores(metrics.contingency(pred, ref))
        assert s.ari == pytest.approx(adjusted_rand_score(ref, pred), abs=1e-12), trial
        assert s.nmi == pytest.approx(normalized_mutual_info_score(ref, pred), abs=1e-12), trial


# ------------------------------------------------------------------------------- real rasters
def _masked(pred_path, ref_path):
    p, r = _read(pred_path).ravel(), _read(ref_path).ravel()
    ok = (p != 0) & (r != 0)
    return p[ok], r[ok]


def _brute_force_best_matching(p, r):
    """Best one-to-one matched pixel count by trying every assignment (small k only)."""
    pl, rl = np.unique(p), np.unique(r)
    counts = np.array([[np.sum((p == a) & (r == b)) for b in rl] for a in pl])
    best = 0
    if len(pl) <= len(rl):
        for cols in itertools.permutations(range(len(rl)), len(pl)):
            best = max(best, sum(counts[i, c] for i, c in enumerate(cols)))
    else:
        for rows in itertools.permutations(range(len(pl)), len(rl)):
            best = max(best, sum(counts[rw, j] for j, rw in enumerate(rows)))
    return best


@pytest.mark.parametrize("which", ["slovenia", "sample"])
def test_real_rasters_match_sklearn(which, request):
    pred_path, ref_path = request.getfixturevalue(f"{which}_km" if which == "slovenia" else "sample_km")
    s = metrics.evaluate_rasters(pred_path, ref_path)
    p, r = _masked(pred_path, ref_path)
    assert s.pixels == p.size > 1000
    assert s.ari == pytest.approx(adjusted_rand_score(r, p), abs=1e-10)
    assert s.nmi == pytest.approx(normalized_mutual_info_score(r, p), abs=1e-10)
    # confusion matrix = pixel pair counts
    t = s.table
    assert set(t.pred_labels.tolist()) == set(np.unique(p).tolist())
    assert set(t.ref_labels.tolist()) == set(np.unique(r).tolist())
    for i, a in enumerate(t.pred_labels):
        for j, b in enumerate(t.ref_labels):
            assert t.counts[i, j] == np.sum((p == a) & (r == b))
    # Hungarian accuracy = best one-to-one assignment found by brute force
    assert round(s.accuracy * s.pixels) == _brute_force_best_matching(p, r)
    # IoU after relabelling, independently with scikit-learn's jaccard_score
    for mapping, miou in ((s.hungarian, s.miou_hungarian), (s.majority, s.miou_majority)):
        lut = {int(a): (int(t.ref_labels[j]) if j >= 0 else -1) for a, j in zip(t.pred_labels, mapping)}
        relabelled = np.array([lut[int(v)] for v in p])
        assert miou == pytest.approx(jaccard_score(r, relabelled, labels=t.ref_labels, average="macro",
                                                   zero_division=0), abs=1e-12)
    assert s.accuracy_majority >= s.accuracy  # many-to-one can only match more pixels
    assert -0.5 <= s.ari <= 1 and 0 <= s.nmi <= 1


def test_windowed_accumulation_equals_whole(sample_km):
    pred_path, ref_path = sample_km
    whole = metrics.confusion_from_rasters(pred_path, ref_path, window_pixels=10 ** 9)
    tiny = metrics.confusion_from_rasters(pred_path, ref_path, window_pixels=700)  # 1 row per window
    mem = metrics.contingency(_read(pred_path), _read(ref_path))
    for t in (tiny, mem):
        assert np.array_equal(t.counts, whole.counts)
        assert np.array_equal(t.pred_labels, whole.pred_labels)
        assert np.array_equal(t.ref_labels, whole.ref_labels)


def test_slovenia_kmeans_scores_are_informative(slovenia_km):
    """Sanity, not a target: k-means on 4 bands carries land-use information (README floor ARI 0.22)."""
    s = metrics.evaluate_rasters(*slovenia_km)
    assert s.ari > 0.05 and s.nmi > 0.1


def test_grid_mismatch_raises(slovenia_km, tmp_path):
    pred_path, ref_path = slovenia_km
    with pytest.raises(ValueError, match="not on the same grid: the sizes differ"):
        metrics.confusion_from_rasters(pred_path, str(SAMPLE_LABEL))
    shifted = tmp_path / "shifted.tif"
    ds = gdal.GetDriverByName("GTiff").CreateCopy(str(shifted), gdal.Open(ref_path))
    gt = list(ds.GetGeoTransform())
    gt[0] += gt[1]  # one pixel east
    ds.SetGeoTransform(gt)
    ds = None
    with pytest.raises(ValueError, match="geotransforms differ"):
        metrics.confusion_from_rasters(pred_path, str(shifted))
    # a pixel size 0.2 % larger: the far corner is 0.2 px off -> rejected; 0.01 px off -> the same grid
    for rel, ok in ((1.002, False), (1.0001, True)):
        ds = gdal.Open(str(shifted), gdal.GA_Update)
        g = list(gdal.Open(ref_path).GetGeoTransform())
        g[1] *= rel
        ds.SetGeoTransform(g)
        ds = None
        if ok:
            assert metrics.confusion_from_rasters(pred_path, str(shifted)).pixels > 0
        else:
            with pytest.raises(ValueError, match="geotransforms differ"):
                metrics.confusion_from_rasters(pred_path, str(shifted))
    with pytest.raises(ValueError, match="cannot open"):
        metrics.confusion_from_rasters(pred_path, str(tmp_path / "missing.tif"))


def test_reference_band_nodata_is_honoured(slovenia_km, tmp_path):
    """A reference whose own nodata value is 255 and whose class ids include 0 (ref_nodata=None)."""
    pred_path, ref_path = slovenia_km
    r = _read(ref_path).astype(np.uint8)
    r2 = np.where(r == 0, 255, r - 1).astype(np.uint8)  # classes 0..7, unlabelled 255
    src = gdal.Open(ref_path)
    out = tmp_path / "ref255.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(out), src.RasterXSize, src.RasterYSize, 1, gdal.GDT_Byte)
    ds.SetGeoTransform(src.GetGeoTransform())
    ds.SetProjection(src.GetProjection())
    ds.GetRasterBand(1).WriteArray(r2)
    ds.GetRasterBand(1).SetNoDataValue(255)
    ds = None
    a = metrics.evaluate_rasters(pred_path, ref_path)
    b = metrics.evaluate_rasters(pred_path, str(out), ref_nodata=None)
    assert b.pixels == a.pixels
    assert b.as_dict() == pytest.approx(a.as_dict())


def test_segment_output_scores_like_sklearn(tiny_models, tmp_path):
    """A class raster written by core.segment (tiny binning model) is scored as written: format compatible."""
    from ktextures_plugin.core.segment import SegmentOptions, segment_raster

    out = tmp_path / "seg.tif"
    segment_raster(str(SAMPLE), tiny_models["bin4"], str(out), SegmentOptions(bands="3,2,1,4", scaling="stretch"))
    s = metrics.evaluate_rasters(str(out), str(SAMPLE_LABEL))
    p, r = _masked(out, SAMPLE_LABEL)
    assert s.pixels == p.size
    assert set(s.table.pred_labels.tolist()) <= {1, 2, 3, 4}
    assert s.ari == pytest.approx(adjusted_rand_score(r, p), abs=1e-10)
    assert s.nmi == pytest.approx(normalized_mutual_info_score(r, p), abs=1e-10)


# ------------------------------------------------------------------------------- sample metrics
def _write_like(path, like, array):
    src = gdal.Open(str(like))
    ds = gdal.GetDriverByName("GTiff").Create(str(path), src.RasterXSize, src.RasterYSize, 1, gdal.GDT_Byte)
    ds.SetGeoTransform(src.GetGeoTransform())
    ds.SetProjection(src.GetProjection())
    ds.GetRasterBand(1).SetNoDataValue(0)
    ds.GetRasterBand(1).WriteArray(array.astype(np.uint8))
    ds = None
    return str(path)


def test_sample_purity_and_classes_reached_by_construction(slovenia_km, tmp_path):
    """A prediction equal to the dense reference is pure and reaches every class; merging two reference
    classes into one cluster loses one class reached and puts wrong samples in the merged cluster."""
    _, ref_path = slovenia_km
    ref = _read(ref_path)
    classes = [int(v) for v in np.unique(ref) if v != 0]
    exact = _write_like(tmp_path / "exact.tif", ref_path, ref)
    s = metrics.evaluate_rasters(exact, ref_path)
    assert s.sample_purity == 1.0 and s.classes_reached == len(classes) and s.samples_scored > 0
    big = sorted(classes, key=lambda c: -int((ref == c).sum()))[:2]   # merge the two largest classes
    merged_ref = np.where(ref == big[1], big[0], ref)
    merged = _write_like(tmp_path / "merged.tif", ref_path, merged_ref)
    m = metrics.evaluate_rasters(merged, ref_path)
    assert m.classes_reached == len(classes) - 1
    assert m.sample_purity < 1.0
    d = m.as_dict()
    assert {"sample_purity", "classes_reached", "samples_scored"} <= set(d)


def test_sample_purity_of_kmeans_is_a_share(slovenia_km):
    s = metrics.evaluate_rasters(*slovenia_km)
    assert 0.0 <= s.sample_purity <= 1.0 and 1 <= s.classes_reached <= len(s.table.ref_labels)
    assert metrics.evaluate_rasters(*slovenia_km, samples=False).samples_scored == 0


# ------------------------------------------------------------------------------- lecture indices, downstream
def test_kappa_precision_recall_f1_match_sklearn(sample_km):
    """Per-class precision / recall / F1 and Cohen's kappa after the Hungarian matching equal scikit-learn's on
    the relabelled pixels (unmatched clusters relabelled to a value no reference class has)."""
    from sklearn.metrics import cohen_kappa_score, precision_recall_fscore_support

    pred_path, ref_path = sample_km
    s = metrics.evaluate_rasters(pred_path, ref_path, samples=False)
    p, r = _masked(pred_path, ref_path)
    t = s.table
    lut = {int(c): (int(t.ref_labels[j]) if j >= 0 else -1) for c, j in zip(t.pred_labels, s.hungarian)}
    relabelled = np.array([lut[int(v)] for v in p])
    prec, rec, f1, _ = precision_recall_fscore_support(r, relabelled, labels=t.ref_labels, zero_division=0)
    assert s.precision == pytest.approx(prec, abs=1e-12)
    assert s.recall == pytest.approx(rec, abs=1e-12)
    assert s.f1 == pytest.approx(f1, abs=1e-12)
    assert s.kappa == pytest.approx(cohen_kappa_score(r, relabelled), abs=1e-12)
    rows = s.per_class()
    assert [row["reference_class"] for row in rows] == t.ref_labels.tolist()
    assert s.as_dict()["f1_macro"] == pytest.approx(float(np.mean(f1)))


def test_downstream_figures_by_construction(slovenia_km, tmp_path):
    """With k-means' own (spectrally separable) partition as the reference: classes equal to it give the forest
    correct samples of every class and it recovers the partition almost exactly; two classes merged into one
    cluster teach it one class fewer (IoU 0 for the other); a single class teaches it one class: it predicts that
    class everywhere, so its accuracy is that class's share and its mIoU that share over the number of classes."""
    km_path, _ = slovenia_km
    img = str(shared(SLO))
    ref = _read(km_path)
    e = metrics.evaluate_rasters(km_path, km_path, image_path=img, bands=[3, 2, 1, 4])
    assert e.downstream_samples > 0 and e.downstream_accuracy > 0.9
    big = [int(v) for v in np.argsort(-np.bincount(ref.ravel(), minlength=6)[1:])[:2] + 1]
    merged = _write_like(tmp_path / "merged.tif", km_path, np.where(ref == big[1], big[0], ref))
    m = metrics.evaluate_rasters(merged, km_path, image_path=img, bands=[3, 2, 1, 4])
    assert m.downstream_miou < e.downstream_miou - 0.1
    assert 0.0 <= m.downstream_miou <= m.downstream_accuracy <= 1.0
    again = metrics.evaluate_rasters(merged, km_path, image_path=img, bands=[3, 2, 1, 4])
    assert again.as_dict() == m.as_dict()                               # seeded sampler and forest
    one = _write_like(tmp_path / "one.tif", km_path, np.ones_like(ref))
    o = metrics.evaluate_rasters(one, km_path, image_path=img)
    counts = np.bincount(ref.ravel())[1:]
    share = counts.max() / counts.sum()
    assert o.downstream_accuracy == pytest.approx(share)
    assert o.downstream_miou == pytest.approx(share / np.count_nonzero(counts))
    assert "downstream_miou" not in metrics.evaluate_rasters(km_path, km_path).as_dict()


def test_downstream_image_must_share_the_grid(slovenia_km):
    km_path, ref_path = slovenia_km
    with pytest.raises(ValueError, match="not on the same grid"):
        metrics.evaluate_rasters(km_path, ref_path, image_path=str(SAMPLE))
