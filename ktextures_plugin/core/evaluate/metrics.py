"""Quality of a class raster against a reference labelling: ARI, NMI, accuracy, mIoU.

No QGIS: numpy, scipy and GDAL only. Everything is computed from the contingency table
``counts[i, j]`` = number of scored pixels with predicted label ``pred_labels[i]`` and reference label
``ref_labels[j]``. A pixel is *scored* when it is labelled in the reference (its value is not the
reference nodata value, 0 by default, nor the reference band's own nodata value) and valid in the
prediction (not 0, the class-raster nodata). The table is accumulated window by window over the two
rasters (:func:`confusion_from_rasters`), so memory does not grow with the raster.

Formulas:

* ARI: Hubert & Arabie (1985), "Comparing partitions", J. Classification 2:193-218, as in
  ``sklearn.metrics.adjusted_rand_score`` (identical partitions with zero expected index -> 1.0).
* NMI: Strehl & Ghosh (2002) / Vinh, Epps & Bailey (2010); MI divided by the arithmetic mean of the two
  entropies (natural log), as ``sklearn.metrics.normalized_mutual_info_score`` with its default
  ``average_method="arithmetic"`` (both labellings a single class -> 1.0; MI = 0 -> 0.0).
* Hungarian matching: a one-to-one assignment of clusters to reference classes maximising the matched
  pixel count (``scipy.optimize.linear_sum_assignment``, Kuhn-Munkres, on the rectangular table, so
  k != number of reference classes is allowed: surplus clusters stay unmatched and their pixels count as
  wrong; surplus reference classes get IoU 0).
* Majority (many-to-one) matching: each cluster takes the reference class holding most of its pixels.
* Sample metrics (:func:`sample_scores`, the analyst's use: training samples pulled from class interiors):
  interior samples are drawn from the class raster with the product's own sampler
  (``sampling.draw_samples``: :data:`SAMPLE_PER_CLASS` per class, edge distance >= :data:`SAMPLE_MIN_EDGE_PX`
  px, seed :data:`SAMPLE_SEED`); each cluster is mapped to the reference class holding most of its labelled
  pixels (majority matching); ``sample_purity`` = share of the samples on labelled pixels whose reference
  class equals their cluster's mapped class; ``classes_reached`` = number of distinct reference classes that
  are the mapped class of at least one cluster.
* After a matching, pixel accuracy = matched pixels / scored pixels and, for each reference class j,
  IoU_j = TP_j / (TP_j + FP_j + FN_j) on the relabelled prediction; mIoU = mean IoU_j over the
  reference classes present among the scored pixels. With the Hungarian matching also, per reference class,
  precision_j = TP_j / (TP_j + FP_j), recall_j = TP_j / (TP_j + FN_j) and F1_j = their harmonic mean (0 when
  TP_j = 0), and Cohen's kappa (Cohen 1960) of the relabelled prediction: (p_o - p_e) / (1 - p_e) with p_o the
  accuracy and p_e = sum_j (predicted_j / n) (true_j / n) (pixels of unmatched clusters agree with no class).
* Downstream figures (:func:`downstream_scores`, the analyst's end use: a supervised classifier trained on the
  samples): the interior samples of the sample metrics, each labelled with its cluster's majority reference
  class, train a scikit-learn random forest (:data:`FOREST_TREES` trees, ``random_state`` :data:`FOREST_SEED`)
  on the image's band values at those points; the forest classifies the scored pixels (those labelled in the
  reference and classified in the prediction: the same scores as classifying the whole scene), and
  ``downstream_accuracy`` / ``downstream_miou`` are its pixel accuracy and mIoU against the reference (no
  matching needed: the forest predicts reference classes; a class it never predicts has IoU 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from osgeo import gdal
from scipy.optimize import linear_sum_assignment

from ..errors import ParameterError
from ..io import geo

gdal.UseExceptions()

#: Pixels read per window by :func:`confusion_from_rasters` (whole rows, at least one row).
WINDOW_PIXELS = 4_000_000


@dataclass
class Contingency:
    """The contingency (confusion) table of a prediction against a reference.

    Attributes:
        counts: int64 ``(n_pred, n_ref)``: scored pixels per (predicted label, reference label).
        pred_labels: int64 ``(n_pred,)``, sorted ascending: the predicted labels present among scored pixels.
        ref_labels: int64 ``(n_ref,)``, sorted ascending: the reference labels present among scored pixels.
    """

    counts: np.ndarray
    pred_labels: np.ndarray
    ref_labels: np.ndarray

    @property
    def pixels(self) -> int:
        """Number of scored pixels (sum of the table)."""
        return int(self.counts.sum())


@dataclass
class Scores:
    """All figures of one evaluation (see the module docstring for the definitions).

    Attributes:
        ari, nmi: floats in [-0.5, 1] and [0, 1]; NaN when no pixel is scored.
        accuracy, miou_hungarian: after the one-to-one Hungarian matching.
        accuracy_majority, miou_majority: after the many-to-one majority matching.
        pixels: scored pixels.
        hungarian, majority: int64 ``(n_pred,)`` index into ``table.ref_labels`` per predicted label,
            -1 = unmatched.
        iou_hungarian, iou_majority: float64 ``(n_ref,)`` IoU per reference class.
    """

    table: Contingency
    ari: float
    nmi: float
    accuracy: float
    miou_hungarian: float
    accuracy_majority: float
    miou_majority: float
    pixels: int
    hungarian: np.ndarray = field(repr=False)
    majority: np.ndarray = field(repr=False)
    iou_hungarian: np.ndarray = field(repr=False)
    iou_majority: np.ndarray = field(repr=False)
    sample_purity: float = float("nan")
    classes_reached: int = 0
    samples_scored: int = 0
    kappa: float = float("nan")
    precision: np.ndarray = field(default=None, repr=False)
    recall: np.ndarray = field(default=None, repr=False)
    f1: np.ndarray = field(default=None, repr=False)
    downstream_accuracy: float = float("nan")
    downstream_miou: float = float("nan")
    downstream_samples: int = 0

    def as_dict(self) -> Dict[str, float]:
        """The headline figures: keys ``ari, nmi, accuracy, miou_hungarian, miou_majority, pixels,
        sample_purity, classes_reached, samples_scored, kappa, f1_macro`` and, when the downstream figures were
        computed (:func:`downstream_scores`), ``downstream_accuracy, downstream_miou, downstream_samples``."""
        d = {"ari": float(self.ari), "nmi": float(self.nmi), "accuracy": float(self.accuracy),
             "miou_hungarian": float(self.miou_hungarian), "miou_majority": float(self.miou_majority),
             "pixels": int(self.pixels), "sample_purity": float(self.sample_purity),
             "classes_reached": int(self.classes_reached), "samples_scored": int(self.samples_scored),
             "kappa": float(self.kappa), "f1_macro": float(np.mean(self.f1)) if self.f1 is not None else 0.0}
        if self.downstream_samples:
            d.update(downstream_accuracy=float(self.downstream_accuracy),
                     downstream_miou=float(self.downstream_miou), downstream_samples=int(self.downstream_samples))
        return d

    def per_class(self) -> List[Dict]:
        """One row per reference class (``table.ref_labels`` order), Hungarian matching: ``reference_class,
        precision, recall, f1, iou``."""
        return [{"reference_class": int(r), "precision": float(p), "recall": float(q), "f1": float(f),
                 "iou": float(i)}
                for r, p, q, f, i in zip(self.table.ref_labels, self.precision, self.recall, self.f1,
                                         self.iou_hungarian)]


# --------------------------------------------------------------------------------------------- table
def _as_int_labels(a: np.ndarray, what: str) -> np.ndarray:
    """int64 copy of label values; float input must hold whole numbers."""
    a = np.asarray(a)
    if np.issubdtype(a.dtype, np.floating):
        if a.size and not np.all(np.isfinite(a) & (a == np.round(a))):
            raise ParameterError(f"The {what} must hold whole-number class ids; it has fractional or NaN values "
                             "among the scored pixels")
        return a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.integer):
        raise ParameterError(f"The {what} must be an integer label array, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


class ContingencyAccumulator:
    """Accumulates a :class:`Contingency` over windows: call :meth:`add` per window, then :meth:`table`."""

    def __init__(self) -> None:
        self._pairs: Dict[Tuple[int, int], int] = {}

    def add(self, pred: np.ndarray, ref: np.ndarray, valid: Optional[np.ndarray] = None) -> int:
        """Add the pixels of one window.

        Args:
            pred, ref: integer (or whole-valued float) arrays of the same shape, any dimensionality.
            valid: bool array of that shape; only True pixels are counted (default: all).

        Returns:
            the number of pixels added.
        """
        pred, ref = np.asarray(pred), np.asarray(ref)
        if pred.shape != ref.shape:
            raise ParameterError(f"Prediction and reference windows differ in shape: {pred.shape} vs {ref.shape}")
        if valid is not None:
            pred, ref = pred[valid], ref[valid]
        p = _as_int_labels(pred.ravel(), "prediction")
        r = _as_int_labels(ref.ravel(), "reference")
        if p.size == 0:
            return 0
        pmin, pmax, rmin, rmax = int(p.min()), int(p.max()), int(r.min()), int(r.max())
        nr = rmax - rmin + 1
        if (pmax - pmin + 1) * nr <= 4_000_000:  # dense: one bincount
            counts = np.bincount((p - pmin) * nr + (r - rmin), minlength=(pmax - pmin + 1) * nr)
            for key in np.flatnonzero(counts):
                pair = (int(key // nr) + pmin, int(key % nr) + rmin)
                self._pairs[pair] = self._pairs.get(pair, 0) + int(counts[key])
        else:  # sparse: unique pairs
            pairs, counts = np.unique(np.stack([p, r]), axis=1, return_counts=True)
            for (a, b), c in zip(pairs.T.tolist(), counts.tolist()):
                self._pairs[(a, b)] = self._pairs.get((a, b), 0) + int(c)
        return int(p.size)

    def table(self) -> Contingency:
        """The accumulated table (empty ``(0, 0)`` when nothing was added)."""
        pl = np.array(sorted({a for a, _ in self._pairs}), np.int64)
        rl = np.array(sorted({b for _, b in self._pairs}), np.int64)
        counts = np.zeros((pl.size, rl.size), np.int64)
        pi = {v: i for i, v in enumerate(pl.tolist())}
        ri = {v: j for j, v in enumerate(rl.tolist())}
        for (a, b), c in self._pairs.items():
            counts[pi[a], ri[b]] += c
        return Contingency(counts, pl, rl)


def contingency(pred: np.ndarray, ref: np.ndarray, pred_nodata: Optional[int] = 0,
                ref_nodata: Optional[int] = 0) -> Contingency:
    """Contingency table of two label arrays of the same shape (in memory; see
    :func:`confusion_from_rasters` for files).

    Args:
        pred: predicted labels, any integer dtype; ``pred_nodata`` (0) marks unclassified pixels.
        ref: reference labels; ``ref_nodata`` (0) marks unlabelled pixels. ``None`` = no such value.
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    valid = np.ones(pred.shape, bool)
    if pred_nodata is not None:
        valid &= pred != pred_nodata
    if ref_nodata is not None:
        valid &= ref != ref_nodata
    acc = ContingencyAccumulator()
    acc.add(pred, ref, valid)
    return acc.table()


