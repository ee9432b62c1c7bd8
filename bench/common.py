"""Shared helpers for the benchmarks: CPU peak, timing, table printing, JSON output."""

from __future__ import annotations

import json
import os
import platform
import re
import time


def cpu_peak_gflops():
    """fp32 peak = cores x clock x FLOPs per cycle (vector width x 2 FMA units x 2 per FMA).

    Returns (peak, description). AVX-512: 16 lanes, AVX2: 8 lanes; two FMA pipes assumed.
    """
    cores = os.cpu_count() or 1
    clock_ghz, flags = None, ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            text = cpuinfo.read()
        match = re.search(r"cpu MHz\s*:\s*([\d.]+)", text)
        clock_ghz = float(match.group(1)) / 1000 if match else None
        match = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
        flags = match.group(1) if match else ""
    except OSError:
        pass
    lanes = 16 if " avx512f" in flags else 8 if " avx2" in flags else 4
    fma = 2 if " fma" in flags or lanes == 16 else 1
    flops_per_cycle = lanes * 2 * fma  # two FMA pipes, an FMA is 2 FLOPs
    if clock_ghz is None:
        return None, "clock unknown"
    peak = cores * clock_ghz * flops_per_cycle
    return peak, (f"{cores} cores x {clock_ghz:.2f} GHz x {flops_per_cycle} FLOP/cycle "
                  f"({lanes}-lane fp32 vectors, {fma}x2 FLOP FMA)")


def machine():
    peak, description = cpu_peak_gflops()
    return {"platform": platform.platform(), "cpus": os.cpu_count(),
            "fp32_peak_gflops": peak, "peak_formula": description}


def timed(function, repeats, warmup=1):
    """Median wall time (s) of `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def print_table(rows, columns):
    widths = [max(len(str(column)), *(len(_format(row.get(column))) for row in rows))
              for column in columns]
    print("  ".join(str(column).ljust(width) for column, width in zip(columns, widths)))
    for row in rows:
        print("  ".join(_format(row.get(column)).ljust(width)
                        for column, width in zip(columns, widths)))


def _format(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def write_json(path, payload):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(payload, handle, indent=2)
    print(f"wrote {path}")
