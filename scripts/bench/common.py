"""What the Python benchmark scripts share: their command line and their result line.

The scripts are run by path (`python3 scripts/bench/NAME.py`), so this directory is on
`sys.path` and `import common` finds this module.
"""
import argparse
import json


def parse_args(required, defaults):
    """Parses `--NAME VALUE` options: each of `required` must be given; each of
    `defaults` (a dict) is optional and takes the type of its default."""
    ap = argparse.ArgumentParser()
    for name in required:
        ap.add_argument(f"--{name}", required=True)
    for name, default in defaults.items():
        ap.add_argument(f"--{name}", type=type(default), default=default)
    return ap.parse_args()


def print_bench_json(result):
    """Prints the `BENCH_JSON {...}` line that bench.sh and report.py read."""
    print("BENCH_JSON " + json.dumps(result))