# --------------------------------------------------------------------------------------------- rasters
def check_same_grid(a: gdal.Dataset, b: gdal.Dataset, name_a: str = "prediction",
                    name_b: str = "reference", tolerance_px: float = 0.1) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same size, geotransform and (when both
    declare one) CRS.

    Geotransforms count as equal when the four raster corners of ``b`` lie within ``tolerance_px``
    pixels of those of ``a`` (so every pixel centre of one raster falls inside the matching pixel of the
    other; labels rasterised by another tool often differ in the last decimals of the geotransform).
    """
    if (a.RasterXSize, a.RasterYSize) != (b.RasterXSize, b.RasterYSize):
        raise ParameterError(f"The {name_a} ({a.RasterXSize} x {a.RasterYSize} px) and the {name_b} "
                         f"({b.RasterXSize} x {b.RasterYSize} px) are not on the same grid: the sizes differ. "
                         f"Resample the {name_b} onto the {name_a}'s grid (e.g. gdalwarp -te/-tr, or "
                         f"'Align rasters') first.")
    ga, gb = np.array(a.GetGeoTransform(), float), np.array(b.GetGeoTransform(), float)
    w, h = a.RasterXSize, a.RasterYSize
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], float)

    def xy(gt):
        return np.stack([gt[0] + corners[:, 0] * gt[1] + corners[:, 1] * gt[2],
                         gt[3] + corners[:, 0] * gt[4] + corners[:, 1] * gt[5]], axis=1)

    px = max(min(np.hypot(ga[1], ga[4]), np.hypot(ga[2], ga[5])), 1e-300)
    off = float(np.max(np.hypot(*(xy(ga) - xy(gb)).T)) / px)
    if not off <= tolerance_px:
        raise ParameterError(f"The {name_a} and the {name_b} are not on the same grid: geotransforms differ "
                         f"by up to {off:.3g} pixels at the corners ({tuple(ga)} vs {tuple(gb)}). Resample the "
                         f"{name_b} onto the {name_a}'s grid first.")
    wa, wb = a.GetProjection(), b.GetProjection()
    if wa and wb and not geo.same_crs(wa, wb):
        sa, sb = geo.srs_of(wa), geo.srs_of(wb)
        raise ParameterError(f"The {name_a} ({sa.GetName()}) and the {name_b} ({sb.GetName()}) have different "
                             f"CRS. Reproject the {name_b} onto the {name_a}'s grid first.")


def _open(path: str, what: str) -> gdal.Dataset:
    try:
        ds = gdal.Open(str(path), gdal.GA_ReadOnly)
    except RuntimeError as exc:
        raise ParameterError(f"GDAL cannot open the {what} '{path}': {exc}") from None
    if ds is None:
        raise ParameterError(f"GDAL cannot open the {what} '{path}'")
    return ds


def confusion_from_rasters(pred_path: str, ref_path: str, *, ref_nodata: Optional[float] = 0,
                           pred_nodata: Optional[float] = 0, pred_band: int = 1, ref_band: int = 1,
                           window_pixels: int = WINDOW_PIXELS) -> Contingency:
    """Contingency table of a class raster against a reference raster on the same grid.

    Reads both rasters in windows of whole rows (about ``window_pixels`` pixels each), so memory does
    not grow with the raster. A pixel is scored when the reference value is neither ``ref_nodata`` nor
    the reference band's nodata value, and the prediction is neither ``pred_nodata`` (0) nor the
    prediction band's nodata value.

    Raises:
        ValueError: a file cannot be opened, the grids differ (:func:`check_same_grid`), or the
            reference holds non-integer values.
    """
    pds, rds = _open(pred_path, "class raster"), _open(ref_path, "reference")
    try:
        check_same_grid(pds, rds)
        acc = ContingencyAccumulator()
        for _win, p, r, valid in _scored_windows(pds, rds, (pred_band, ref_band), (pred_nodata, ref_nodata),
                                                 window_pixels):
            acc.add(p, r, valid)
        return acc.table()
    finally:
        pds = rds = None


def _scored_windows(pds: gdal.Dataset, rds: gdal.Dataset, bands=(1, 1), nodata=(0, 0),
                    window_pixels: int = WINDOW_PIXELS):
    """Windows of whole rows (about ``window_pixels`` pixels) of a prediction and a reference on one grid.

    Yields ``(window, p, r, valid)``: ``window`` = (x, y, width, height) in pixels, ``p`` and ``r`` the (h, w)
    arrays of the two bands ``bands`` = (prediction band, reference band), and ``valid`` (h, w) bool: neither
    value is its ``nodata`` (prediction nodata, reference nodata; ``None`` = none) nor its band's nodata value,
    and the reference value is finite."""
    pb, rb = pds.GetRasterBand(bands[0]), rds.GetRasterBand(bands[1])
    p_nd = [v for v in (nodata[0], pb.GetNoDataValue()) if v is not None]
    r_nd = [v for v in (nodata[1], rb.GetNoDataValue()) if v is not None]
    w, h = pds.RasterXSize, pds.RasterYSize
    rows = max(1, int(window_pixels) // max(1, w))
    for y in range(0, h, rows):
        win = (0, y, w, min(rows, h - y))
        p, r = pb.ReadAsArray(*win), rb.ReadAsArray(*win)
        valid = np.ones(p.shape, bool)
        for v in p_nd:
            valid &= p != v
        for v in r_nd:
            valid &= r != v
        if np.issubdtype(r.dtype, np.floating):
            valid &= np.isfinite(r)
        yield win, p, r, valid


# --------------------------------------------------------------------------------------------- metrics
def _comb2_sum(values) -> int:
    """sum of C(v, 2) over ``values``, exact (Python ints)."""
    return sum(v * (v - 1) // 2 for v in (int(x) for x in np.ravel(values)) if v > 1)


def adjusted_rand_index(table: Contingency) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) from the contingency table.

    ARI = (sum_ij C(n_ij,2) - E) / ((sum_i C(a_i,2) + sum_j C(b_j,2)) / 2 - E), with
    E = sum_i C(a_i,2) * sum_j C(b_j,2) / C(n,2); a_i, b_j = row, column sums. Exact integer
    arithmetic up to the final division. 1.0 when the denominator is 0 (the two partitions are then
    identical: both one class, or both all singletons), as scikit-learn. NaN for an empty table.
    """
    n = table.pixels
    if n == 0:
        return float("nan")
    index = _comb2_sum(table.counts)
    sa = _comb2_sum(table.counts.sum(axis=1))
    sb = _comb2_sum(table.counts.sum(axis=0))
    pairs = n * (n - 1) // 2
    # multiply through by C(n,2) to stay in integers: (index*P - sa*sb) / ((sa+sb)*P/2 - sa*sb)
    num = 2 * (index * pairs - sa * sb)
    den = (sa + sb) * pairs - 2 * sa * sb
    if den == 0:
        return 1.0
    return float(num / den)


