"""Command line without QGIS: ``python -m ktextures_plugin {segment,fit,evaluate,kmeans,inspect,novelty,install} ...``.

Each sub-command lives in ``ktextures_plugin/cli/<name>.py`` and exposes ``main(argv) -> int``; it is
imported only when called, so ``segment`` never imports torch. A command runs as one all-or-nothing run
(``cli/_args.front_end``, ``core.io.atomic.all_or_nothing``): when it fails, every output it had written is removed.
"""
import importlib
import sys

COMMANDS = {
    "segment": "run a k-textures ONNX model over a raster (the main job, without QGIS)",
    "fit": "fit a k-textures model on a raster and export it to ONNX (needs torch)",
    "evaluate": "score a class raster against a reference raster (ARI, NMI, accuracy, mIoU)",
    "kmeans": "per-pixel k-means baseline in the same output format as segment",
    "inspect": "print a model's k-textures metadata",
    "novelty": "rank the tiles the k textures cannot explain (DEMUD), with a visual explanation",
    "install": "install onnxruntime or torch into the plugin's folder of a QGIS profile (QGIS's Python)",
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: ktextures COMMAND [ARGS]  (or python -m ktextures_plugin; COMMAND --help for its options)\n")
        for name, text in COMMANDS.items():
            print(f"  {name:<9} {text}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(f"{__package__ or 'ktextures_plugin'}.cli.{argv[0]}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
