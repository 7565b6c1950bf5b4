"""The defaults of ``fit``, in one torch-free module (the QGIS glue and the CLI read them without importing
torch). Each was chosen by measurement; docs/benchmarks.md ("Quality", "How the defaults were chosen") has
the figures and the commands.
"""

#: Mask networks (docs/method.md): the paper's per-pixel scalar network, a 3x3 conv network, and the
#: context network (bands + Gaussian context, k logits, warm-started at the context k-means partition).
VARIANTS = ("faithful", "spatial", "context")
#: context: measured against faithful and against the k-means peers in docs/benchmarks.md ("Quality").
DEFAULT_VARIANT = "context"
DEFAULT_STEPS = 500
DEFAULT_BATCH = 8
DEFAULT_BINNING = "faithful"
#: Hidden width of the faithful per-pixel mask network (the paper's is 64).
DEFAULT_MASK_WIDTH = 16
#: Refits with the next seed when a class stays unused (0 = off).
DEFAULT_RETRIES = 0
#: Weight of the spatial-continuity term on the class probabilities (context and spatial variants);
#: measured against 0 and 2 in docs/benchmarks.md.
DEFAULT_CONTINUITY = 5.0
