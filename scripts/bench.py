#!/usr/bin/env python3
"""Side-by-side benchmarks: the project's programs against the PyTorch anchors in
../shared/anchors, in one run on one machine, alternating, each run under a time limit.

The project's side reports through `--json` (step_bench, loader_bench, eval score); the
anchors are fixed programs that print one summary line, read by `anchor_figure` (the one
place that knows their wording). Called by scripts/bench-{step,loader,eval,ddp}.sh,
which build the binaries first; usable alone:

  bench.py step [--device cpu] [--batch 128] [--steps 5] [--threads N] [--models paper,owt]
  bench.py loader DATASET [--workers N] [--batches 30]
  bench.py eval DATASET --checkpoint paper=FILE --checkpoint owt=FILE [--threads N] [--images 192] [--batch 16]
  bench.py ddp DATASET [--batch 16] [--steps 8] [--rounds 2] [--device cpu]

Prints a line per comparison and, with --json FILE, writes every figure.
Standard library only; the anchors need the Python of scripts/setup.sh (ALEXNET_PYTHON).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANCHORS = os.environ.get("ANCHORS", os.path.join(os.path.dirname(ROOT), "shared", "anchors"))
PY = os.environ.get("ALEXNET_PYTHON", sys.executable)
BIN = os.environ.get("BENCH_BIN", os.path.join(ROOT, "target", "release"))
LIMIT = int(os.environ.get("BENCH_LIMIT", "900"))  # seconds per program run


def run(cmd):
    """Runs `cmd` under the time limit; its stdout, or an error naming it."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=LIMIT)
    except subprocess.TimeoutExpired:
        sys.exit(f"bench: {' '.join(cmd)}: over the {LIMIT} s limit (BENCH_LIMIT)")
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p.stdout


def ours(cmd):
    """The last line of a project program run with --json, parsed."""
    return json.loads(run(cmd).strip().splitlines()[-1])


# The anchors' summary lines (../shared/anchors, read-only):
#   torch_alexnet_step.py: "... threads=N: 123.4 ms/step, 56.7 images/s"
#   torch_loader.py:       "N images in 1.23 s: 456.7 images/s with W worker(s)"
#   torch_eval_tencrop.py: "N images, ...: top-1 0.1 top-5 0.2; 34.5 images/s (...)"
ANCHOR_FIGURES = {
    "ms_per_step": r"([0-9.]+) ms/step",
    "images_per_s": r"([0-9.]+) images/s",
}


def anchor_figure(text, key):
    found = re.findall(ANCHOR_FIGURES[key], text)
    if not found:
        sys.exit(f"bench: no {key} in the anchor's output: {text[-500:]}")
    return float(found[0])


def anchor(name, *args):
    return run([PY, os.path.join(ANCHORS, name), *map(str, args)])


def step(a):
    out = []
    for model in a.models.split(","):
        for mode in ["fp32", "--amp", "--channels-last"]:
            flags = [] if mode == "fp32" else [mode]
            common = ["--model", model, "--batch", a.batch, "--steps", a.steps, "--warmup", 2,
                      "--threads", a.threads, "--device", a.device, *flags]
            am = anchor_figure(anchor("torch_alexnet_step.py", *common), "ms_per_step")
            r = ours([os.path.join(BIN, "examples", "step_bench"), *map(str, common), "--json"])
            rm = r["ms_per_step"]
            out.append({"model": model, "mode": mode.lstrip("-"), "anchor_ms": am, "rust_ms": rm, "ratio": rm / am})
            print(f"{model} {mode.lstrip('-')}: anchor {am:.1f} ms/step, rust {rm:.1f} ms/step, "
                  f"time ratio {rm / am:.3f}", flush=True)
    return out


def loader(a):
    an = anchor_figure(anchor("torch_loader.py", a.dataset, "--workers", a.workers, "--batches", a.batches),
                       "images_per_s")
    res = {"anchor_images_per_s": an}
    for where in ["workers", "device"]:
        r = ours([os.path.join(BIN, "examples", "loader_bench"), a.dataset, "--workers", str(a.workers),
                  "--batches", str(a.batches), "--float-in", where, "--json"])
        res[f"rust_{where}"] = r
        print(f"loader --float-in {where}: {r['images_per_s']:.0f} images/s "
              f"(loader alone {r.get('loader_only_images_per_s', 0):.0f}); anchor {an:.0f} images/s: "
              f"ratio {r['images_per_s'] / an:.2f}", flush=True)
    return res


