"""``python -m ktextures_plugin inspect MODEL.onnx``: print a model's k-textures metadata as JSON."""
import json

from ._args import Parser, front_end

PROG = "python -m ktextures_plugin inspect"


@front_end(PROG, {"model": "MODEL"})
def main(argv=None) -> int:
    p = Parser(prog=PROG)
    p.add_argument("model")
    args = p.parse_args(argv)
    from ..core.segment.inference import read_model_info
    info = read_model_info(args.model)
    out = {k: v for k, v in vars(info).items() if k != "raw"}
    print(json.dumps(out, indent=2))
    return 0
