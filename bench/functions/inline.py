"""The function with batches answered elsewhere than main.py says, to measure what that buys.

main.py answers batches of THREAD_ROWS rows or more on a worker thread; this
variant sets the bar from BENCH_THREAD_ROWS: out of reach by default (every
batch on the event loop), or, say, 1000 (batches of 1,000 rows or more on a
thread). Served with --source=bench/functions/inline.py.
"""

import os

import main

main.THREAD_ROWS = int(os.environ.get("BENCH_THREAD_ROWS", 1 << 62))
predict = main.predict
