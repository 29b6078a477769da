#!/usr/bin/env python3
"""A boto3 uploader the way the replaced Python system stored frames: PUT the same object
N times with C threads in flight against an S3 endpoint.

    python_upload.py --endpoint URL --bucket B --body FILE --frames N --concurrency C --prefix P

Credentials from the standard AWS environment. Prints `BENCH_JSON {"seconds": ...}`.
"""
import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--body", required=True)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--prefix", default="bench/boto3/")
    a = ap.parse_args()
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
    print("BENCH_JSON " + json.dumps({"seconds": time.perf_counter() - t}))


if __name__ == "__main__":
    main()
