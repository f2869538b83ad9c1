"""The Fraud Detection Handbook's baseline on its simulated world.

Le Borgne et al., "Reproducible Machine Learning for Credit Card Fraud Detection — Practical
Handbook" (2022), chapters 3 and 4, written here from the book's description: its 15 baseline
features, its protocol (a week of training, a week of delay, a week of test without the cards
already known compromised), and its baselines (logistic regression, random forest), on the
payments of `paygen -world=handbook`.

    python training/handbook.py --seed 1        # generates .cache/handbook/*-1.jsonl if missing

It prints ROC AUC, average precision and card precision@100 (train.metrics, as the book defines
them) for each model, and the share of each scenario's compromised cards found (scenario_recall).
"""

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402  (metrics and card_precision_top)

DAY = 86400

# The book's 15 baseline features, in its order.
FEATURES = [
    "TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT",
    "CUSTOMER_ID_NB_TX_1DAY_WINDOW", "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_7DAY_WINDOW", "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_30DAY_WINDOW", "CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW",
    "TERMINAL_ID_NB_TX_1DAY_WINDOW", "TERMINAL_ID_RISK_1DAY_WINDOW",
    "TERMINAL_ID_NB_TX_7DAY_WINDOW", "TERMINAL_ID_RISK_7DAY_WINDOW",
    "TERMINAL_ID_NB_TX_30DAY_WINDOW", "TERMINAL_ID_RISK_30DAY_WINDOW",
]
WINDOWS = (1, 7, 30)
TERMINAL_DELAY_DAYS = 7

# The book trains from 2018-07-25 (day 115 of the world that starts on 2018-04-01).
TRAIN_START = int(dt.datetime(2018, 7, 25, tzinfo=dt.timezone.utc).timestamp())


def load(payments_path, labels_path):
    """The payments of a JSONL file (paygen's records) with their labels (a JSONL file of
    payment_id, label and scenario), as a dict of numpy arrays in the payments' order:
    payment_id, time (Unix seconds), card, terminal (the merchant_id), amount, label (1 for
    fraud) and scenario ("" for a legitimate payment)."""
    ids, times, cards, terminals, amounts = [], [], [], [], []
    with open(payments_path) as f:
        for line in f:
            r = json.loads(line)
            ids.append(r["payment_id"])
            times.append(r["timestamp"].removesuffix("Z"))
            cards.append(r["card_id"])
            terminals.append(r.get("merchant_id", ""))
            amounts.append(float(r["amount"]))
    truth = {}
    with open(labels_path) as f:
        for line in f:
            r = json.loads(line)
            truth[r["payment_id"]] = (int(r["label"] == "fraud"), str(r.get("scenario") or ""))
    missing = [i for i in ids if i not in truth]
    if missing:
        raise ValueError(f"{len(missing)} payments have no label, the first {missing[0]}")
    return {
        "payment_id": np.array(ids),
        "time": np.array(times, dtype="datetime64[s]").astype(np.int64),
        "card": np.array(cards),
        "terminal": np.array(terminals),
        "amount": np.array(amounts),
        "label": np.array([truth[i][0] for i in ids], dtype=np.int64),
        "scenario": np.array([truth[i][1] for i in ids]),
    }


class _Groups:
    """Payments sorted by group, then time, then their order in the input, for counts and sums
    over a group's payments in a time interval. Ties in time keep the input's order, as pandas'
    rolling windows do: a payment's window holds the payments of its second before it, not after."""

    def __init__(self, keys, times, span):
        _, g = np.unique(keys, return_inverse=True)
        self.order = np.lexsort((np.arange(len(times)), times, g))
        t = times - times.min()
        self.big = int(t.max()) + span + 1  # a group's keys never reach the next group's
        self.base = g[self.order].astype(np.int64) * self.big
        self.key = self.base + t[self.order]

    def after(self, seconds_back, side="right"):
        """For each payment in sorted order, the index of the first payment of its group later
        than its time minus seconds_back."""
        return np.searchsorted(self.key, self.key - seconds_back, side=side)

    @staticmethod
    def cumsum(v):
        return np.concatenate(([0], np.cumsum(v, dtype=np.float64)))


