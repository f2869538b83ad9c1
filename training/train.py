"""Train the fraud model on features computed by the service's own code (fraud-detector replay).

    python training/train.py --features features.csv --out configs/model.onnx \
        --report training/REPORT.md --parity internal/model/testdata/parity.csv

Input: the CSV that `fraud-detector replay -labels ...` writes: payment_id, event_time (Unix
seconds), card_id, label (1 fraud, 0 legitimate, empty unknown), scenario, rules_flagged,
flagged, score, reasons, then the model's features in the service's order. Rows without a label
are left out.

The split is by time: the model learns on the earlier weeks and is measured on the last
--test-weeks, as it would be used; the --gap-days between are left out, since their labels
would not be known yet when the model went live. The ONNX file carries in its metadata the feature names in
order, the model version, a SHA-256 of the training data, the threshold and the test metrics; the
service refuses a model whose feature names differ from its own.
"""

import argparse
import warnings
import csv
import hashlib
import json
import os
import sys

import lightgbm as lgb
import numpy as np
import onnx
import onnxruntime as ort
from onnxmltools import convert_lightgbm
from onnxmltools.convert.common.data_types import FloatTensorType
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

# LightGBM names its columns when it fits on an array; scikit-learn then warns on every predict.
warnings.filterwarnings("ignore", message="X does not have valid feature names")

FIXED = ["payment_id", "event_time", "card_id", "label", "scenario", "rules_flagged", "flagged", "score", "reasons"]


def load(path):
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        if header[: len(FIXED)] != FIXED:
            sys.exit(f"{path}: not a replay CSV (its columns start {header[:len(FIXED)]}, want {FIXED})")
        names = header[len(FIXED):]
        ids, times, cards, labels, rules, feats = [], [], [], [], [], []
        for r in rows:
            if r[3] == "":
                continue
            ids.append(r[0])
            times.append(int(r[1]))
            cards.append(r[2])
            labels.append(int(r[3]))
            rules.append(int(r[5]))
            feats.append([float(v) for v in r[len(FIXED):]])
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return names, np.array(ids), np.array(times), np.array(cards), np.array(labels), np.array(rules), np.array(feats, dtype=np.float32), digest


def recall_at_fpr(y, s, fpr_max=0.01):
    """The recall of the best threshold whose false-positive rate is at most fpr_max (a step, not
    an interpolation: a score that cannot reach that rate gets 0)."""
    fpr, tpr, _ = roc_curve(y, s)
    return float(tpr[fpr <= fpr_max].max())


def float32_thresholds(booster):
    """A copy of booster whose numerical split thresholds are float32 numbers: each is the largest
    float32 not above the original, so that every float32 input goes the same way (x <= t) as with
    the original threshold, which lies between two float32 numbers."""
    lines = booster.model_to_string().split("\n")
    for i, line in enumerate(lines):
        if not line.startswith("threshold="):
            continue
        t = np.array([float(v) for v in line[len("threshold="):].split()], dtype=np.float64)
        t32 = t.astype(np.float32)
        over = t32.astype(np.float64) > t
        t32[over] = np.nextafter(t32[over], np.float32(-np.inf))
        lines[i] = "threshold=" + " ".join(repr(float(v)) for v in t32)
    # tree_sizes gives each tree's length in bytes, which the new thresholds change: without it,
    # LightGBM reads the trees one after another.
    return lgb.Booster(model_str="\n".join(l for l in lines if not l.startswith("tree_sizes=")))


def card_precision_top(times, cards, y, s, k=100):
    """Card precision@k as the Fraud Detection Handbook defines it: each day, the cards not found
    compromised on an earlier day are ranked by their highest score that day (ties by card id);
    the day's figure is how many of the top k had a fraud that day, over k; the cards found so
    leave the later days' rankings. The mean over the days."""
    days = times // 86400
    known, out = set(), []
    for d in np.unique(days):
        m = days == d
        best, fraud = {}, {}
        for c, sc, yy in zip(cards[m], s[m], y[m]):
            if c in known:
                continue
            best[c] = max(best.get(c, -np.inf), sc)
            fraud[c] = fraud.get(c, 0) | int(yy)
        top = sorted(best, key=lambda c: (-best[c], c))[:k]
        found = [c for c in top if fraud[c]]
        out.append(len(found) / k)
        known.update(found)
    return float(np.mean(out))


