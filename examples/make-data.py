#!/usr/bin/env python3
"""Writes the walkthrough's example datasets (deterministic, standard library only).

houses.csv: price = 50*area + 10000*rooms - 2000*age + 30000 + noise  (linear regression)
churn.csv:  churned = 1 when 0.8*support_calls - 0.05*tenure_months + noise > 1  (logistic)
tickets.csv: short support tickets labelled billing, delivery or account   (text classification)
"""
import random
import sys
from pathlib import Path

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")
out.mkdir(parents=True, exist_ok=True)
rng = random.Random(7)

with open(out / "houses.csv", "w") as f:
    f.write("area,rooms,age,price\n")
    for _ in range(500):
        area = rng.uniform(40, 250)
        rooms = rng.randint(1, 6)
        age = rng.uniform(0, 60)
        price = 50 * area + 10000 * rooms - 2000 * age + 30000 + rng.gauss(0, 3000)
        f.write(f"{area:.2f},{rooms},{age:.1f},{price:.2f}\n")

with open(out / "churn.csv", "w") as f:
    f.write("support_calls,tenure_months,monthly_spend,churned\n")
    for _ in range(600):
        calls = rng.randint(0, 8)
        tenure = rng.uniform(1, 72)
        spend = rng.uniform(10, 120)
        churned = int(0.8 * calls - 0.05 * tenure + rng.gauss(0, 0.5) > 1)
        f.write(f"{calls},{tenure:.1f},{spend:.2f},{churned}\n")

TOPICS = {
    "billing": ["invoice", "refund", "charged", "payment", "price", "bill"],
    "delivery": ["parcel", "courier", "shipping", "arrived", "late", "package"],
    "account": ["password", "login", "email", "locked", "profile", "username"],
}
with open(out / "tickets.csv", "w") as f:
    f.write("text,topic\n")
    for i in range(600):
        topic = list(TOPICS)[i % 3]
        words = [rng.choice(TOPICS[topic]) for _ in range(3)]
        f.write(f'"my {words[0]} was {words[1]}, please check the {words[2]}",{topic}\n')

print(f"wrote houses.csv, churn.csv and tickets.csv in {out}")
