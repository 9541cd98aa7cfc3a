"""Reads a run folder's TensorBoard event files back with the `tensorboard` package and
checks them against its metrics.jsonl: every scalar tag the trainer writes, the same
steps and values (as float32), and no step written twice across the files of several
starts (a resumed run).

    python check_tensorboard.py RUN_DIR [--starts N]

--starts: how many event files (one per start of the run) the folder must hold.
"""

import argparse
import collections
import glob
import json
import math
import os
import sys

from tensorboard.backend.event_processing import event_accumulator, event_file_loader

TAGS = {
    "train": {"loss": "train/loss", "lr": "train/lr", "images_per_s": "train/images_per_s",
              "data_wait_s": "train/data_wait_s"},
    "val": {"top1": "val/top1", "top5": "val/top5", "loss": "val/loss", "epoch_seconds": "val/epoch_seconds"},
    "holdout": {"top1": "holdout/top1", "top5": "holdout/top5", "loss": "holdout/loss"},
}


def fail(msg):
    print(f"check_tensorboard: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--starts", type=int, default=None)
    a = ap.parse_args()
    files = sorted(glob.glob(os.path.join(a.run_dir, "events.out.tfevents.*")))
    if not files:
        fail(f"no event files in {a.run_dir}")
    if a.starts is not None and len(files) != a.starts:
        fail(f"{len(files)} event files, expected {a.starts} (one per start)")

    # Raw events, file by file (the loader checks every record's CRCs).
    seen = collections.Counter()
    for f in files:
        events = list(event_file_loader.EventFileLoader(f).Load())
        if not events or events[0].file_version != "brain.Event:2":
            fail(f"{f}: does not begin with the version event")
        for e in events:
            if e.HasField("summary"):
                for v in e.summary.value:
                    seen[(v.tag, e.step)] += 1
    twice = [k for k, n in seen.items() if n > 1]
    if twice:
        fail(f"steps written more than once: {sorted(twice)[:5]}")

    # As TensorBoard shows them: every tag against metrics.jsonl.
    acc = event_accumulator.EventAccumulator(a.run_dir, size_guidance={event_accumulator.SCALARS: 0},
                                             purge_orphaned_data=False)
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    records = [json.loads(l) for l in open(os.path.join(a.run_dir, "metrics.jsonl")) if l.strip()]
    checked = 0
    for kind, fields in TAGS.items():
        rows = [r for r in records if r["kind"] == kind]
        for field, tag in fields.items():
            if not rows:
                if tag in tags:
                    fail(f"{tag} present but metrics.jsonl has no {kind} record")
                continue
            if tag not in tags:
                fail(f"no scalar {tag} (tags: {sorted(tags)})")
            got = [(s.step, s.value) for s in acc.Scalars(tag)]
            want = [(r["step"], r[field]) for r in rows]
            if [s for s, _ in got] != [s for s, _ in want]:
                fail(f"{tag}: steps {[s for s, _ in got]}, metrics.jsonl has {[s for s, _ in want]}")
            for (step, g), (_, w) in zip(got, want):
                if not math.isclose(g, w, rel_tol=1e-6, abs_tol=1e-6):
                    fail(f"{tag} at step {step}: {g}, metrics.jsonl has {w}")
            checked += len(got)
    print(f"check_tensorboard: {len(files)} event file(s), {len(tags)} tags, {checked} scalars equal to "
          f"metrics.jsonl, no step twice")


if __name__ == "__main__":
    main()
