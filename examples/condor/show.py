"""Prints its arguments and what it reads on standard input."""

import sys

print(*sys.argv[1:], sep="|")
print("stdin:", sys.stdin.read().strip())
print("to stderr", file=sys.stderr)
