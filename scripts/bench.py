#!/usr/bin/env python3
"""Side-by-side benchmarks: the project's programs against the PyTorch anchors in
../shared/anchors, in one run on one machine, alternating, each run under a time limit.

The project's side reports through `--json` (step_bench, loader_bench, eval score); the
anchors are fixed programs that print one summary line, read by `anchor_figure` (the one
place that knows their wording). Called by scripts/bench-{step,loader,eval,ddp}.sh,
which build the binaries first; usable alone:

  bench.py step [--device cpu] [--batch 128] [--steps 5] [--threads N] [--models paper,owt]
  bench.py loader DATASET [--workers N] [--batches 30]
  bench.py whole-loader FOLDER WHOLE_DATASET [--workers N] [--batches 20]
  bench.py eval DATASET --checkpoint paper=FILE --checkpoint owt=FILE [--threads N] [--images 192] [--batch 16]
  bench.py ddp DATASET [--batch 16] [--steps 8] [--rounds 2] [--device cpu]

Prints a line per comparison and, with --json FILE, writes every figure.
Standard library only; the anchors need the Python of scripts/setup.sh (ALEXNET_PYTHON).
"""
import argparse
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANCHORS = os.environ.get("ANCHORS", os.path.join(os.path.dirname(ROOT), "shared", "anchors"))
PY = os.environ.get("ALEXNET_PYTHON", sys.executable)
BIN = os.environ.get("BENCH_BIN", os.path.join(ROOT, "target", "release"))
LIMIT = int(os.environ.get("BENCH_LIMIT", "900"))  # seconds per program run


class BenchError(Exception):
    """A program that failed or ran over its limit: `main` exits with it; `gpu` reports it
    and goes on with the next part."""


LOG = None  # with `gpu`: every command and its output, appended here


def say(line):
    """A result line: printed, and with `gpu` also appended to its summary.txt."""
    print(line, flush=True)
    if SUMMARY is not None:
        with open(SUMMARY, "a") as f:
            f.write(line + "\n")


SUMMARY = None


def run(cmd, limit=None, env=None, ok=(0,)):
    """Runs `cmd` under the time limit; its stdout, or a BenchError naming it. `ok`: the
    exit codes that are not failures (`train run` exits 3 when stopped by --max-steps)."""
    cmd = [str(c) for c in cmd]
    limit = limit or LIMIT
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=limit,
                           env=None if env is None else {**os.environ, **env})
    except subprocess.TimeoutExpired as e:
        log(cmd, e.stdout, e.stderr, "over the limit")
        raise BenchError(f"{' '.join(cmd)}: over the {limit} s limit (BENCH_LIMIT)")
    log(cmd, p.stdout, p.stderr, p.returncode)
    if p.returncode not in ok:
        raise BenchError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p.stdout


