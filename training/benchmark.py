"""The model benchmark (make benchmark-model): this project's pipeline beside the Fraud Detection
Handbook's baselines, on the handbook's world and protocol, at several seeds; and the project's
pipeline on its own world.

    python training/benchmark.py --dir .cache/benchmark --seeds 1 2 3 [--report training/REPORT.md]

For each seed, DIR holds what scripts/benchmark-model.sh made: handbook-SEED/{payments,labels,
features}.jsonl/.csv (paygen -world=handbook, then fraud-detector replay: the features the
service computes) and project-SEED/{features}.csv (paygen -world, then the replay). On the
handbook's world every model is trained and tested on the same rows, split by the book's protocol
(a week of training from 2018-07-25, a week of delay, a week of test without the cards known
compromised): the book's logistic regression and random forest on its 15 features
(training/handbook.py), and this project's LightGBM on the service's features (train.fit, its
hyper-parameters chosen on the later days of its training period), trained on the training week
alone and on all the history before the delay. On the project's world the model is trained as
make train does and tested on the last two weeks.

The table goes to standard output and, with --report, replaces the benchmark section of that
report (train.py keeps the section when it rewrites the report).
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import handbook  # noqa: E402
import train  # noqa: E402

BEGIN, END = train.BENCHMARK_BEGIN, train.BENCHMARK_END
SCENARIOS = ["amount_over_220", "compromised_terminal", "compromised_customer"]


def handbook_seed(d, seed, log):
    data = handbook.load(os.path.join(d, "payments.jsonl"), os.path.join(d, "labels.jsonl"))
    t, cards, y, scen = data["time"], data["card"], data["label"], data["scenario"]
    book_train, book_test = handbook.protocol_split(t, cards, y)
    X_book = handbook.book_features(data)

    names, ids, times, pcards, py, _, X, _ = train.load(os.path.join(d, "features.csv"))
    row = {p: i for i, p in enumerate(data["payment_id"])}
    at = np.array([row[p] for p in ids])  # each feature row's payment in the book's arrays
    p_train, p_test = book_train[at], book_test[at]
    if p_train.sum() != book_train.sum() or p_test.sum() != book_test.sum():
        sys.exit(f"{d}: the replay's rows are not the book's payments")
    # The test rows in the book's order, for every model alike.
    test_idx = np.flatnonzero(book_test)
    order = np.argsort(at[p_test])
    p_test_idx = np.flatnonzero(p_test)[order]
    assert (at[p_test_idx] == test_idx).all()

    scores = {}
    began = time.perf_counter()
    base = handbook.baselines(X_book[book_train], y[book_train], X_book[book_test], seed)
    scores["handbook logistic regression (15 features)"] = base["logistic_regression"]
    scores["handbook random forest (15 features)"] = base["random_forest"]
    log(f"  baselines {time.perf_counter() - began:.1f} s")
    began = time.perf_counter()
    model, params = train.fit(X, py, times, p_train, seed, log=open(os.devnull, "w"))
    scores["this project, trained on the training week"] = model.predict_proba(X[p_test_idx])[:, 1]
    log(f"  project, training week: {params['num_leaves']} leaves, {params['min_child_samples']} a leaf, "
        f"{params['n_estimators']} trees, {time.perf_counter() - began:.1f} s")
    # All the history before the delay whose card state is whole (the replay starts with none:
    # 38 days for a merchant's delayed 30-day counts).
    first = times.min() // 86400 + 38
    history = (times // 86400 >= first) & (times < handbook.TRAIN_START + 7 * 86400)
    began = time.perf_counter()
    model, params = train.fit(X, py, times, history, seed, log=open(os.devnull, "w"))
    scores["this project, trained on all history before the delay"] = model.predict_proba(X[p_test_idx])[:, 1]
    log(f"  project, all history: {params['num_leaves']} leaves, {params['min_child_samples']} a leaf, "
        f"{params['n_estimators']} trees, {time.perf_counter() - began:.1f} s")

    out = {}
    tt, tc, ty, ts = t[test_idx], cards[test_idx], y[test_idx], scen[test_idx]
    for name, s in scores.items():
        m = train.metrics(tt, tc, ty, s)
        rec = handbook.scenario_recall(tt, tc, ty, ts, s)
        m["recall"] = {sc: rec.get(sc, (float("nan"), 0))[0] for sc in SCENARIOS}
        out[name] = m
        log(f"  {name}: AUC {m['roc_auc']:.3f} AP {m['average_precision']:.3f} CP@100 {m['card_precision_top100_per_day']:.3f}")
    return out, int(book_train.sum()), int(y[book_train].sum()), int(book_test.sum()), int(y[book_test].sum())


def project_seed(d, seed, log):
    names, ids, times, cards, y, rules, X, _ = train.load(os.path.join(d, "features.csv"))
    split = times.max() - 2 * 7 * 86400
    tr, te = times <= split - 7 * 86400, times > split
    model, params = train.fit(X, y, times, tr, seed, log=open(os.devnull, "w"))
    m = train.metrics(times[te], cards[te], y[te], model.predict_proba(X[te])[:, 1])
    log(f"  project world: AUC {m['roc_auc']:.3f} AP {m['average_precision']:.3f} CP@100 {m['card_precision_top100_per_day']:.3f}")
    return m


def mean_range(vals, fmt="{:.3f}"):
    v = np.array(vals, dtype=float)
    return fmt.format(v.mean()), (fmt + "–" + fmt).format(v.min(), v.max())


def table(results, project, seeds, sizes):
    names = list(results[0].keys())
    lines = [
        f"On the handbook's world (seeds {', '.join(map(str, seeds))}; each seed its own world and models), "
        f"the book's protocol: about {np.mean([s[0] for s in sizes]):,.0f} training payments "
        f"({np.mean([s[1] for s in sizes]):,.0f} fraud) and {np.mean([s[2] for s in sizes]):,.0f} test payments "
        f"({np.mean([s[3] for s in sizes]):,.0f} fraud) a seed. Means of the seeds, the range below each:",
        "",
        "| model | AUC | AP | CP@100 | recall of the top 100 cards a day, by scenario (amount / terminal / customer) |",
        "|---|---|---|---|---|",
    ]
    for n in names:
        cells = []
        for key in ("roc_auc", "average_precision", "card_precision_top100_per_day"):
            mean, rng = mean_range([r[n][key] for r in results])
            cells.append(f"{mean} ({rng})")
        rec = " / ".join(mean_range([r[n]["recall"][sc] for r in results], "{:.2f}")[0] for sc in SCENARIOS)
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {rec} |")
    lines += ["", "On the project's own world (make train's split: the last two weeks tested, a week's gap):", "",
              "| seed | AUC | AP | CP@100 |", "|---|---|---|---|"]
    for s, m in zip(seeds, project):
        lines.append(f"| {s} | {m['roc_auc']:.3f} | {m['average_precision']:.3f} | {m['card_precision_top100_per_day']:.3f} |")
    return "\n".join(lines) + "\n"


def replace_section(path, body):
    text = open(path).read() if os.path.exists(path) else ""
    section = f"{BEGIN}\n## Benchmark: the handbook's world and protocol\n\nReproduce with `make benchmark-model`.\n\n{body}{END}\n"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=".cache/benchmark")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--report", help="replace the benchmark section of this Markdown report")
    a = ap.parse_args()

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    results, project, sizes = [], [], []
    for seed in a.seeds:
        log(f"seed {seed}: handbook's world")
        r, *size = handbook_seed(os.path.join(a.dir, f"handbook-{seed}"), seed, log)
        results.append(r)
        sizes.append(size)
        log(f"seed {seed}: project's world")
        project.append(project_seed(os.path.join(a.dir, f"project-{seed}"), seed, log))
    body = table(results, project, a.seeds, sizes)
    print(body)
    if a.report:
        replace_section(a.report, body)


if __name__ == "__main__":
    main()
