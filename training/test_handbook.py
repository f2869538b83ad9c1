"""Tests of handbook.py: python -m unittest discover -s training (scripts/test.sh runs them)."""

import datetime as dt
import json
import os
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import handbook  # noqa: E402

DAY = 86400
T0 = int(dt.datetime(2018, 4, 1, tzinfo=dt.timezone.utc).timestamp())  # a Sunday


def data(rows):
    """rows: (time, card, terminal, amount, label)."""
    t, c, term, a, y = zip(*rows)
    return {"time": np.array(t, dtype=np.int64), "card": np.array(c), "terminal": np.array(term),
            "amount": np.array(a, dtype=float), "label": np.array(y, dtype=np.int64)}


def reference(d):
    """The features by their definitions, one payment at a time (slow)."""
    t, c, term, a, y = d["time"], d["card"], d["terminal"], d["amount"], d["label"]
    out = []
    for i in range(len(t)):
        when = dt.datetime.fromtimestamp(int(t[i]), dt.timezone.utc)
        row = [a[i], float(when.weekday() >= 5), float(when.hour <= 6)]
        # Earlier in the input, or the payment itself, for ties in time.
        before = np.array([t[j] < t[i] or (t[j] == t[i] and j <= i) for j in range(len(t))])
        for w in handbook.WINDOWS:
            m = before & (c == c[i]) & (t > t[i] - w * DAY)
            row += [m.sum(), a[m].mean()]
        for w in handbook.WINDOWS:
            m = (term == term[i]) & (t > t[i] - (7 + w) * DAY) & (t <= t[i] - 7 * DAY)
            row += [m.sum(), y[m].mean() if m.any() else 0.0]
        out.append(row)
    return np.array(out)


class BookFeatures(unittest.TestCase):
    def test_names(self):
        self.assertEqual(len(handbook.FEATURES), 15)
        self.assertEqual(handbook.FEATURES[3:5], ["CUSTOMER_ID_NB_TX_1DAY_WINDOW", "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW"])
        self.assertEqual(handbook.FEATURES[13:], ["TERMINAL_ID_NB_TX_30DAY_WINDOW", "TERMINAL_ID_RISK_30DAY_WINDOW"])

    def test_customer_windows_include_the_payment(self):
        d = data([(T0 + 3600, "a", "t", 10, 0), (T0 + 7200, "a", "t", 20, 0), (T0 + 2 * DAY, "a", "t", 60, 0),
                  (T0 + 2 * DAY, "b", "t", 5, 0), (T0 + 2 * DAY, "a", "t", 30, 0)])
        X = handbook.book_features(d)
        self.assertEqual(list(X[:, 3]), [1, 2, 1, 1, 2])  # 1 day; a tie counts the one before it
        self.assertEqual(list(X[:, 5]), [1, 2, 3, 1, 4])  # 7 days
        self.assertEqual(list(X[:, 4]), [10, 15, 60, 5, 45])
        self.assertEqual(X[4, 6], 30)

    def test_terminal_risk_leaves_out_the_last_7_days(self):
        rows = [(T0, "a", "t", 1, 1),                      # day 0: fraud
                (T0 + 6 * DAY, "b", "t", 1, 1),            # day 6: fraud, inside the delay of day 8
                (T0 + 7 * DAY, "c", "t", 1, 0),            # exactly 7 days after the first
                (T0 + 8 * DAY, "d", "t", 1, 0),
                (T0 + 8 * DAY + 1, "e", "u", 1, 0)]        # another terminal
        X = handbook.book_features(data(rows))
        nb1, risk1, nb7, risk7 = X[:, 9], X[:, 10], X[:, 11], X[:, 12]
        self.assertEqual(list(nb1[:3]), [0, 0, 1])         # day 7 sees day 0: (t-8d, t-7d]
        self.assertEqual(risk1[2], 1.0)
        self.assertEqual(nb1[3], 0)                        # day 8: (day 0, day 1] is empty
        self.assertEqual(risk1[3], 0.0)                    # no payments: risk 0
        self.assertEqual(nb7[3], 1)                        # (day -6, day 1]: day 0 only, not day 6
        self.assertEqual(risk7[3], 1.0)
        self.assertEqual(list(X[4, 9:]), [0] * 6)

    def test_weekend_and_night(self):
        X = handbook.book_features(data([(T0 + 6 * 3600 + 3599, "a", "t", 1, 0), (T0 + 7 * 3600, "a", "t", 1, 0),
                                         (T0 + DAY + 3600, "a", "t", 1, 0), (T0 - DAY + 12 * 3600, "a", "t", 1, 0)]))
        self.assertEqual(list(X[:, 1]), [1, 1, 0, 1])      # Sunday, Sunday, Monday, Saturday
        self.assertEqual(list(X[:, 2]), [1, 0, 1, 0])      # hour <= 6

    def test_against_the_definitions(self):
        rng = np.random.default_rng(3)
        n = 300
        t = T0 + rng.integers(0, 60 * DAY, n)
        t[::10] = t[1::10][: len(t[::10])]                # ties in time
        order = np.argsort(t, kind="stable")
        d = data(list(zip(t[order], rng.choice(["a", "b", "c", "d"], n), rng.choice(["t1", "t2", "t3"], n),
                          np.round(rng.uniform(1, 100, n), 2), (rng.uniform(size=n) < 0.2).astype(int))))
        np.testing.assert_allclose(handbook.book_features(d), reference(d), rtol=1e-9, atol=1e-9)