def evaluate(a):
    out = []
    for spec in a.checkpoint:
        name, path = spec.split("=", 1)
        at = anchor("torch_eval_tencrop.py", path, a.dataset, "--crops", "ten", "--threads", a.threads,
                    "--batch", a.batch, "--limit", a.images)
        ai = anchor_figure(at, "images_per_s")
        with tempfile.TemporaryDirectory() as t:
            j = os.path.join(t, "score.json")
            run([os.path.join(BIN, "eval"), "score", "--checkpoint", path, "--data", a.dataset, "--crops", "ten",
                 "--threads", str(a.threads), "--workers", "1", "--batch-size", str(a.batch), "--limit",
                 str(a.images), "--quiet", "--json", j])
            r = json.load(open(j))
        out.append({"model": name, "anchor_images_per_s": ai, "rust_images_per_s": r["images_per_s"],
                    "ratio": r["images_per_s"] / ai})
        print(f"{name}: eval {r['images_per_s']:.1f} images/s, anchor {ai:.1f} images/s: "
              f"ratio {r['images_per_s'] / ai:.2f}", flush=True)
    return out


def step_seconds(metrics):
    """Median seconds per step between consecutive train records, from the third on."""
    t = [r for r in map(json.loads, open(metrics)) if r.get("kind") == "train"]
    dt = [b["time"] - a["time"] for a, b in zip(t, t[1:])][1:]
    return statistics.median(dt), len(dt)


def ddp(a):
    out = []
    threads = max(1, os.cpu_count() // 2)
    sets = [f"optim.batch_size={a.batch}", "data.workers=1", "data.prefetch=2", "run.log_every_steps=1",
            "run.checkpoint_minutes=600.0", "dist.timeout_s=120.0"]
    for rnd in range(1, a.rounds + 1):
        for overlap in ["true", "false"]:
            with tempfile.TemporaryDirectory() as t:
                cmd = ["torchrun", "--standalone", "--nproc-per-node", "2", "--no-python",
                       os.path.join(BIN, "train"), "run", "--config", os.path.join(ROOT, "configs", "alexnet-paper.toml"),
                       "--data", a.dataset, "--run-dir", os.path.join(t, "run"), "--device", a.device,
                       "--threads", str(threads), "--max-steps", str(a.steps)]
                for s in sets + [f"dist.overlap={overlap}"]:
                    cmd += ["--set", s]
                run(cmd)
                s, n = step_seconds(os.path.join(t, "run", "metrics.jsonl"))
            out.append({"round": rnd, "overlap": overlap == "true", "seconds_per_step": s})
            print(f"round {rnd} overlap={overlap}: {s:.3f} s/step (median of {n})", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write every figure to this file")
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("step")
    s.add_argument("--device", default="cpu"); s.add_argument("--batch", type=int, default=128)
    s.add_argument("--steps", type=int, default=5); s.add_argument("--threads", type=int, default=os.cpu_count())
    s.add_argument("--models", default="paper,owt")
    s = sub.add_parser("loader")
    s.add_argument("dataset"); s.add_argument("--workers", type=int, default=os.cpu_count())
    s.add_argument("--batches", type=int, default=30)
    s = sub.add_parser("eval")
    s.add_argument("dataset"); s.add_argument("--checkpoint", action="append", required=True, help="NAME=FILE")
    s.add_argument("--threads", type=int, default=os.cpu_count()); s.add_argument("--images", type=int, default=192)
    s.add_argument("--batch", type=int, default=16)
    s = sub.add_parser("ddp")
    s.add_argument("dataset"); s.add_argument("--batch", type=int, default=16)
    s.add_argument("--steps", type=int, default=8); s.add_argument("--rounds", type=int, default=2)
    s.add_argument("--device", default="cpu")
    a = ap.parse_args()
    res = {"step": step, "loader": loader, "eval": evaluate, "ddp": ddp}[a.what](a)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"what": a.what, "results": res}, f, indent=1)


if __name__ == "__main__":
    main()
