"""The function with every batch answered on the event loop, to measure what the thread buys.

main.py answers batches of THREAD_ROWS rows or more on a worker thread; this
variant raises the bar out of reach. Served with --source=bench/functions/inline.py.
"""

import main

main.THREAD_ROWS = 1 << 62
predict = main.predict
