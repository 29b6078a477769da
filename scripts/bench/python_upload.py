#!/usr/bin/env python3
"""A boto3 uploader the way the replaced Python system stored frames: PUT the same object
N times with C threads in flight against an S3 endpoint.

    python_upload.py --endpoint URL --bucket B --body FILE --frames N --concurrency C --prefix P

Credentials from the standard AWS environment. Prints `BENCH_JSON {"seconds": ...}`.
"""
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

from common import parse_args, print_bench_json


def main():
    a = parse_args(
        ("endpoint", "bucket", "body"),
        {"frames": 1000, "concurrency": 8, "prefix": "bench/boto3/"},
    )
    body = open(a.body, "rb").read()
    s3 = boto3.client(
        "s3",
        endpoint_url=a.endpoint,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            max_pool_connections=a.concurrency,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )
    # One request to open a connection and load botocore's models outside the timing,
    # as a long-running uploader would have.
    s3.head_bucket(Bucket=a.bucket)

    def put(i):
        s3.put_object(
            Bucket=a.bucket,
            Key=f"{a.prefix}frame_{1_700_000_000_000 + i}_{i:06}.jpg",
            Body=body,
            ContentType="image/jpeg",
        )

    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=a.concurrency) as pool:
        for _ in pool.map(put, range(a.frames)):
            pass
    print_bench_json({"seconds": time.perf_counter() - t})


if __name__ == "__main__":
    main()
