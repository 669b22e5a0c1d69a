"""The progress line of the original ESHM benchmark pair, shared by benchmark_master.py and benchmark_slave.py:

    [  1000] Total:    0.3s, 3875.5 msg/s | Interval: 3875.5 msg/s
"""

import time


class Progress:
    """Counts exchanges; every `every` of them prints the total and the last interval's rate."""

    def __init__(self, every):
        self.every = max(1, every)
        self.count = 0
        self.start = self.mark = self.last = time.monotonic()

    def add(self):
        self.count += 1
        self.last = time.monotonic()
        if self.count % self.every == 0:
            now = time.monotonic()
            total = now - self.start
            print(f"[{self.count:6d}] Total: {total:6.1f}s, {self.count / total:6.1f} msg/s | "
                  f"Interval: {self.every / max(now - self.mark, 1e-9):6.1f} msg/s", flush=True)
            self.mark = now

    def summary(self, what):
        elapsed = max(self.last - self.start, 1e-9)  # to the last exchange, not to the end of the wait after it
        return f"Average: {self.count / elapsed:,.1f} msg/sec over {elapsed:.1f} s, {self.count} {what}"
