"""The issue #6 targets, one function each; every ratio is measured side by side in one loop."""

from __future__ import annotations

import floors
import stages
from report import FAIL, MISSING, PASS, SKIP, target
from timing import time_side_by_side

__all__ = ["whole_layer", "mac_stage", "haar_topk", "cost_model", "summarize"]


def _kept(n_pos: int, rate: float) -> int:
    return max(1, int(rate * n_pos))


def _padded_positions(h: int, w: int, stride: int, levels: int) -> int:
    h, w = (h - 1) // stride + 1, (w - 1) // stride + 1
    m = 1 << levels
    return (h + (-h % m)) * (w + (-w % m))


def whole_layer(src: dict, rates: list[float], levels: int, repeats: int, torch) -> tuple[dict, list]:
    """Target 1: the bit-accurate datapath of a layer vs the PyTorch float WCC pipeline, per layer and rate."""
    name = "whole bit-accurate layer / torch float WCC (total)"
    if torch is None:
        return target("1", name, None, 1.0, "x", status=SKIP,
                      note="torch not installed: comparison skipped (pip install torch)"), []
    from float_wcc_torch import float_wcc
    rows, sim_total, torch_total = [], 0.0, 0.0
    for layer in src["iter"]():
        tx, tw = torch.from_numpy(layer.x), torch.from_numpy(layer.w)
        tb = None if layer.b is None else torch.from_numpy(layer.b)
        for rate in rates:
            fns = {"torch_float_wcc": lambda: float_wcc(tx, tw, tb, rate, levels, layer.stride)}
            sim = stages.datapath_call(layer, rate)
            if sim["call"] is not None:
                fns["sim_datapath"] = sim["call"]
            t = time_side_by_side(fns, repeats)
            row = {"layer": layer.name, "rate": rate, "shape": list(layer.x.shape), "cout": int(layer.w.shape[0]),
                   "stride": layer.stride, "torch_s": t["torch_float_wcc"], "sim_how": sim["how"]}
            if "sim_datapath" in t:
                row["sim_s"] = t["sim_datapath"]
                row["ratio_min"] = t["sim_datapath"]["min_s"] / t["torch_float_wcc"]["min_s"]
                row["ratio_median"] = t["sim_datapath"]["median_s"] / t["torch_float_wcc"]["median_s"]
                sim_total += t["sim_datapath"]["min_s"]
                torch_total += t["torch_float_wcc"]["min_s"]
            rows.append(row)
    if not rows or "sim_s" not in rows[0]:
        return target("1", name, None, 1.0, "x", status=MISSING, note=rows[0]["sim_how"] if rows else "no layers"), rows
    mismatched = sorted({r["layer"] for r in rows if "MISMATCH" in r["sim_how"]})
    ratio = sim_total / torch_total
    worst = max(rows, key=lambda r: r["ratio_min"])
    if ratio > 1.0:  # a miss: profile the integer stages of the worst layer
        layer = next(l for l in src["iter"]() if l.name == worst["layer"])
        worst["stage_profile_s"] = stages.stage_profile(layer, worst["rate"])
    return target("1", name, ratio, 1.0, "x",
                  note=f"sum {sim_total * 1e3:.1f} ms vs {torch_total * 1e3:.1f} ms; worst layer {worst['layer']} "
                       f"r={worst['rate']} {worst['ratio_min']:.2f}x; {rows[0]['sim_how']}"
                       + (f"; OUTPUT MISMATCH vs simulate_layer on {mismatched}" if mismatched else ""),
                  details={"sim_total_s": sim_total, "torch_total_s": torch_total}), rows


def mac_stage(src: dict, rates: list[float], levels: int, repeats: int) -> tuple[dict, list]:
    """Target 2: ``mac_array`` on int8 operands vs float32 BLAS matmul of the same (Cout x Cin) x (Cin x k)."""
    name = "MAC stage / float32 BLAS matmul (total)"
    mac = stages.mac_call
    rows, mac_total, blas_total = [], 0.0, 0.0
    for layer in src["iter"]():
        n, cin, h, w = layer.x.shape
        cout = layer.w.shape[0]
        for rate in rates:
            k = _kept(_padded_positions(h, w, layer.stride, levels), rate)
            call, how = mac(cout, cin, n, k)
            if call is None:
                return target("2", name, None, 1.5, "x", status=MISSING, note=how), rows
            t = time_side_by_side({"mac": call, "sgemm": floors.sgemm_call(cout, cin, n * k)}, repeats)
            rows.append({"layer": layer.name, "rate": rate, "cout": cout, "cin": cin, "k": n * k,
                         "mac_s": t["mac"], "sgemm_s": t["sgemm"],
                         "ratio_min": t["mac"]["min_s"] / t["sgemm"]["min_s"]})
            mac_total += t["mac"]["min_s"]
            blas_total += t["sgemm"]["min_s"]
    worst = max(rows, key=lambda r: r["ratio_min"])
    if mac_total > 1.5 * blas_total:  # a miss: profile the worst layer
        layer = next(l for l in src["iter"]() if l.name == worst["layer"])
        worst["profile_s"] = stages.unit_profile("mac", layer, worst["rate"])
    return target("2", name, mac_total / blas_total, 1.5, "x",
                  note=f"sum {mac_total * 1e3:.2f} ms vs {blas_total * 1e3:.2f} ms; worst {worst['layer']} "
                       f"r={worst['rate']} {worst['ratio_min']:.2f}x; {how}",
                  details={"mac_total_s": mac_total, "sgemm_total_s": blas_total}), rows