def _entropy(sizes: np.ndarray) -> float:
    """Shannon entropy (nats) of a partition given its class sizes (as scikit-learn's ``entropy``)."""
    pi = np.asarray(sizes, np.float64)
    pi = pi[pi > 0]
    if pi.size == 0:
        return 1.0
    s = pi.sum()
    return float(-np.sum((pi / s) * (np.log(pi) - np.log(s))))


def mutual_information(table: Contingency) -> float:
    """Mutual information (nats) of the two labellings: sum_ij n_ij/n * log(n * n_ij / (a_i * b_j))."""
    c = table.counts
    n = float(c.sum())
    if n == 0:
        return float("nan")
    nzx, nzy = np.nonzero(c)
    nz = c[nzx, nzy].astype(np.float64)
    a = c.sum(axis=1).astype(np.float64)
    b = c.sum(axis=0).astype(np.float64)
    mi = (nz / n) * (np.log(nz) - np.log(n)) + (nz / n) * (-np.log(a[nzx] * b[nzy]) + 2 * np.log(n))
    mi = np.where(np.abs(mi) < np.finfo(np.float64).eps, 0.0, mi)
    return float(max(mi.sum(), 0.0))


def normalized_mutual_info(table: Contingency) -> float:
    """NMI with arithmetic-mean normalisation: MI / ((H(pred) + H(ref)) / 2).

    Special cases as scikit-learn: both labellings a single class -> 1.0; MI = 0 -> 0.0;
    empty table -> NaN.
    """
    if table.pixels == 0:
        return float("nan")
    n_pred, n_ref = table.counts.shape
    if n_pred == n_ref == 1:
        return 1.0
    mi = mutual_information(table)
    if mi == 0:
        return 0.0
    h_pred, h_ref = _entropy(table.counts.sum(axis=1)), _entropy(table.counts.sum(axis=0))
    norm = max((h_pred + h_ref) / 2.0, np.finfo(np.float64).eps)
    return float(mi / norm)


