"""Where a PostgreSQL run's round trips go: the statements of one database, counted from the server's log.

    BENCH_POSTGRES_LOG_STATEMENTS=1 ./dct bench --only throughput_postgres
    python -m bench.statements /var/log/postgresql/postgresql-15-main.log dct_bench_0123456789 2000

With that variable set, the throwaway database is made with
`log_min_duration_statement = 0` (every statement of every connection to it
is logged, with its duration; the server's `log_line_prefix` must hold
`%d`, as Debian's `%m [%p] %q%u@%d ` does).  This reads the log back and
prints each kind of statement (literals and numbers replaced by `?`) with how
many it took per job (the last argument: the jobs the run finished) and the
server time it took, most frequent first.  A statement is one round trip
(psycopg sends parse, bind and execute together); Django's schema statements
of `migrate` are left out.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterable

# "... [PID] USER@DB LOG:  duration: 0.123 ms  execute <unnamed>: SELECT ..." or "...  statement: BEGIN"
LINE = re.compile(r"\[(\d+)\] \S*@(\S+) LOG:  duration: ([\d.]+) ms  (?:statement|execute [^:]*): (.*)")
LITERALS = re.compile(r"'(?:[^']|'')*'|\$\d+|\b\d+(?:\.\d+)?\b")
MIGRATION = re.compile(
    r"^(CREATE|ALTER|DROP|COMMENT|SET CONSTRAINTS)\b|django_migrations|django_content_type|pg_catalog"
)


def shape(sql: str) -> str:
    """A statement's kind: its literals and numbers as `?`, IN lists of them collapsed, cut at 160 characters."""
    text = re.sub(r"\(\?(?:, \?)+\)", "(?, ...)", LITERALS.sub("?", sql.strip()))
    return text[:160]


def tally(lines: Iterable[str], database: str) -> tuple[Counter, Counter]:
    """(count, milliseconds) of each statement shape logged for `database`."""
    counts: Counter = Counter()
    millis: Counter = Counter()
    for line in lines:
        m = LINE.search(line)
        if not m or m.group(2) != database or MIGRATION.search(m.group(4)):
            continue
        kind = shape(m.group(4))
        counts[kind] += 1
        millis[kind] += float(m.group(3))
    return counts, millis


def main(argv: list[str]) -> int:
    log, database, jobs = argv[0], argv[1], int(argv[2])
    with open(log, errors="replace") as f:
        counts, millis = tally(f, database)
    total = sum(counts.values())
    print(f"{total} statements, {total / jobs:.1f} per job, {sum(millis.values()) / jobs:.3f} ms server time per job")
    for kind, n in counts.most_common(40):
        print(f"{n / jobs:7.2f}/job {millis[kind] / jobs:7.3f} ms/job  {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