def log(cmd, out, err, status):
    if LOG is None:
        return
    def text(x):
        return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
    with open(LOG, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n{text(out)}{text(err)}(exit {status})\n")


def ours(cmd):
    """The last line of a project program run with --json, parsed."""
    return json.loads(run(cmd).strip().splitlines()[-1])


# The anchors' summary lines (../shared/anchors, read-only):
#   torch_alexnet_step.py: "... threads=N: 123.4 ms/step, 56.7 images/s"
#   torch_loader.py:       "N images in 1.23 s: 456.7 images/s with W worker(s)"
#   torchvision_folder_loader.py: "N images in C classes, W workers, batch B: ... = 456.7 images/s"
#   torch_eval_tencrop.py: "N images, ...: top-1 0.1 top-5 0.2; 34.5 images/s (...)"
ANCHOR_FIGURES = {
    "ms_per_step": r"([0-9.]+) ms/step",
    "images_per_s": r"([0-9.]+) images/s",
}


def anchor_figure(text, key):
    found = re.findall(ANCHOR_FIGURES[key], text)
    if not found:
        raise BenchError(f"no {key} in the anchor's output: {text[-500:]}")
    return float(found[0])


def anchor(name, *args):
    return run([PY, os.path.join(ANCHORS, name), *map(str, args)])


STEP_MODES = ["fp32", "amp", "channels-last"]


def step(a):
    return [step_one(a, model, mode) for model in a.models.split(",") for mode in STEP_MODES]


def step_one(a, model, mode):
    """One model in one mode (a STEP_MODES name): the anchor's step, then ours."""
    common = ["--model", model, "--batch", a.batch, "--steps", a.steps, "--warmup", a.warmup,
              "--threads", a.threads, "--device", a.device, *([] if mode == "fp32" else ["--" + mode])]
    am = anchor_figure(anchor("torch_alexnet_step.py", *common), "ms_per_step")
    rm = ours([os.path.join(BIN, "examples", "step_bench"), *common, "--json"])["ms_per_step"]
    say(f"step {model} {mode} batch {a.batch}: anchor {am:.1f} ms/step, rust {rm:.1f} ms/step "
        f"({a.batch * 1000 / rm:.0f} images/s): time ratio {rm / am:.3f}")
    return {"model": model, "mode": mode, "anchor_ms": am, "rust_ms": rm, "ratio": rm / am}


def plain_encoding(dataset):
    """The anchors read raw or JPEG shards, not mixed ones (format 4): those are compared
    with scripts/bench-mixed.sh, the anchor on the plain JPEG build of the same images."""
    with open(os.path.join(dataset, "dataset.json")) as f:
        if json.load(f).get("encoding") == "mixed":
            raise BenchError(f"{dataset}: a mixed dataset: the anchors read raw or JPEG shards only; "
                             "use scripts/bench-mixed.sh (the anchor on the plain JPEG build)")


def loader(a):
    plain_encoding(a.dataset)
    an = anchor_figure(anchor("torch_loader.py", a.dataset, "--workers", a.workers, "--batches", a.batches),
                       "images_per_s")
    res = {"anchor_images_per_s": an}
    for where in ["workers", "device"]:
        r = ours([os.path.join(BIN, "examples", "loader_bench"), a.dataset, "--workers", str(a.workers),
                  "--batches", str(a.batches), "--float-in", where, "--json"])
        res[f"rust_{where}"] = r
        say(f"loader {a.workers} worker(s) --float-in {where}: {r['images_per_s']:.0f} images/s "
            f"(loader alone {r.get('loader_only_images_per_s', 0):.0f}); torch_loader.py {an:.0f} images/s: "
            f"ratio {r['images_per_s'] / an:.2f}")
    return res


def whole_loader(a):
    """torchvision's ImageFolder + RandomResizedCrop(224) pipeline on the source JPEGs
    against the loader on a whole-image dataset built from them, same workers, batch
    128, alternating (`--rounds`), median of each."""
    folder = os.path.join(a.folder, "train")
    an, rs = [], []
    for _ in range(a.rounds):
        an.append(anchor_figure(anchor("torchvision_folder_loader.py", folder, "--workers", a.workers, "--batches",
                                       a.batches, "--skip-bad"), "images_per_s"))
        rs.append(ours([os.path.join(BIN, "examples", "loader_bench"), a.dataset, "--workers", str(a.workers),
                        "--batches", str(a.batches), "--crop", "224", "--json"]))
    am = statistics.median(an)
    r = sorted(rs, key=lambda x: x["images_per_s"])[len(rs) // 2]
    say(f"whole-image loader {a.workers} worker(s), RandomResizedCrop(224), {r['layout']} ({r['encoding']}): "
        f"{r['images_per_s']:.0f} images/s (loader alone {r['loader_only_images_per_s']:.0f}); "
        f"torchvision_folder_loader.py {am:.0f} images/s: ratio {r['images_per_s'] / am:.2f} "
        f"(per core: {r['images_per_s'] / a.workers:.0f} vs {am / a.workers:.0f} images/s; "
        f"cores for 25,000 images/s: {25000 / (r['images_per_s'] / a.workers):.0f} vs {25000 / (am / a.workers):.0f})")
    return {"anchor_images_per_s": an, "rust": rs, "ratio": r["images_per_s"] / am}


def evaluate(a):
    plain_encoding(a.dataset)
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
        say(f"{name}: eval {r['images_per_s']:.1f} images/s, anchor {ai:.1f} images/s: "
            f"ratio {r['images_per_s'] / ai:.2f}")
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
            say(f"round {rnd} overlap={overlap}: {s:.3f} s/step (median of {n})")
    return out

def train_rate(metrics, batch, from_step=20):
    """Images/s between the train record at `from_step` (or the first) and the last."""
    t = [r for r in map(json.loads, open(metrics)) if r.get("kind") == "train"]
    late = [r for r in t if r["step"] >= from_step]
    t = late if len(late) >= 2 else t
    if len(t) < 2:
        raise BenchError(f"{metrics}: fewer than two train records")
    a, b = t[0], t[-1]
    return (b["step"] - a["step"]) * batch / max(b["time"] - a["time"], 1e-9)


def gpu(a):
    """Every GPU figure the project reports, in one run (scripts/gpu-bench.sh): each part
    under a.part_limit seconds; a part that fails is reported and the others still run."""
    global LOG, SUMMARY, LIMIT
    LIMIT = a.part_limit
    os.makedirs(a.out, exist_ok=True)
    SUMMARY, LOG = os.path.join(a.out, "summary.txt"), os.path.join(a.out, "log.txt")
    open(SUMMARY, "w").close(); open(LOG, "w").close()
    cores = os.cpu_count()
    workers = a.workers or (cores - 2 if cores > 4 else 2)
    b = lambda name: os.path.join(BIN, name)
    res = {}

    def part(name, fn):
        try:
            res[name] = fn()
        except (BenchError, OSError, KeyError, ValueError) as e:
            say(f"{name} FAILED: {str(e).strip().splitlines()[-1] if str(e).strip() else e!r} (see log.txt)")

    lim = a.part_limit
    torch_version = run([PY, "-c", "import torch; print(torch.__version__)"], lim).strip()
    say(f"== gpu-bench {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: device {a.device}, "
        f"{cores} cores, torch {torch_version}")
    if shutil.which("nvidia-smi"):
        part("gpu", lambda: say(run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                     "--format=csv,noheader"], 60).strip().splitlines()[0]))
    if a.device != "cpu":
        part("check-device", lambda: say("check-device: " + run([b("train"), "check-device", "--device", a.device],
                                                                 60).strip().splitlines()[-1]))
    with tempfile.TemporaryDirectory() as w:
        ds = os.path.join(w, "ds")

        def build():
            raw = os.path.join(w, "raw")
            run([b("preprocess"), "synth", "--output", raw, "--classes", a.classes, "--train-per-class",
                 a.per_class, "--val-per-class", a.val_per_class, "--corrupt", 0], lim)
            t0 = time.monotonic()
            run([b("preprocess"), "build", "--input", raw, "--output", ds, "--threads", cores, "--quiet"], lim)
            dt = time.monotonic() - t0
            n = a.classes * (a.per_class + a.val_per_class)
            say(f"build: {n} images (synthetic JPEG, {a.classes} classes) -> raw 256x256 shards in {dt:.1f} s "
                f"with {cores} threads: {n / dt:.0f} images/s")
            return {"images": n, "seconds": dt, "images_per_s": n / dt}
        part("build", build)
        have_ds = os.path.exists(os.path.join(ds, "dataset.json"))
        if not have_ds:
            say("no dataset: the parts that need it are skipped")

        # The training step, Rust against PyTorch eager, synthetic input.
        step_args = argparse.Namespace(models="paper,owt", batch=a.batch, steps=a.steps, warmup=a.warmup,
                                       threads=cores, device=a.device)
        for model in ["paper", "owt"]:
            for mode in STEP_MODES:
                part(f"step {model} {mode}", lambda model=model, mode=mode: step_one(step_args, model, mode))
        rates = {k[len("step "):]: a.batch * 1000 / r["rust_ms"] for k, r in res.items() if k.startswith("step ")}

        # `train run` on the shards: the paper preset at a.batch per step, lr 0.001 so a small
        # dry-run batch does not diverge (the rate does not change the step's cost).
        def train(run_dir, precision, overlap, torchrun=False):
            sets = [f"optim.batch_size={a.batch}", f"data.workers={workers}", "optim.lr=0.001",
                    "run.log_every_steps=10", "run.checkpoint_minutes=600.0", "run.channels_last=false",
                    f"run.precision={precision}", "dist.timeout_s=120.0", f"dist.overlap={overlap}"]
            cmd = [b("train"), "run", "--config", os.path.join(ROOT, "configs", "alexnet-paper.toml"),
                   "--data", ds, "--run-dir", run_dir, "--device", a.device, "--max-steps", a.e2e_steps]
            if torchrun:
                cmd = ["torchrun", "--standalone", "--nproc-per-node", 1, "--no-python", *cmd, "--threads", cores]
            for kv in sets:
                cmd += ["--set", kv]
            # Stopped by --max-steps: 3 on its own, 0 as a worker of torchrun's agent.
            run(cmd, lim, ok=(0, 3))
            return train_rate(os.path.join(run_dir, "metrics.jsonl"), a.batch)

        if have_ds:
            for p, mode in [("fp32", "fp32"), ("bf16", "amp")]:
                def e2e(p=p, mode=mode):
                    e = train(os.path.join(w, f"run-{p}"), p, "true")
                    s = rates.get(f"paper {mode}")
                    say(f"end to end paper {p} batch {a.batch}, {workers} loader workers: {e:.1f} images/s; "
                        f"synthetic-input step {s or 0:.1f} images/s: " + (f"{e / s:.3f} of it" if s else "?"))
                    return {"images_per_s": e, "step_images_per_s": s}
                part(f"end-to-end {p}", e2e)

        # Data parallel at one rank: NCCL (CUDA) or Gloo (CPU).
        def check_dist():
            out = run(["torchrun", "--standalone", "--nproc-per-node", 1, "--no-python", b("train"), "check-dist",
                       "--device", a.device, "--bench-mb", 233, "--bench-iters", 10], lim)
            line = [l for l in out.splitlines() if "all-reduce of" in l][-1]
            say(f"check-dist 1 rank: values right; {line[line.index('all-reduce of'):]}")
            return line
        part("check-dist", check_dist)
        plain = res.get("end-to-end fp32", {}).get("images_per_s")
        if plain:
            for ov in ["true", "false"]:
                def ddp1(ov=ov):
                    d = train(os.path.join(w, f"ddp-{ov}"), "fp32", ov, torchrun=True)
                    say(f"training under torchrun, 1 rank, overlap={ov}: {d:.1f} images/s vs plain {plain:.1f}: "
                        f"{d / plain:.3f}")
                    return {"images_per_s": d, "plain_images_per_s": plain}
                part(f"torchrun overlap={ov}", ddp1)

        # Ten-crop scoring of the end-to-end checkpoint.
        ckpts = sorted(glob.glob(os.path.join(w, "run-fp32", "checkpoints", "*.safetensors")))
        ckpts = [c for c in ckpts if "optim" not in os.path.basename(c)]
        if ckpts:
            ck = ckpts[-1]
            def anchor_eval():
                return anchor_figure(run([PY, os.path.join(ANCHORS, "torch_eval_tencrop.py"), ck, ds, "--crops",
                                          "ten", "--batch", 128, "--limit", a.eval_images, "--device", a.device],
                                         lim), "images_per_s")
            part("eval anchor", anchor_eval)
            for bf in ([] if a.device == "cpu" else ["--bf16"]) + [""]:
                def score(bf=bf):
                    j = os.path.join(w, "score.json")
                    run([b("eval"), "score", "--checkpoint", ck, "--data", ds, "--crops", "ten", "--batch-size", 128,
                         "--limit", a.eval_images, "--device", a.device, "--workers", workers, "--quiet", "--json", j,
                         *([bf] if bf else [])], lim)
                    r = json.load(open(j))["images_per_s"]
                    an = res.get("eval anchor")
                    say(f"eval ten-crop {bf.lstrip('-') or 'fp32'} {a.eval_images} images: eval {r:.1f} images/s, "
                        f"anchor (fp32) {an or 0:.1f} images/s: " + (f"{r / an:.2f}x" if an else "?"))
                    return {"images_per_s": r, "anchor_images_per_s": an}
                part(f"eval {bf.lstrip('-') or 'fp32'}", score)

        # The loader alone (the CPU side of the machine).
        if have_ds:
            part("loader", lambda: loader(argparse.Namespace(dataset=ds, workers=workers, batches=a.loader_batches)))
        # The JPEG path (issue 16): the same sources built as JPEG shards, 4:4:4 and 4:2:0.
        src = os.path.join(w, "raw")
        if have_ds and os.path.isdir(src):
            for chroma in ["444", "420"]:
                def jpeg_loader(chroma=chroma):
                    out = os.path.join(w, f"jpeg{chroma}")
                    run([b("preprocess"), "build", "--input", src, "--output", out, "--encoding", "jpeg",
                         "--quality", 90, "--chroma", chroma, "--threads", cores, "--quiet"], lim)
                    say(f"JPEG shards, quality 90, chroma {chroma}:")
                    return loader(argparse.Namespace(dataset=out, workers=workers, batches=a.loader_batches))
                part(f"loader jpeg {chroma}", jpeg_loader)
    say(f"== done {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write every figure to this file")
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("step")
    s.add_argument("--device", default="cpu"); s.add_argument("--batch", type=int, default=128)
    s.add_argument("--steps", type=int, default=5); s.add_argument("--threads", type=int, default=os.cpu_count())
    s.add_argument("--models", default="paper,owt"); s.add_argument("--warmup", type=int, default=2)
    s = sub.add_parser("loader")
    s.add_argument("dataset"); s.add_argument("--workers", type=int, default=os.cpu_count())
    s.add_argument("--batches", type=int, default=30)
    s = sub.add_parser("whole-loader")
    s.add_argument("folder", help="the source images: FOLDER/train/<wnid>/*.JPEG")
    s.add_argument("dataset", help="a whole-image dataset built from FOLDER (preprocess build --keep whole)")
    s.add_argument("--workers", type=int, default=os.cpu_count()); s.add_argument("--batches", type=int, default=20)
    s.add_argument("--rounds", type=int, default=2)
    s = sub.add_parser("eval")
    s.add_argument("dataset"); s.add_argument("--checkpoint", action="append", required=True, help="NAME=FILE")
    s.add_argument("--threads", type=int, default=os.cpu_count()); s.add_argument("--images", type=int, default=192)
    s.add_argument("--batch", type=int, default=16)
    s = sub.add_parser("ddp")
    s.add_argument("dataset"); s.add_argument("--batch", type=int, default=16)
    s.add_argument("--steps", type=int, default=8); s.add_argument("--rounds", type=int, default=2)
    s.add_argument("--device", default="cpu")
    s = sub.add_parser("gpu", help="every GPU figure in one run (scripts/gpu-bench.sh)")
    s.add_argument("--out", default="gpu-results"); s.add_argument("--device", default="cuda")
    s.add_argument("--classes", type=int, default=20); s.add_argument("--per-class", type=int, default=600)
    s.add_argument("--val-per-class", type=int, default=250); s.add_argument("--batch", type=int, default=128)
    s.add_argument("--steps", type=int, default=30); s.add_argument("--warmup", type=int, default=5)
    s.add_argument("--e2e-steps", type=int, default=80); s.add_argument("--eval-images", type=int, default=5000)
    s.add_argument("--loader-batches", type=int, default=40); s.add_argument("--part-limit", type=int, default=240)
    s.add_argument("--workers", type=int, help="loader workers (default: cores - 2, at least 2)")
    a = ap.parse_args()
    try:
        res = {"step": step, "loader": loader, "whole-loader": whole_loader, "eval": evaluate, "ddp": ddp, "gpu": gpu}[a.what](a)
    except BenchError as e:
        sys.exit(f"bench: {e}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"what": a.what, "results": res}, f, indent=1)


if __name__ == "__main__":
    main()
