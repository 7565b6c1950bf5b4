"""``python -m ktextures_plugin inspect MODEL.onnx``: print a model's k-textures metadata as JSON."""
import argparse
import json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ktextures_plugin inspect")
    p.add_argument("model")
    args = p.parse_args(argv)
    from ..core.errors import ModelError
    from ..core.inference import read_model_info
    try:
        info = read_model_info(args.model)
    except (ModelError, ImportError) as exc:
        print(f"error: {exc}")
        return 2
    out = {k: v for k, v in vars(info).items() if k != "raw"}
    print(json.dumps(out, indent=2))
    return 0