def hungarian_mapping(table: Contingency) -> np.ndarray:
    """One-to-one matching of predicted labels to reference classes maximising matched pixels.

    Returns:
        int64 ``(n_pred,)``: index into ``table.ref_labels`` per predicted label, -1 = unmatched
        (only when there are more predicted labels than reference classes).
    """
    mapping = np.full(table.counts.shape[0], -1, np.int64)
    if table.counts.size:
        rows, cols = linear_sum_assignment(table.counts, maximize=True)
        mapping[rows] = cols
    return mapping


def majority_mapping(table: Contingency) -> np.ndarray:
    """Many-to-one matching: each predicted label takes the reference class with most of its pixels
    (ties: the lowest reference label). Returns int64 ``(n_pred,)`` indices into ``table.ref_labels``."""
    if table.counts.size == 0:
        return np.zeros(table.counts.shape[0], np.int64)
    return np.argmax(table.counts, axis=1).astype(np.int64)


def mapped_confusion(table: Contingency, mapping: np.ndarray) -> np.ndarray:
    """Confusion matrix after relabelling the prediction with ``mapping``.

    Returns:
        int64 ``(n_ref + 1, n_ref)``: row j < n_ref = pixels relabelled to reference class j, row n_ref =
        pixels of unmatched predicted labels; column = true reference class.
    """
    n_ref = table.counts.shape[1]
    out = np.zeros((n_ref + 1, n_ref), np.int64)
    for i, j in enumerate(np.asarray(mapping).tolist()):
        out[j if j >= 0 else n_ref] += table.counts[i]
    return out


