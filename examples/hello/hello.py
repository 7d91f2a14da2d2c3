"""A first job: reads its data file, prints a summary, writes a result file."""

import csv
import sys

with open("data.csv") as f:
    rows = list(csv.DictReader(f))
total = sum(float(r["value"]) for r in rows)
print(f"hello from job {sys.argv[1:]}: {len(rows)} rows, total {total}")
with open("summary.txt", "w") as f:
    f.write(f"rows={len(rows)} total={total}\n")
