"""Checks one shard's Prometheus page, as scripts/container_test.sh sees it
through the published port: it parses, and it counts lookups served.

    check_metrics.py http://127.0.0.1:PORT/metrics
"""

import sys
import urllib.request

sys.path.insert(0, __file__.rsplit("/tests/", 1)[0])

from tests.security import promtext  # noqa: E402


def main(url):
    with urllib.request.urlopen(url, timeout=10) as reply:
        page = reply.read().decode()
    families = promtext.parse(page)  # Raises on a malformed page.
    lookups = promtext.value(families, "grpc_server_handled_total",
                             grpc_method="Lookup", grpc_code="OK") or 0
    if lookups < 1:
        sys.exit(f"{url}: no Lookup counted as handled OK")
    print(f"{url}: {lookups:.0f} lookups handled OK")


if __name__ == "__main__":
    main(sys.argv[1])