def mapped_scores(table: Contingency, mapping: np.ndarray) -> Tuple[float, np.ndarray]:
    """``(accuracy, iou)`` after relabelling with ``mapping``: accuracy = correctly relabelled pixels /
    scored pixels; iou float64 ``(n_ref,)``, IoU_j = TP_j / (TP_j + FP_j + FN_j)."""
    m = mapped_confusion(table, mapping)
    n_ref = table.counts.shape[1]
    n = table.pixels
    if n == 0:
        return float("nan"), np.zeros(0)
    tp = np.diag(m[:n_ref]).astype(np.float64)
    pred_j = m[:n_ref].sum(axis=1).astype(np.float64)
    true_j = m.sum(axis=0).astype(np.float64)
    iou = tp / (pred_j + true_j - tp)  # true_j >= 1 for every column of the table
    return float(tp.sum() / n), iou


def precision_recall_kappa(table: Contingency, mapping: np.ndarray):
    """``(precision, recall, f1, kappa)`` after relabelling with ``mapping`` (module docstring): three float64
    ``(n_ref,)`` arrays per reference class (precision 0 for a class nothing was relabelled to) and Cohen's
    kappa (NaN for an empty table; 0 when chance agreement is 1, i.e. one class only)."""
    m = mapped_confusion(table, mapping).astype(np.float64)
    n_ref = table.counts.shape[1]
    n = float(table.pixels)
    if n == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0), float("nan")
    tp = np.diag(m[:n_ref])
    pred_j, true_j = m[:n_ref].sum(axis=1), m.sum(axis=0)
    precision = np.divide(tp, pred_j, out=np.zeros(n_ref), where=pred_j > 0)
    recall = tp / true_j
    s = precision + recall
    f1 = np.divide(2 * precision * recall, s, out=np.zeros(n_ref), where=s > 0)
    po, pe = tp.sum() / n, float(np.sum(pred_j * true_j)) / (n * n)
    kappa = float((po - pe) / (1 - pe)) if pe < 1 else 0.0
    return precision, recall, f1, kappa


