"""Writes the scipy-made meta.mat fixtures of tests/meta_mat.rs (run once; the .mat
files are committed, so the tests need no scipy):

    python preprocess/tests/data/make_meta_fixtures.py preprocess/tests/data

Made with scipy 1.17.1, numpy as installed with it. The struct array has the fields of
the devkit's ILSVRC2012_devkit_t12/data/meta.mat `synsets`; the leaves' IDs (1..3) are
not in sorted-wnid order, two internal nodes follow with IDs 4 and 5, and one entry's
words are not ASCII.
"""
import sys

import numpy as np
import scipy.io

out = sys.argv[1]
fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height", "num_train_images"]
rows = [
    (1, "n03000003", "third, drei", "a leaf", 0, np.zeros((1, 0)), 0, 1300),
    (2, "n01000001", "first, eins", "a leaf", 0, np.zeros((1, 0)), 0, 732),
    (3, "n02000002", "café, Ångström", "a leaf with a non-ASCII name", 0, np.zeros((1, 0)), 0, 1300),
    (4, "n09000009", "inner", "an internal node", 2, np.array([[1.0, 2.0]]), 1, 2032),
    (5, "n09900099", "root", "the root", 2, np.array([[4.0, 3.0]]), 2, 3332),
]
dtype = [(f, object) for f in fields]


def table(shape):
    a = np.empty(len(rows), dtype=dtype)
    for i, r in enumerate(rows):
        for f, v in zip(fields, r):
            a[i][f] = float(v) if isinstance(v, int) else v
    return a.reshape(shape)


# 1xN, uncompressed; Nx1 (as the devkit's), compressed.
scipy.io.savemat(f"{out}/meta_scipy.mat", {"synsets": table((len(rows),))}, do_compression=False)
scipy.io.savemat(f"{out}/meta_scipy_compressed.mat", {"synsets": table((len(rows), 1))}, do_compression=True)
