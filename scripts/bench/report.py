#!/usr/bin/env python3
"""Merges the `BENCH_JSON {...}` lines of the benchmark logs into one table and one JSON.

    report.py LOG... [--json FILE]

Prints the table; writes the merged JSON to FILE (and prints it as `BENCH_JSON {...}`).
"""
import json
import sys


def load(paths):
    merged = {}
    for p in paths:
        try:
            with open(p) as f:
                for line in f:
                    if line.startswith("BENCH_JSON "):
                        merged.update(json.loads(line[len("BENCH_JSON ") :]))
        except OSError:
            pass
    return merged


def main():
    args = sys.argv[1:]
    out = None
    if "--json" in args:
        i = args.index("--json")
        out = args[i + 1]
        del args[i : i + 2]
    d = load(args)
    rows = []  # (what, figure, min, max, compared with, ratio, target, verdict)

    def row(what, med, lo, hi, cmp="", ratio="", target="", ok=None):
        verdict = "" if ok is None else ("met" if ok else "MISSED")
        rows.append((what, med, lo, hi, cmp, ratio, target, verdict))

    f = lambda v, p=1: "-" if v is None else f"{v:.{p}f}"
    ocr, py = d.get("ocr", {}), d.get("python_ocr", {})
    if ocr:
        el, fl = ocr.get("element, full frame det+rec"), ocr.get("engine floor, full frame det+rec")
        er, fr = ocr.get("element, ROI rec only"), ocr.get("engine floor, ROI rec only")
        sk = ocr.get("element, unchanged (skipped)")
        row("ocrsegment full frame ms", f(el["median"]), f(el["min"]), f(el["max"]),
            f"floor {f(fl['median'])}", f"{el['median'] / fl['median']:.2f}x floor",
            "<=1.10x, <=300 ms", el["median"] <= 300 and el["median"] <= 1.10 * fl["median"])
        row("ocrsegment ROI ms", f(er["median"]), f(er["min"]), f(er["max"]),
            f"floor {f(fr['median'])}", f"{er['median'] / fr['median']:.2f}x floor",
            "<=25 ms", er["median"] <= 25)
        row("ocrsegment unchanged ms", f(sk["median"], 2), f(sk["min"], 2), f(sk["max"], 2),
            "", "", "<=1 ms", sk["median"] <= 1)
        if py:
            for key, label in (("full_default_det", "rapidocr defaults (det 1312x736)"),
                               ("full_same_det", "rapidocr, same det size as ours")):
                p = py[key]
                row(f"python {label} ms", f(p["median"]), f(p["min"]), f(p["max"]),
                    f"ours {f(el['median'])}", f"{el['median'] / p['median']:.2f} ours/py",
                    "ours >=2x faster (<=0.5)", el["median"] <= 0.5 * p["median"])
            p = py["roi_rec_only"]
            row("python rapidocr ROI rec only ms", f(p["median"]), f(p["min"]), f(p["max"]),
                f"ours {f(er['median'])}", f"{er['median'] / p['median']:.2f} ours/py",
                "ours >=2x faster (<=0.5)", er["median"] <= 0.5 * p["median"])
    sink = d.get("sink")
    if sink:
        med = lambda v: sorted(v)[len(v) // 2] if v else None
        raw, sk, bt = sink["raw_fps"], sink["sink_fps"], sink["boto3_fps"]
        c = sink["concurrency"]
        row(f"raw aws-sdk-s3 frames/s ({c} in flight)", f(med(raw)), f(min(raw)), f(max(raw)))
        row("minioframesink frames/s", f(med(sk)), f(min(sk)), f(max(sk)),
            "raw", f"{max(sk) / max(raw) * 100:.0f}% of raw (best/best)", ">=90%",
            max(sk) >= 0.9 * max(raw))
        if bt:
            row(f"boto3 frames/s ({c} threads)", f(med(bt)), f(min(bt)), f(max(bt)),
                "minioframesink", f"sink {max(sk) / max(bt):.2f}x boto3")
    lat = d.get("latency")
    if lat:
        for key, label in (("polled", "polling only"), ("hinted", "with order-stored hint")):
            v = lat[key]
            row(f"order latency p50 ms, {label}", f(v["p50"], 0), f(v["min"], 0), f(v["max"], 0),
                "old system ~6000", f"{v['p50'] / 6000:.2f}x old", "p50<=500", v["p50"] <= 500)
            row(f"order latency p95 ms, {label}", f(v["p95"], 0), "", "", "", "", "p95<=1000",
                v["p95"] <= 1000)
        v = lat["recognize"]
        row("  of which labels OCR, 3 frames, p50 ms", f(v["p50"], 0), f(v["min"], 0), f(v["max"], 0))
        for key, label in (("discovery_polled", "polling only"), ("discovery_hinted", "hint")):
            v = lat[key]
            row(f"marker discovery p95 ms, {label}", f(v["p95"], 0), f(v["min"], 0), f(v["max"], 0),
                f"poll {lat['poll_ms']} ms", "", "p95<=500", v["p95"] <= 500)
        for v in lat.get("vlm", []):
            o, c = v["overhead"], v["client"]
            row(f"openai, server {v['server_ms']} ms: marker->result less server, p50/p95 ms",
                f"{o['p50']:.0f} / {o['p95']:.0f}", f(o["min"], 0), f(o["max"], 0),
                f"client's own {c['p50']:.0f} / {c['p95']:.0f}",
                f"{v['request_bytes'] / 1000:.0f} kB/request "
                f"({lat.get('vlm_unscaled_bytes', 0) / 1000:.0f} kB unscaled)",
                "p95<=250", o["p95"] <= 250)
        pp = lat["lists_per_poll"]
        row("S3 LIST requests per poll", " / ".join(f"{x['per_poll']:.2f}" for x in pp), "", "",
            "finished orders " + " / ".join(str(x["finished"]) for x in pp), "", "constant",
            max(x["per_poll"] for x in pp) - min(x["per_poll"] for x in pp) < 0.1)
    mem = d.get("memory")
    if mem:
        row("peak RSS station pipeline MiB (full-frame OCR)", str(mem["pipeline_mib"]), "", "",
            f"{mem['seconds']} s", "", "<=250 MB", mem["pipeline_mib"] * 1.048576 <= 250)
        row("peak RSS orchestrator, 8 stations MiB", str(mem["orchestrator_mib"]), "", "",
            f"{mem['orchestrator_stations']} pipelines up", "", "<=150 MB",
            mem["orchestrator_mib"] * 1.048576 <= 150)
        row("peak RSS station pipeline MiB (ROI OCR)", str(mem["station_roi_pipeline_mib"]), "", "",
            "largest of the 8", "", "<=250 MB", mem["station_roi_pipeline_mib"] * 1.048576 <= 250)
    for k in sorted(x for x in d if x.startswith("ort_det_peak_mib")):
        row("peak RSS, det model alone MiB, " + k[len("ort_det_peak_mib ") :], str(d[k]), "", "")
    dens_keys = sorted(k for k in d if k.startswith("density"))
    for key in dens_keys:
        dens = d[key]
        label = "station density" if key == "density" else "station density, " + key[len("density "):]
        for x in dens:
            row(f"{label}: {x['stations']} stations, frames/s per station",
                f(x["fps_median"], 2), f(x["fps_min"], 2), "",
                f"CPU {x['cpu_pct']:.0f}% of {x['cores']} cores",
                f"delay {x['delay_first_half_ms']:.0f}->{x['delay_second_half_ms']:.0f} ms, "
                + ("keeps up" if x["keeps_up"] else "falls behind"))
        kept = [x["stations"] for x in dens if x["keeps_up"]]
        row(f"{label}: most stations kept up", str(max(kept) if kept else 0), "", "",
            "", "", ">=16", bool(kept) and max(kept) >= 16)
        rss = max(x["rss_max_mib"] for x in dens)
        row(f"peak RSS station pipeline MiB (ROI OCR, {label})", f(rss, 0), "", "", "", "",
            "<=250 MB", rss * 1.048576 <= 250)
    if not dens_keys:
        row("station density", "not measured", "", "", "", "", ">=16")
    rl = d.get("reload")
    if rl:
        for key, label in (("add_in_force", "SIGHUP -> added station in force ms"),
                           ("add_first_frame", "SIGHUP -> added station's first frame ms"),
                           ("remove_in_force", "SIGHUP -> removed station gone ms")):
            x = rl[key]
            row(f"reload, {rl['stations']} stations running: {label}", str(x["p50_ms"]), "",
                str(x["p95_ms"]), "p95 in max column", "")
        row("reload: unchanged stations that kept their PID", f"{rl['pids_kept']}/{rl['stations']}",
            "", "", f"frames/s {rl['frames_per_s_min']:.2f} min", "", "all",
            rl["pids_kept"] == rl["stations"])

    head = ("what", "median", "min", "max", "compared with", "ratio", "target", "")
    w = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: " | ".join(str(c).ljust(w[i]) if i == 0 or i >= 4 else str(c).rjust(w[i])
                                for i, c in enumerate(r)).rstrip()
    print(line(head))
    print("-+-".join("-" * x for x in w))
    for r in rows:
        print(line(r))
    d["machine"] = d.get("machine", None)
    text = json.dumps(d, sort_keys=True)
    if out:
        with open(out, "w") as fh:
            fh.write(text + "\n")
    print("BENCH_JSON " + text)


if __name__ == "__main__":
    main()