def haar_topk(src: dict, rates: list[float], repeats: int, bandwidth: dict) -> tuple[list, list]:
    """Target 3: Haar forward+inverse, and top-k, each vs one numpy copy pass over the same bytes."""
    rows, totals = [], {"haar": [0.0, 0.0], "topk": [0.0, 0.0]}
    notes = {}
    for layer in src["iter"]():
        for rate in rates:
            for unit in ("haar", "topk"):
                st = stages.unit_call(unit, layer, rate)
                notes[unit] = st["how"]
                if st["call"] is None:
                    continue
                t = time_side_by_side({unit: st["call"], "copy": floors.copy_call(st["bytes"])}, repeats)
                rows.append({"layer": layer.name, "rate": rate, "unit": unit, "bytes": st["bytes"],
                             "unit_s": t[unit], "copy_s": t["copy"],
                             "ratio_min": t[unit]["min_s"] / t["copy"]["min_s"]})
                totals[unit][0] += t[unit]["min_s"]
                totals[unit][1] += t["copy"]["min_s"]
    bw = f"copy bandwidth {bandwidth['gb_per_s_best']:.1f} GB/s (large buffer)"
    out = []
    for tid, unit, label in (("3a", "haar", "Haar fwd+inv"), ("3b", "topk", "top-k")):
        unit_s, copy_s = totals[unit]
        if copy_s == 0.0:
            out.append(target(tid, f"{label} / numpy copy of same bytes (total)", None, 2.0, "x",
                              status=MISSING, note=notes.get(unit, "")))
            continue
        mine = [r for r in rows if r["unit"] == unit]
        worst = max(mine, key=lambda r: r["ratio_min"])
        if unit_s > 2.0 * copy_s:  # a miss: profile the worst layer
            layer = next(l for l in src["iter"]() if l.name == worst["layer"])
            worst["profile_s"] = stages.unit_profile(unit, layer, worst["rate"])
        out.append(target(tid, f"{label} / numpy copy of same bytes (total)", unit_s / copy_s, 2.0, "x",
                          note=f"sum {unit_s * 1e3:.2f} ms vs {copy_s * 1e3:.2f} ms; worst {worst['layer']} "
                               f"r={worst['rate']} {worst['ratio_min']:.2f}x; {bw}; {notes[unit]}",
                          details={"unit_total_s": unit_s, "copy_total_s": copy_s}))
    return out, rows


def cost_model(src: dict, rates: list[float], repeats: int) -> tuple[dict, list]:
    """Target 4: ``wccsim.cost`` layer cost, seconds per layer (worst layer), limit 1 ms."""
    name = "cost model time per layer (worst layer)"
    rows = []
    for layer in src["iter"]():
        for rate in rates:
            st = stages.cost_call(layer, rate)
            if st["call"] is None:
                return target("4", name, None, 1.0, "ms", status=MISSING, note=st["how"]), rows
            t = time_side_by_side({"cost": st["call"]}, repeats)["cost"]
            rows.append({"layer": layer.name, "rate": rate, "cost_s": t})
    worst = max(rows, key=lambda r: r["cost_s"]["min_s"])
    return target("4", name, worst["cost_s"]["min_s"] * 1e3, 1.0, "ms",
                  note=f"worst {worst['layer']} r={worst['rate']}, median "
                       f"{worst['cost_s']['median_s'] * 1e3:.3f} ms; {st['how']}"), rows


def summarize(rows: list[dict]) -> str:
    """One word: PASS when all measured targets pass, else FAIL (MISSING/SKIP do not count)."""
    return FAIL if any(r["status"] == FAIL for r in rows) else PASS