def scores(table: Contingency) -> Scores:
    """Every figure of the evaluation from one contingency table.

    Raises:
        ValueError: when no pixel is scored (no labelled reference pixel has a class).
    """
    if table.pixels == 0:
        raise ParameterError("No pixel is both labelled in the reference and classified in the prediction: "
                         "nothing to score. Check that the rasters overlap and the reference nodata value.")
    hung, maj = hungarian_mapping(table), majority_mapping(table)
    acc_h, iou_h = mapped_scores(table, hung)
    acc_m, iou_m = mapped_scores(table, maj)
    precision, recall, f1, kappa = precision_recall_kappa(table, hung)
    return Scores(table=table, ari=adjusted_rand_index(table), nmi=normalized_mutual_info(table),
                  accuracy=acc_h, miou_hungarian=float(iou_h.mean()), accuracy_majority=acc_m,
                  miou_majority=float(iou_m.mean()), pixels=table.pixels, hungarian=hung, majority=maj,
                  iou_hungarian=iou_h, iou_majority=iou_m, kappa=kappa, precision=precision, recall=recall,
                  f1=f1)


#: Sample metrics: samples per class, minimum edge distance (px) and seed of ``sampling.draw_samples``.
SAMPLE_PER_CLASS = 50
SAMPLE_MIN_EDGE_PX = 3
SAMPLE_SEED = 1


#: Downstream figures: trees and seed of the random forest (scikit-learn ``RandomForestClassifier``).
FOREST_TREES = 100
FOREST_SEED = 0


