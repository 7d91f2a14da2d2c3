"""dctoolkit's benchmark suite: `./dct bench [--quick] [--json]` (see `bench/run.py`)."""