def book_features(data):
    """The book's 15 baseline features (FEATURES), an n×15 float64 array in the payments' order.

    TX_DURING_WEEKEND: a Saturday or Sunday (UTC); TX_DURING_NIGHT: hour (UTC) <= 6.
    CUSTOMER_ID_*_wDAY_WINDOW: the count and mean amount of the card's payments in (t - w days, t],
    the payment included. TERMINAL_ID_*_wDAY_WINDOW, delayed by 7 days as fraud is known late: the
    count of the terminal's payments in (t - 7 - w days, t - 7 days] and the share of them that are
    fraud (0 when there are none)."""
    t, amount, y = data["time"], data["amount"], data["label"]
    n = len(t)
    X = np.empty((n, len(FEATURES)))
    X[:, 0] = amount
    X[:, 1] = ((t // DAY + 3) % 7) >= 5  # 1970-01-01 was a Thursday: Monday is 0
    X[:, 2] = (t % DAY) // 3600 <= 6
    if n == 0:
        return X
    span = (max(WINDOWS) + TERMINAL_DELAY_DAYS) * DAY

    cust = _Groups(data["card"], t, span)
    i = np.arange(n)
    sums = cust.cumsum(amount[cust.order])
    for k, w in enumerate(WINDOWS):
        lo = cust.after(w * DAY)
        count = i - lo + 1
        out = cust.order
        X[out, 3 + 2 * k] = count
        X[out, 4 + 2 * k] = (sums[i + 1] - sums[lo]) / count

    term = _Groups(data["terminal"], t, span)
    frauds = term.cumsum(y[term.order])
    hi = term.after(TERMINAL_DELAY_DAYS * DAY)
    for k, w in enumerate(WINDOWS):
        lo = term.after((TERMINAL_DELAY_DAYS + w) * DAY)
        count = hi - lo
        fraud = frauds[hi] - frauds[lo]
        out = term.order
        X[out, 9 + 2 * k] = count
        X[out, 10 + 2 * k] = np.divide(fraud, count, out=np.zeros(n), where=count > 0)
    return X


def protocol_split(times, cards, y, train_start=TRAIN_START, train_days=7, delay_days=7, test_days=7):
    """The book's protocol: train on the payments of [train_start, train_start + train_days days);
    leave out the delay_days after it (their labels are not known yet when the model goes live);
    test on the test_days days after the delay, without the payments of cards known compromised by
    each test day: those with a fraud in the training days, and, for test day i (0-based), those
    with a fraud on the days of the delay period up to day train_days + i - 1 (the frauds of the
    day before become known each day, as the book adds them). Returns the boolean masks
    (train, test)."""
    day = (np.asarray(times) - int(train_start)) // DAY
    cards, y = np.asarray(cards), np.asarray(y)
    train = (day >= 0) & (day < train_days)
    known = set(cards[train & (y == 1)])
    test = np.zeros(len(day), dtype=bool)
    for i in range(test_days):
        known.update(cards[(day == train_days + i - 1) & (y == 1)])
        on = np.flatnonzero(day == train_days + delay_days + i)
        test[on[~np.isin(cards[on], list(known))]] = True
    return train, test


def baselines(X_train, y_train, X_test, seed):
    """The book's baselines, each on features standardised by a StandardScaler fitted on the
    training rows: a logistic regression and a random forest (100 trees of depth 5). Returns
    {"logistic_regression": test scores, "random_forest": test scores}."""
    scaler = StandardScaler().fit(X_train)
    A, B = scaler.transform(X_train), scaler.transform(X_test)
    models = {
        "logistic_regression": LogisticRegression(random_state=seed),
        "random_forest": RandomForestClassifier(max_depth=5, n_estimators=100, n_jobs=2, random_state=seed),
    }
    return {name: m.fit(A, y_train).predict_proba(B)[:, 1] for name, m in models.items()}


def scenario_recall(times, cards, y, scenario, scores, k=100):
    """How much of each scenario the day's top k cards catch: {scenario: (recall, cards)}.

    Each test day, cards are ranked as train.card_precision_top ranks them: the cards not found
    compromised on an earlier day (found: in an earlier day's top k with a fraud that day), by
    their highest score of the day, ties by card id. For a scenario, the cards counted on a day
    are those still ranked with a fraud of that scenario that day; a card is caught if it is in
    the day's top k. Pooled over the days: the caught card-days over the counted card-days
    (recall is nan when none are counted). A card with frauds of two scenarios on a day counts
    for both."""
    times, cards, y = np.asarray(times), np.asarray(cards), np.asarray(y)
    scenario, scores = np.asarray(scenario), np.asarray(scores)
    days = times // DAY
    known = set()
    counted, caught = {}, {}
    for d in np.unique(days):
        m = days == d
        best, fraud, kinds = {}, {}, {}
        for c, s, yy, sc in zip(cards[m], scores[m], y[m], scenario[m]):
            if c in known:
                continue
            best[c] = max(best.get(c, -np.inf), s)
            fraud[c] = fraud.get(c, 0) | int(yy)
            if yy:
                kinds.setdefault(c, set()).add(sc)
        top = set(sorted(best, key=lambda c: (-best[c], c))[:k])
        for c, ks in kinds.items():
            for sc in ks:
                counted[sc] = counted.get(sc, 0) + 1
                caught[sc] = caught.get(sc, 0) + (c in top)
        known.update(c for c in top if fraud[c])
    return {sc: (caught[sc] / counted[sc], counted[sc]) for sc in sorted(counted)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1, help="the world's seed (and the models')")
    ap.add_argument("--payments", help="default .cache/handbook/payments-SEED.jsonl, generated if missing")
    ap.add_argument("--labels", help="default .cache/handbook/labels-SEED.jsonl")
    ap.add_argument("--train-start", default="2018-07-25", help="first day of training (UTC)")
    a = ap.parse_args()

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cache = os.path.join(root, ".cache", "handbook")
    payments = a.payments or os.path.join(cache, f"payments-{a.seed}.jsonl")
    labels = a.labels or os.path.join(cache, f"labels-{a.seed}.jsonl")
    if not (os.path.exists(payments) and os.path.exists(labels)):
        if a.payments or a.labels:
            sys.exit(f"no {payments} or {labels}")
        os.makedirs(cache, exist_ok=True)
        print(f"generating {payments} (paygen -world=handbook -seed {a.seed})", file=sys.stderr)
        subprocess.run(["go", "run", "./cmd/paygen", "-world=handbook", "-seed", str(a.seed),
                        "-out", payments, "-labels", labels], cwd=root, check=True)

    began = time.perf_counter()
    data = load(payments, labels)
    t_load = time.perf_counter() - began
    began = time.perf_counter()
    X = book_features(data)
    t_feat = time.perf_counter() - began
    n, fraud = len(data["label"]), int(data["label"].sum())
    print(f"{n} payments, {fraud} fraud ({100 * fraud / n:.3f} %); loaded in {t_load:.1f} s, features in {t_feat:.1f} s")

    start = int(dt.datetime.fromisoformat(a.train_start).replace(tzinfo=dt.timezone.utc).timestamp())
    t, cards, y = data["time"], data["card"], data["label"]
    train_m, test_m = protocol_split(t, cards, y, start)
    print(f"train: {train_m.sum()} payments, {y[train_m].sum()} fraud; test: {test_m.sum()} payments, {y[test_m].sum()} fraud")
    began = time.perf_counter()
    scores = baselines(X[train_m], y[train_m], X[test_m], a.seed)
    t_fit = time.perf_counter() - began
    print(f"both models fitted and scored in {t_fit:.1f} s")
    print(f"{'model':<20} {'AUC':>6} {'AP':>6} {'CP@100':>7}   recall of the top 100 cards by scenario")
    for name, s in scores.items():
        m = train.metrics(t[test_m], cards[test_m], y[test_m], s)
        rec = scenario_recall(t[test_m], cards[test_m], y[test_m], data["scenario"][test_m], s)
        recs = ", ".join(f"{sc} {r:.3f} of {c}" for sc, (r, c) in rec.items())
        print(f"{name:<20} {m['roc_auc']:6.3f} {m['average_precision']:6.3f} {m['card_precision_top100_per_day']:7.3f}   {recs}")


if __name__ == "__main__":
    main()
