"""`python -m alexnet_bridge convert|export|score ...` (PYTHONPATH=python)."""
import argparse
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["score"]:
        from .score import main as score_main
        return score_main(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m alexnet_bridge")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="a PyTorch .pth of AlexNet weights -> safetensors (for train run --init)")
    c.add_argument("src")
    c.add_argument("dst")
    e = sub.add_parser("export", help="a checkpoint -> ONNX and/or a torch.export program")
    e.add_argument("ckpt")
    e.add_argument("--onnx", help="write an ONNX model here")
    e.add_argument("--torch-export", help="write a torch.export program (.pt2) here")
    e.add_argument("--opset", type=int, default=18)
    sub.add_parser("score", help="score a checkpoint on a built split (see score --help)")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "convert":
            from .export import convert
            kind, n = convert(a.src, a.dst)
            print(f"convert: {a.src} -> {a.dst} ({kind}, {n} classes)")
        else:
            if not (a.onnx or a.torch_export):
                ap.error("export: give --onnx FILE and/or --torch-export FILE")
            from . import export
            if a.torch_export:
                export.to_torch_export(a.ckpt, a.torch_export)
                print(f"export: {a.torch_export} (torch.export program)")
            if a.onnx:
                export.to_onnx(a.ckpt, a.onnx, a.opset)
                print(f"export: {a.onnx} (ONNX)")
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