def metrics(times, cards, y, s):
    return {
        "roc_auc": float(roc_auc_score(y, s)),
        "average_precision": float(average_precision_score(y, s)),
        "card_precision_top100_per_day": card_precision_top(times, cards, y, s),
        "recall_at_1pct_fpr": recall_at_fpr(y, s),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", required=True)
    ap.add_argument("--out", required=True, help="the ONNX model to write")
    ap.add_argument("--report", required=True, help="the Markdown report to write")
    ap.add_argument("--parity", help="write 1,000 test rows and their ONNX Runtime scores here, for the Go parity test")
    ap.add_argument("--test-weeks", type=int, default=2)
    ap.add_argument("--gap-days", type=int, default=7,
                    help="leave out the days just before the test weeks: their labels would not be known yet when the model goes live (the replay's -label-delay)")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()

    names, ids, times, cards, y, rules, X, digest = load(a.features)
    split = times.max() - a.test_weeks * 7 * 86400
    train, test = times <= split - a.gap_days * 86400, times > split
    if y[train].sum() == 0 or y[test].sum() == 0:
        sys.exit("need fraud in both the training and the test weeks")
    print(f"train: {train.sum()} payments, {y[train].sum()} fraud; test: {test.sum()} payments, {y[test].sum()} fraud", file=sys.stderr)

    # 120 trees of 15 leaves: about 3 µs a payment in ONNX Runtime on one thread.
    params = dict(n_estimators=120, learning_rate=0.1, num_leaves=15, min_child_samples=40, subsample=0.8, subsample_freq=1,
                  colsample_bytree=0.8, reg_lambda=1.0, random_state=a.seed, deterministic=True, force_row_wise=True, n_jobs=2)
    model = lgb.LGBMClassifier(verbose=-1, **params)
    model.fit(X[train], y[train])
    # ONNX keeps split thresholds as float32: make them float32 numbers that split every float32
    # input as LightGBM's did (the service's features are float32), so the two score alike.
    before = model.predict_proba(X[test])[:, 1]
    model._Booster = float32_thresholds(model.booster_)
    if not np.array_equal(before, model.predict_proba(X[test])[:, 1]):
        sys.exit("float32 thresholds changed LightGBM's scores: the features are not float32")

    onx = convert_lightgbm(model, initial_types=[("input", FloatTensorType([None, len(names)]))], zipmap=False, target_opset=15)
    p_test = model.predict_proba(X[test])[:, 1]
    m_model = metrics(times[test], cards[test], y[test], p_test)
    m_rules = metrics(times[test], cards[test], y[test], rules[test].astype(float))
    version = "lgbm-" + hashlib.sha256((digest + json.dumps(params, sort_keys=True) + f"{a.test_weeks}/{a.gap_days}").encode()).hexdigest()[:12]
    meta = {
        "feature_names": ",".join(names),
        "model_version": version,
        "training_data_sha256": digest,
        "threshold": str(a.threshold),
        "test_metrics": json.dumps({"model": m_model, "rules": m_rules}, sort_keys=True),
        "train_until": str(int(split - a.gap_days * 86400)),
    }
    for k, v in meta.items():
        onx.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onx.producer_name = "fraud-detector training/train.py"
    onx.graph.name = version  # the converter names the graph at random: the file would differ run to run
    # ONNX Runtime must score as LightGBM does, before anything is written: a service watching
    # --out would load a model that failed its check.
    data = onx.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    p_ort = sess.run(["probabilities"], {"input": X[test]})[0][:, 1]
    diff = float(np.max(np.abs(p_ort - p_test)))
    if diff > 1e-5:
        sys.exit(f"ONNX Runtime and LightGBM disagree by {diff}; nothing written")
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, a.out)  # whole or not at all, for a service that reloads it
    if a.parity:
        with open(a.parity, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["score"] + names)
            for row, p in zip(X[test][:1000], p_ort[:1000]):
                w.writerow([repr(float(p))] + [repr(float(v)) for v in row])

    with open(a.report, "w") as f:
        f.write(report(a, names, version, digest, train, test, y, m_model, m_rules, diff))
    print(f"model {version} written to {a.out}; test AP {m_model['average_precision']:.3f} (rules {m_rules['average_precision']:.3f})", file=sys.stderr)


def report(a, names, version, digest, train, test, y, m_model, m_rules, diff):
    rows = [
        ("ROC AUC", "roc_auc"),
        ("average precision", "average_precision"),
        ("card precision, top 100 cards a day", "card_precision_top100_per_day"),
        ("recall at 1 % false-positive rate", "recall_at_1pct_fpr"),
    ]
    lines = [
        f"# Model report: {version}",
        "",
        f"Trained by `training/train.py` on `{a.features}` (SHA-256 `{digest[:16]}…`): "
        f"{train.sum():,} payments ({y[train].sum():,} fraud) up to {a.gap_days} days before the last {a.test_weeks} weeks "
        f"(those days' labels would not be known yet); "
        f"measured on those {a.test_weeks} weeks: {test.sum():,} payments ({y[test].sum():,} fraud).",
        "",
        "| metric, test weeks | model | rules alone (amount, velocity) |",
        "|---|---|---|",
    ]
    for label, key in rows:
        lines.append(f"| {label} | {m_model[key]:.3f} | {m_rules[key]:.3f} |")
    lines += [
        "",
        f"Threshold {a.threshold}. ONNX Runtime agrees with LightGBM to {diff:.1e} on the test rows.",
        "",
        "Features, in order: " + ", ".join(f"`{n}`" for n in names) + ".",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
