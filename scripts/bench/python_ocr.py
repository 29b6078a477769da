#!/usr/bin/env python3
"""OCR per frame the way the replaced Python system did it: the pip `rapidocr` and
`onnxruntime` packages, called once per frame, on the same PNG frame and the same
PP-OCRv6 small det/rec models as `bench_ocr`, with one ONNX Runtime intra-op thread.

    python_ocr.py --frame FRAME.png --models DIR --roi X,Y,W,H [--runs N] [--det-max-side 960]

Prints a human table and one line `BENCH_JSON {...}` (milliseconds: median/min/max).
"""
import logging
import os
import time

import cv2
from rapidocr import RapidOCR

from common import parse_args, print_bench_json


def summary(ms):
    ms = sorted(ms)
    return {"median": ms[len(ms) // 2], "min": ms[0], "max": ms[-1]}


def timed(runs, f):
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        out.append((time.perf_counter() - t) * 1000.0)
    return summary(out)


def engine(models, det_params):
    params = {
        "Global.use_cls": False,
        "Global.log_level": "error",
        "Det.model_path": os.path.join(models, "PP-OCRv6_det_small.onnx"),
        "Rec.model_path": os.path.join(models, "PP-OCRv6_rec_small.onnx"),
        "EngineConfig.onnxruntime.intra_op_num_threads": 1,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    }
    params.update(det_params)
    return RapidOCR(params=params)


def main():
    a = parse_args(("frame", "models", "roi"), {"runs": 20, "det-max-side": 960})
    logging.disable(logging.WARNING)

    img = cv2.imread(a.frame, cv2.IMREAD_COLOR)  # BGR, like ours after BGRx->BGR
    x, y, w, h = (int(v) for v in a.roi.split(","))
    region = img[y : y + h, x : x + w].copy()

    rows = {}
    texts = {}
    # rapidocr's own defaults for detection (short side 736: 1312x736 for 720p) ...
    default = engine(a.models, {})
    # ... and the same detection size as ocrsegment (long side capped at det-max-side).
    same = engine(
        a.models, {"Det.limit_type": "max", "Det.limit_side_len": a.det_max_side}
    )
    for name, eng in (("full_default_det", default), ("full_same_det", same)):
        r = eng(img)
        texts[name] = list(r.txts or ())
        eng(img)  # second warm-up, like bench_ocr
        rows[name] = timed(a.runs, lambda: eng(img))
    r = same(region, use_det=False, use_cls=False, use_rec=True)
    texts["roi_rec_only"] = list(r.txts or ())
    same(region, use_det=False, use_cls=False, use_rec=True)
    rows["roi_rec_only"] = timed(
        a.runs, lambda: same(region, use_det=False, use_cls=False, use_rec=True)
    )

    print(
        f"python rapidocr 3.10.0 + onnxruntime, {img.shape[1]}x{img.shape[0]} frame, "
        f"{a.runs} runs each, 1 intra-op thread"
    )
    for name, s in rows.items():
        print(
            f"  {name:<20} {s['median']:8.2f} {s['min']:8.2f} {s['max']:8.2f}  {texts[name]}"
        )
    print_bench_json({"python_ocr": rows, "python_ocr_texts": texts})


if __name__ == "__main__":
    main()