def interior_samples(pred_path: str):
    """The interior samples of the sample and downstream figures: ``sampling.draw_samples`` with
    :data:`SAMPLE_PER_CLASS` per class, edge distance >= :data:`SAMPLE_MIN_EDGE_PX` px, seed :data:`SAMPLE_SEED`
    (a ``sampling.SampleResult``)."""
    from ..sample.sampling import SampleOptions, draw_samples

    return draw_samples(pred_path, SampleOptions(SAMPLE_PER_CLASS, min_edge_distance_px=SAMPLE_MIN_EDGE_PX,
                                                        seed=SAMPLE_SEED))


def _majority_classes(s: Scores) -> Dict[int, int]:
    """Predicted label -> the reference class holding most of its scored pixels."""
    return {int(p): int(s.table.ref_labels[j]) for p, j in zip(s.table.pred_labels, s.majority)}


def sample_scores(pred_path: str, ref_path: str, s: Scores, ref_nodata: Optional[float] = 0,
                  samples=None) -> Scores:
    """Add ``sample_purity``, ``classes_reached`` and ``samples_scored`` (module docstring) to ``s``.

    Args:
        pred_path, ref_path: the class raster and the reference on the same grid (as for ``s``).
        s: the :func:`scores` of the two rasters (its majority matching maps clusters to reference classes).
        ref_nodata: the reference's unlabelled value (also its band nodata value is unlabelled).
        samples: the :func:`interior_samples` of ``pred_path`` (drawn here when None).

    Returns:
        ``s``, updated in place. ``sample_purity`` is NaN when no sample falls on a labelled pixel.
    """
    mapped = _majority_classes(s)
    s.classes_reached = len(set(mapped.values()))
    res = interior_samples(pred_path) if samples is None else samples
    rds = _open(ref_path, "reference")
    try:
        band = rds.GetRasterBand(1)
        unlabelled = [v for v in (ref_nodata, band.GetNoDataValue()) if v is not None]
        hits = n = 0
        for sm in res.samples:
            r = band.ReadAsArray(sm.col, sm.row, 1, 1)[0, 0]
            if any(r == v for v in unlabelled) or not np.isfinite(r):
                continue
            n += 1
            hits += int(mapped.get(int(sm.class_id)) == int(r))
    finally:
        rds = None
    s.samples_scored = n
    s.sample_purity = hits / n if n else float("nan")
    return s


def band_count(path: str) -> int:
    """Number of bands of the raster ``path``; ValueError when GDAL cannot open it."""
    ds = _open(path, "image")
    try:
        return int(ds.RasterCount)
    finally:
        ds = None


def _training_points(image: gdal.Dataset, bands: Sequence[int], samples, mapped: Dict[int, int]):
    """``(X float32 (n, C), y int64 (n,))``: band values at the samples whose cluster has a majority reference
    class and whose image pixel is valid, labelled with that class."""
    from ..io.raster import read_window

    xs, ys = [], []
    for sm in samples.samples:
        label = mapped.get(int(sm.class_id))
        if label is None:
            continue
        data, valid = read_window(image, bands, (sm.col, sm.row, 1, 1))
        if valid[0, 0]:
            xs.append(data[:, 0, 0])
            ys.append(label)
    return np.array(xs, np.float32).reshape(-1, len(bands)), np.array(ys, np.int64)


