#!/usr/bin/env python3
"""Load generator for benches/pickup.sh: POSTs each line of BODIES (one
pickup form per line) to URL, CONCURRENCY at a time, each line once.
Prints one JSON line: count, statuses, wall seconds, pickups/s, latency
p50/p99 (ms), and how many 200 answers were a PKCS#12 (DER SEQUENCE with
Content-Type application/x-pkcs12), so a server that fails fast cannot
look fast. Standard library only."""
import json
import sys
import threading
import time
import urllib.error
import urllib.request


def main():
    url, bodies_path, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(bodies_path, "rb") as f:
        bodies = [line.rstrip(b"\n") for line in f if line.strip()]
    lock = threading.Lock()
    queue = list(reversed(bodies))
    statuses, latencies = {}, []
    pkcs12 = [0]

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            req = urllib.request.Request(
                url,
                data=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                method="POST",
            )
            t = time.monotonic()
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    data, status = r.read(), r.status
                    ok = (
                        r.headers.get("Content-Type") == "application/x-pkcs12"
                        and data[:1] == b"\x30"
                    )
            except urllib.error.HTTPError as e:
                data, status, ok = e.read(), e.code, False
            except Exception as e:  # connection errors count as status 0
                data, status, ok = str(e).encode(), 0, False
            dt = time.monotonic() - t
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                latencies.append(dt)
                pkcs12[0] += ok

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    latencies.sort()

    def pct(p):
        return round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)

    print(
        json.dumps(
            {
                "count": len(bodies),
                "statuses": statuses,
                "pkcs12": pkcs12[0],
                "seconds": round(wall, 3),
                "per_second": round(len(bodies) / wall, 2),
                "p50_ms": pct(0.5),
                "p99_ms": pct(0.99),
            }
        )
    )


if __name__ == "__main__":
    main()
