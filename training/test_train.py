"""Tests of train.py: python -m unittest discover -s training (scripts/test.sh runs them)."""

import csv
import os
import sys
import tempfile
import unittest
from unittest import mock

import lightgbm as lgb
import numpy as np
from onnxmltools import convert_lightgbm
from onnxmltools.convert.common.data_types import FloatTensorType
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(__file__))
import train  # noqa: E402


def near_boundaries(rng, n):
    """float32 features whose values are a few float32 steps from a few points, so that split
    thresholds fall between neighbouring float32 numbers, where rounding a threshold to float32
    would move a value across."""
    x = rng.choice(np.array([306.92, 0.1, 1e-3, 12345.678], dtype=np.float32), size=(n, 4))
    k = rng.integers(-3, 4, size=(n, 4))
    while (k != 0).any():
        up, down = k > 0, k < 0
        x[up] = np.nextafter(x[up], np.float32(np.inf))
        x[down] = np.nextafter(x[down], np.float32(-np.inf))
        k -= np.sign(k)
    return x


class Float32Thresholds(unittest.TestCase):
    def test_scores_equal_in_lightgbm_and_onnx(self):
        rng = np.random.default_rng(1)
        X = near_boundaries(rng, 4000).astype(np.float32)
        y = (X[:, 0] > np.float32(306.92)).astype(int) ^ (rng.random(4000) < 0.05)
        model = lgb.LGBMClassifier(n_estimators=30, num_leaves=15, min_child_samples=5, verbose=-1, random_state=1)
        model.fit(X, y)
        before = model.predict_proba(X)[:, 1]
        model._Booster = train.float32_thresholds(model.booster_)
        after = model.predict_proba(X)[:, 1]
        self.assertTrue(np.array_equal(before, after), "float32 thresholds changed LightGBM's scores on float32 inputs")
        for line in model.booster_.model_to_string().split("\n"):
            if line.startswith("threshold="):
                t = np.array([float(v) for v in line[len("threshold="):].split()])
                self.assertTrue(np.array_equal(t, t.astype(np.float32).astype(np.float64)), line)
        onx = convert_lightgbm(model, initial_types=[("input", FloatTensorType([None, 4]))], zipmap=False, target_opset=15)
        p = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"]).run(["probabilities"], {"input": X})[0][:, 1]
        self.assertLess(float(np.max(np.abs(p - after))), 1e-5)


class CardPrecision(unittest.TestCase):
    def test_the_handbooks_definition(self):
        day = 86400
        rows = [  # time, card, fraud, score
            (0, "A", 1, 0.9), (10, "B", 0, 0.8), (20, "C", 1, 0.7),  # top 2: A (fraud), B: 1/2
            (day, "A", 1, 0.95),  # A was found on day 0: not ranked again
            (day + 1, "C", 1, 0.6), (day + 2, "D", 1, 0.5), (day + 3, "B", 0, 0.4),  # top 2: C, D: 2/2
        ]
        t, c, y, s = (np.array(v) for v in zip(*rows))
        self.assertAlmostEqual(train.card_precision_top(t, c, y, s, k=2), 0.75)
        # Fewer cards than k still count over k; ties go by card id.
        t, c, y, s = np.array([0, 1]), np.array(["F", "E"]), np.array([1, 0]), np.array([0.5, 0.5])
        self.assertAlmostEqual(train.card_precision_top(t, c, y, s, k=1), 0.0)
        self.assertAlmostEqual(train.card_precision_top(t, c, y, s, k=4), 0.25)


def features_csv(path, rng):
    """A replay CSV of four weeks, fraud in every week."""
    names = ["a", "b", "c"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(train.FIXED + names)
        for i in range(6000):
            t = 1_700_000_000 + i * 400
            x = rng.random(3).astype(np.float32)
            fraud = int(x[0] > 0.9)
            w.writerow([f"p{i}", t, f"c{i % 300}", fraud, "", 0, 0, "", ""] + [repr(float(v)) for v in x])


class WritesOnlyChecked(unittest.TestCase):
    def test_a_model_that_fails_its_check_is_not_written(self):
        d = tempfile.mkdtemp()
        features, out, report = os.path.join(d, "f.csv"), os.path.join(d, "m.onnx"), os.path.join(d, "r.md")
        features_csv(features, np.random.default_rng(2))
        argv = ["train.py", "--features", features, "--out", out, "--report", report, "--test-weeks", "1", "--gap-days", "1"]
        real = ort.InferenceSession

        class Off:  # ONNX Runtime scoring a little off, as a float32 rounding would make it
            def __init__(self, *a, **k):
                self.s = real(*a, **k)

            def run(self, names, feeds):
                out = self.s.run(names, feeds)
                out[0][:, 1] += 0.01
                return out

        with mock.patch.object(sys, "argv", argv), mock.patch.object(train.ort, "InferenceSession", Off):
            with self.assertRaises(SystemExit) as e:
                train.main()
        self.assertIn("disagree", str(e.exception))
        self.assertFalse(os.path.exists(out), "the model was written though it failed its check")
        self.assertFalse(os.path.exists(report))
        with mock.patch.object(sys, "argv", argv):
            train.main()
        self.assertTrue(os.path.exists(out) and os.path.exists(report))
        self.assertFalse(os.path.exists(out + ".tmp"))


if __name__ == "__main__":
    unittest.main()