def downstream_scores(pred_path: str, ref_path: str, image_path: str, s: Scores, bands: Optional[Sequence[int]] = None,
                      ref_nodata: Optional[float] = 0, samples=None,
                      window_pixels: int = WINDOW_PIXELS) -> Scores:
    """Add ``downstream_accuracy``, ``downstream_miou`` and ``downstream_samples`` (module docstring) to ``s``.

    Args:
        pred_path, ref_path: the class raster and the reference (same grid), as for ``s``.
        image_path: the image the classes were made from, on the same grid.
        s: the :func:`scores` of the two rasters.
        bands: 1-based bands of ``image_path`` the forest sees (default: all).
        ref_nodata: the reference's unlabelled value.
        samples: the :func:`interior_samples` of ``pred_path`` (drawn here when None).

    Returns:
        ``s``, updated in place; the figures stay NaN (and ``downstream_samples`` 0) when no sample can be used.

    Raises:
        ValueError: the image cannot be opened, is not on the class raster's grid, or a band is out of range.
    """
    from sklearn.ensemble import RandomForestClassifier

    res = interior_samples(pred_path) if samples is None else samples
    img, pds = _open(image_path, "image"), _open(pred_path, "class raster")
    try:
        check_same_grid(pds, img, "class raster", "image")
        bands = list(bands) if bands else list(range(1, img.RasterCount + 1))
        if not all(1 <= int(b) <= img.RasterCount for b in bands):
            raise ParameterError(f"Image bands {bands} out of range: the image has {img.RasterCount} band(s)")
        x, y = _training_points(img, bands, res, _majority_classes(s))
        if len(y) == 0:
            return s
        forest = RandomForestClassifier(n_estimators=FOREST_TREES, random_state=FOREST_SEED)
        forest.fit(x, y)
        table = _forest_table(forest, img, bands, pred_path, ref_path, ref_nodata, window_pixels)
    finally:
        img = pds = None
    ref_index = {int(v): j for j, v in enumerate(table.ref_labels)}
    mapping = np.array([ref_index.get(int(p), -1) for p in table.pred_labels], np.int64)
    acc, iou = mapped_scores(table, mapping)
    s.downstream_accuracy, s.downstream_miou, s.downstream_samples = acc, float(iou.mean()), int(len(y))
    return s


def _forest_table(forest, img: gdal.Dataset, bands, pred_path: str, ref_path: str, ref_nodata,
                  window_pixels: int) -> Contingency:
    """Contingency table of the forest's classes against the reference over the scored pixels (labelled in the
    reference, classified in the prediction, valid in the image), window by window."""
    from ..io.raster import read_window

    pds, rds = _open(pred_path, "class raster"), _open(ref_path, "reference")
    try:
        acc = ContingencyAccumulator()
        for win, _p, r, scored in _scored_windows(pds, rds, (1, 1), (0, ref_nodata), window_pixels):
            data, valid = read_window(img, bands, win)
            valid &= scored
            if valid.any():
                acc.add(forest.predict(data[:, valid].T), r[valid])
        return acc.table()
    finally:
        pds = rds = None


def evaluate_rasters(pred_path: str, ref_path: str, ref_nodata: Optional[float] = 0,
                     samples: bool = True, image_path: Optional[str] = None,
                     bands: Optional[Sequence[int]] = None) -> Scores:
    """:func:`scores` of :func:`confusion_from_rasters`, with the sample metrics (:func:`sample_scores`)
    unless ``samples`` is False, and the downstream figures (:func:`downstream_scores`) when ``image_path``
    (the image the classes were made from, same grid; ``bands`` of it, default all) is given."""
    s = scores(confusion_from_rasters(pred_path, ref_path, ref_nodata=ref_nodata))
    if not samples and image_path is None:
        return s
    drawn = interior_samples(pred_path)
    if samples:
        sample_scores(pred_path, ref_path, s, ref_nodata, drawn)
    if image_path is not None:
        downstream_scores(pred_path, ref_path, image_path, s, bands, ref_nodata, drawn)
    return s


def format_scores(s: Scores) -> List[str]:
    """Human-readable lines of the headline figures."""
    return [f"pixels scored        {s.pixels}",
            f"ARI                  {s.ari:.4f}",
            f"NMI                  {s.nmi:.4f}",
            f"accuracy (Hungarian) {s.accuracy:.4f}",
            f"mIoU (Hungarian)     {s.miou_hungarian:.4f}",
            f"accuracy (majority)  {s.accuracy_majority:.4f}",
            f"mIoU (majority)      {s.miou_majority:.4f}",
            f"sample purity        {s.sample_purity:.4f} ({s.samples_scored} samples on labelled pixels)",
            f"classes reached      {s.classes_reached} of {len(s.table.ref_labels)}",
            f"Cohen's kappa        {s.kappa:.4f} (Hungarian matching)",
            f"F1 (macro)           {float(np.mean(s.f1)):.4f} (Hungarian matching)"] + (
        [f"downstream accuracy  {s.downstream_accuracy:.4f} (random forest on {s.downstream_samples} samples)",
         f"downstream mIoU      {s.downstream_miou:.4f}"] if s.downstream_samples else [])
