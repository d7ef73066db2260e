"""``python -m rsvg_zeroov.models``: every registered model key by role, and whether it is here.

    python -m rsvg_zeroov.models [--json]
"""
from __future__ import annotations

import argparse
import json
import sys

from .base import describe


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m rsvg_zeroov.models", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="one JSON object per key instead of a table")
    args = p.parse_args(argv)
    rows = describe()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print("| role | key | also accepted as | hub id / checkpoint | size | default | present locally |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['role']} | {r['key']} | {', '.join(r['aliases'])} | {r['source']} | {r['size']} "
              f"| {'yes' if r['default'] else ''} | {'yes' if r['present'] else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