class ProtocolSplit(unittest.TestCase):
    def test_split_removes_known_compromised_cards(self):
        rows = []
        for day in range(21):
            for card in "abcdz":
                rows.append((T0 + day * DAY + 3600, card, "t", 1, 0))
        fraud = {("a", 3), ("b", 8), ("c", 13), ("d", 15)}   # training, delay, last delay day, test
        rows = [(tm, c, te, am, int((c, (tm - T0) // DAY) in fraud)) for tm, c, te, am, _ in rows]
        d = data(rows)
        train, test = handbook.protocol_split(d["time"], d["card"], d["label"], T0)
        day = (d["time"] - T0) // DAY
        self.assertTrue((train == (day < 7)).all())
        self.assertFalse(test[(day >= 7) & (day < 14)].any())  # the delay is left out
        in_test = {(c, int(dd)) for c, dd in zip(d["card"][test], day[test])}
        for dd in range(14, 21):
            self.assertNotIn(("a", dd), in_test)               # fraud in the training week
            self.assertIn(("z", dd), in_test)
            self.assertIn(("c", dd), in_test)                  # day 13 is known only after day 20
            self.assertIn(("d", dd), in_test)                  # fraud in the test week stays in
            # b's fraud of day 8 is known from test day i with 7 + i - 1 >= 8, i.e. day 16.
            self.assertEqual(("b", dd) in in_test, dd < 16, dd)

    def test_default_start_is_day_115(self):
        self.assertEqual((handbook.TRAIN_START - T0) // DAY, 115)


class ScenarioRecall(unittest.TestCase):
    def test_recall_per_scenario(self):
        # Day 0: a (s1) scores 0.9, b (s2) 0.8, c legit 0.7; k=1 catches a.
        # Day 1: a again (now known: left out), b (s2) 0.5, c 0.6: c is the top, b is missed.
        t = np.array([0, 0, 0, DAY, DAY, DAY]) + T0
        cards = np.array(["a", "b", "c", "a", "b", "c"])
        y = np.array([1, 1, 0, 1, 1, 0])
        scenario = np.array(["s1", "s2", "", "s1", "s2", ""])
        s = np.array([0.9, 0.8, 0.7, 0.99, 0.5, 0.6])
        self.assertEqual(handbook.scenario_recall(t, cards, y, scenario, s, k=1), {"s1": (1.0, 1), "s2": (0.0, 2)})
        self.assertEqual(handbook.scenario_recall(t, cards, y, scenario, s, k=2),
                         {"s1": (1.0, 1), "s2": (1.0, 1)})     # b found on day 0, left out on day 1


class Baselines(unittest.TestCase):
    def test_scores_and_seed(self):
        rng = np.random.default_rng(1)
        X = rng.normal(size=(400, 3)) * [1, 100, 0.01]
        y = (X[:, 0] + X[:, 2] * 100 + rng.normal(size=400) > 1).astype(int)
        a = handbook.baselines(X[:300], y[:300], X[300:], seed=0)
        b = handbook.baselines(X[:300], y[:300], X[300:], seed=0)
        self.assertEqual(set(a), {"logistic_regression", "random_forest"})
        for name, s in a.items():
            self.assertEqual(s.shape, (100,))
            np.testing.assert_allclose(s, b[name], rtol=1e-12)  # two jobs may sum trees in either order
            self.assertGreater(np.corrcoef(s, y[300:])[0, 1], 0.4, name)


class Load(unittest.TestCase):
    def test_load_joins_labels_by_payment_id(self):
        with tempfile.TemporaryDirectory() as tmp:
            p, lab = os.path.join(tmp, "p.jsonl"), os.path.join(tmp, "l.jsonl")
            with open(p, "w") as f:
                f.write(json.dumps({"payment_id": "x1", "card_id": "card-1", "amount": "12.50", "currency": "EUR",
                                    "timestamp": "2018-04-01T00:00:31Z", "merchant_id": "term-00007"}) + "\n")
                f.write(json.dumps({"payment_id": "x2", "card_id": "card-2", "amount": "3.00", "currency": "EUR",
                                    "timestamp": "2018-04-02T10:00:00Z", "merchant_id": "term-00008"}) + "\n")
            with open(lab, "w") as f:
                f.write(json.dumps({"payment_id": "x2", "label": "fraud", "scenario": "compromised_terminal"}) + "\n")
                f.write(json.dumps({"payment_id": "x1", "label": "legitimate"}) + "\n")
            d = handbook.load(p, lab)
            self.assertEqual(list(d["time"]), [T0 + 31, T0 + DAY + 36000])
            self.assertEqual(list(d["label"]), [0, 1])
            self.assertEqual(list(d["scenario"]), ["", "compromised_terminal"])
            self.assertEqual(list(d["amount"]), [12.5, 3.0])
            self.assertEqual(list(d["terminal"]), ["term-00007", "term-00008"])
            with open(lab, "w") as f:
                f.write(json.dumps({"payment_id": "x1", "label": "legitimate"}) + "\n")
            with self.assertRaisesRegex(ValueError, "x2"):
                handbook.load(p, lab)


if __name__ == "__main__":
    unittest.main()
