#!/usr/bin/env python3
"""Agreement of `eval score` with PyTorch: the project's own reference,
`python -m alexnet_bridge score` (python/alexnet_bridge/score.py: the bridge's shard
reader, crops and modules, no Rust code), and, as an extra independent check where it
exists, ../shared/anchors/torch_eval_tencrop.py (torchvision's TenCrop on pyarrow's
reading of the shards).

Scores the same checkpoint on the same dataset with both programs and checks, for ten
crops and the center crop: top-1 and top-5 within 0.5 points of each other, and the
top-1 class of each image (joined by key) the same on at least 99% of the images. Then
the same for an owt network made in PyTorch and saved with safetensors without metadata
(the import path, as a user exports torchvision's pretrained weights), center crop.
Both sides run with 2 threads. Prints each comparison; exits 1 on any failure.

usage: check_agreement.py EVAL_BIN DATASET CHECKPOINT WORK_DIR [ANCHORS_DIR]
       (without ANCHORS_DIR, or where it has no torch_eval_tencrop.py, the anchors'
       check is skipped, saying so)
"""
import csv, json, os, re, subprocess, sys

import torch
from safetensors.torch import save_file

eval_bin, data, ckpt, work = sys.argv[1:5]
anchors = sys.argv[5] if len(sys.argv) > 5 else None
python_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python")
sys.path.insert(0, python_dir)
from alexnet_bridge import OwtAlexNet  # noqa: E402

# The PyTorch programs: name -> command line before its arguments.
env = dict(os.environ, PYTHONPATH=python_dir + os.pathsep + os.environ.get("PYTHONPATH", ""))
programs = {"bridge": [sys.executable, "-m", "alexnet_bridge", "score"]}
if anchors and os.path.isfile(os.path.join(anchors, "torch_eval_tencrop.py")):
    programs["anchors"] = [sys.executable, os.path.join(anchors, "torch_eval_tencrop.py")]
else:
    print(f"check_agreement: no torch_eval_tencrop.py in {anchors!r}: the anchors' extra check is skipped "
          "(the bridge's reference is checked)")

TOL_POINTS = 0.5      # issue 6: top-1/top-5 within 0.5 points
MIN_SAME_TOP1 = 0.99  # issue 6: the same top-1 class on >= 99% of images


def rust(ckpt, crops, tag):
    preds, js = os.path.join(work, f"{tag}.rust.csv"), os.path.join(work, f"{tag}.rust.json")
    subprocess.run([eval_bin, "score", "--checkpoint", ckpt, "--data", data, "--crops", crops, "--threads", "2",
                    "--batch-size", "16", "--predictions", preds, "--json", js, "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    report = json.load(open(js))
    with open(preds) as f:
        rows = {r["key"]: (int(r["label"]), [int(r[f"class_{i}"]) for i in range(1, 6) if f"class_{i}" in r])
                for r in csv.DictReader(f)}
    return report["top1"], report["top5"], report["images"], rows


def torch_side(ckpt, crops, tag, program):
    preds = os.path.join(work, f"{tag}.{program}.csv")
    out = subprocess.run(programs[program] + [ckpt, data, "--crops", crops, "--threads", "2", "--batch", "16",
                                              "--predictions", preds],
                         check=True, capture_output=True, text=True, env=env).stdout
    m = re.search(r"(\d+) images.*top-1 ([0-9.]+) top-5 ([0-9.]+)", out)
    with open(preds) as f:
        rows = {r["key"]: (int(r["label"]), [int(c) for c in r["top5"].split()]) for r in csv.DictReader(f)}
    return float(m.group(2)), float(m.group(3)), int(m.group(1)), rows


def compare(ckpt, crops, tag):
    r1, r5, rn, rrows = rust(ckpt, crops, tag)
    ok = True
    for program in programs:
        t1, t5, tn, trows = torch_side(ckpt, crops, tag, program)
        same_n = rn == tn == len(rrows) == len(trows) and rrows.keys() == trows.keys()
        same1 = sum(rrows[k][1][0] == trows[k][1][0] for k in rrows if k in trows) / max(1, len(rrows))
        same5 = sum(rrows[k][1] == trows[k][1] for k in rrows if k in trows) / max(1, len(rrows))
        labels = same_n and all(rrows[k][0] == trows[k][0] for k in rrows)
        d1, d5 = 100 * abs(r1 - t1), 100 * abs(r5 - t5)
        good = same_n and labels and d1 <= TOL_POINTS and d5 <= TOL_POINTS and same1 >= MIN_SAME_TOP1
        print(f"{tag} ({crops}, {rn} images): eval top-1 {100 * r1:.2f}% top-5 {100 * r5:.2f}%, "
              f"PyTorch ({program}) top-1 {100 * t1:.2f}% top-5 {100 * t5:.2f}% (|diff| {d1:.2f} / {d5:.2f} points); "
              f"same top-1 class {100 * same1:.1f}%, same top-5 list {100 * same5:.1f}% {'ok' if good else 'FAIL'}")
        ok &= good
    return ok


torch.set_num_threads(2)
ok = compare(ckpt, "ten", "trained-paper-ten")
ok &= compare(ckpt, "center", "trained-paper-center")

# The import path: an owt network made in PyTorch, saved the way the README says
# (safetensors, no metadata). Seeded default initialisation, the dataset's class count.
classes = len(json.load(open(os.path.join(data, "dataset.json")))["classes"])
torch.manual_seed(0)
owt = OwtAlexNet(classes)
owt_path = os.path.join(work, "owt-import.safetensors")
save_file({k: v.contiguous() for k, v in owt.state_dict().items()}, owt_path)
ok &= compare(owt_path, "center", "imported-owt-center")
sys.exit(0 if ok else 1)
