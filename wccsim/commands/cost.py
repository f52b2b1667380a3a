"""``wccsim cost``: per-layer and total cost of a shape-only workload on a hardware config (no trace)."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io

from wccsim import api
from wccsim.commands._args import bits, fraction, rate
from wccsim.errors import InputError

__all__ = ["register", "cost_table", "schemes_table", "saving_table"]

# (header with unit, LayerCost field or total key, scale, format)
_COLUMNS = (
    ("MACs[M]", "macs", 1e-6, "{:.2f}"),
    ("BOPs[G]", "bops", 1e-9, "{:.3f}"),
    ("BOPs_hw[G]", "bops_hw", 1e-9, "{:.3f}"),
    ("DRAM_rd[KB]", "dram_read_bytes", 1 / 1024, "{:.1f}"),
    ("DRAM_wr[KB]", "dram_write_bytes", 1 / 1024, "{:.1f}"),
    ("bitmap[B]", "bitmap_bytes", 1, "{:.0f}"),
    ("spill", "topk_spill", 1, "{:.0f}"),
    ("SRAM_rd[KB]", "sram_read_bytes", 1 / 1024, "{:.1f}"),
    ("SRAM_wr[KB]", "sram_write_bytes", 1 / 1024, "{:.1f}"),
    ("cycles[k]", "cycles", 1e-3, "{:.1f}"),
    ("mac_cyc[k]", "compute_cycles", 1e-3, "{:.1f}"),
    ("dram_cyc[k]", "memory_cycles", 1e-3, "{:.1f}"),
    ("energy[uJ]", "energy_pj", 1e-6, "{:.2f}"),
)


def register(subparsers) -> None:
    p = subparsers.add_parser("cost", help="cost model of a shape-only workload (BOPs, traffic, cycles, energy)",
                              description="per-layer and total cost of a workload CSV on a hardware YAML, "
                                          "from shapes alone (no trace)")
    p.add_argument("--hw", required=True, metavar="HW.yaml", help="hardware config (hw_configs/*.yaml)")
    p.add_argument("--workload", required=True, metavar="W.csv", help="workload CSV (workloads/*.csv)")
    p.add_argument("--input", metavar="HxW", help="rescale the workload to this input size")
    p.add_argument("--rate", default=0.5, type=rate,
                   help="WCC kept fraction in (0, 1], also sets uniform_nbit's bits (default 0.5; int8 ignores it)")
    p.add_argument("--saving", type=_rates, metavar="R1,R2,...",
                   help="instead of the per-layer table: WCC's DRAM reads and writes against int8 at these "
                        "rates, for both placements and both top-k designs (exact, tiled)")
    p.add_argument("--scheme", default="wcc", choices=[s.value for s in api.Scheme],
                   help="scheme of the per-layer table (default wcc); the totals show every scheme")
    p.add_argument("--act-bits", type=bits, help="activation bits (default: the hw quant.act_bits)")
    p.add_argument("--weight-bits", type=bits, help="weight bits (default: the hw quant.weight_bits)")
    p.add_argument("--nonzero-fraction", type=fraction, help="measured non-zero fraction (scheme zvc)")
    p.add_argument("--csv", metavar="OUT.csv", help="also write every LayerCost field per layer as CSV")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    hw = api.load_hw(args.hw)
    wl = api.load_workload(args.workload)
    if args.input:
        wl = api.rescale_workload(wl, api.parse_input_size("wccsim cost", "--input", args.input))
    q = hw.datapath.quant
    act_bits, weight_bits = args.act_bits or q.act_bits, args.weight_bits or q.weight_bits
    if args.saving:
        print(f"# {wl.network} {wl.input_hw[0]}x{wl.input_hw[1]} on {hw.name}: DRAM of WCC vs int8, "
              f"W{weight_bits}/A{act_bits}")
        print(saving_table(api.dram_saving(wl, hw, args.saving, act_bits, weight_bits)))
        return 0
    if args.scheme == "zvc" and args.nonzero_fraction is None:
        raise InputError("wccsim cost", "--nonzero-fraction", "a measured fraction for --scheme zvc", "nothing")
    costs = api.workload_cost(wl, hw, args.scheme, args.rate, act_bits, weight_bits, args.nonzero_fraction)
    print(f"# {wl.network} {wl.input_hw[0]}x{wl.input_hw[1]} on {hw.name}: scheme {args.scheme}, rate "
          f"{args.rate:g}, W{costs[0].weight_bits}/A{costs[0].act_bits}, {hw.datapath.mac.rows}x"
          f"{hw.datapath.mac.cols} {hw.datapath.mac.dataflow.value}, {hw.clock_mhz:g} MHz")
    print(cost_table(costs))
    print(f"\n{schemes_table(wl, hw, args, act_bits, weight_bits)}")
    if args.csv:
        api.write_text(args.csv, _csv(costs))
        print(f"wrote {args.csv}")
    return 0


def schemes_table(wl, hw, args: argparse.Namespace, act_bits: int, weight_bits: int) -> str:
    """Network totals of every scheme side by side, in units, with the savings vs int8 on the same hardware
    (`wccsim.results.savings`: 100 x (1 - scheme / int8), DRAM = reads + writes). ZVC needs a measured
    non-zero fraction; without ``--nonzero-fraction`` its row is left out and the table says so."""
    import pandas as pd

    a, w = act_bits, weight_bits
    schemes = [s.value for s in api.Scheme if s.value != "zvc" or args.nonzero_fraction is not None]
    rows = [{"hw": hw.name, "scheme": s, **api.total_cost(api.workload_cost(wl, hw, s, args.rate, 8 if s == "int8"
                                                                                    else a, 8 if s == "int8" else w,
                                                                                    args.nonzero_fraction))}
            for s in schemes]
    t = api.savings(pd.DataFrame(rows), inputs=False)
    table = pd.DataFrame({
        "scheme": t.scheme, "GBOPs": (t.bops / 1e9).round(3), "DRAM_rd_MB": (t.dram_read_bytes / 1e6).round(3),
        "DRAM_wr_MB": (t.dram_write_bytes / 1e6).round(3), "DRAM_rd+wr_MB": (t.dram_bytes / 1e6).round(3),
        "Mcycles": (t.cycles / 1e6).round(3), "energy_uJ": (t.energy_total_pj / 1e6).round(2),
        "DRAM_saved_%": t.dram_saving_pct.round(1), "energy_saved_%": t.energy_saving_pct.round(1),
        "cycles_saved_%": t.cycle_saving_pct.round(1), "BOPs_saved_%": t.bops_saving_pct.round(1)})
    note = "" if args.nonzero_fraction is not None else "\n(zvc: give --nonzero-fraction, a measured fraction)"
    return (f"every scheme (network totals; int8 at 8/8 bits, wcc at rate {args.rate:g}, uniform_nbit at the same "
            f"stored bits; savings vs int8):\n{table.to_string(index=False)}{note}")


def cost_table(costs: list) -> str:
    """Fixed-width text table: one row per layer (units in the headers), then the total."""
    head = ["layer"] + [c[0] for c in _COLUMNS] + ["bound", "tiling"]
    rows = [[c.name] + [fmt.format(getattr(c, f) * sc) for _, f, sc, fmt in _COLUMNS] + [c.bound, c.tiling]
            for c in costs]
    tot = api.total_cost(costs)
    rows.append(["TOTAL"] + [fmt.format(tot[f] * sc) for _, f, sc, fmt in _COLUMNS]
                + [f"{tot['memory_bound_layers']}/{tot['layers']} mem", ""])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head) - 1)]
    lines = []
    for r in [head] + rows:
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, len(widths))] + [r[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _rates(text: str) -> tuple[float, ...]:
    return tuple(rate(t) for t in text.split(","))


def saving_table(rows: list) -> str:
    """One line per (placement, top-k mode, rate): WCC and int8 DRAM reads and writes in MB (1e6 bytes),
    the saving of each (negative: WCC moves more) and the layers whose selection spills."""
    head = (f"{'placement':<18} {'topk':<6} {'rate':>6} {'rd_MB':>9} {'int8_rd_MB':>10} {'rd_saving':>9} "
            f"{'wr_MB':>9} {'int8_wr_MB':>10} {'wr_saving':>9} {'spilling':>8}")
    lines = [head]
    for r in rows:
        lines.append(f"{r.placement:<18} {r.topk_mode:<6} {r.rate:>6g} {r.read_bytes / 1e6:>9.1f} "
                     f"{r.int8_read_bytes / 1e6:>10.1f} {r.read_saving:>9.1%} {r.write_bytes / 1e6:>9.1f} "
                     f"{r.int8_write_bytes / 1e6:>10.1f} {r.write_saving:>9.1%} {r.spill_layers:>8d}")
    return "\n".join(lines)


def _csv(costs: list) -> str:
    out = io.StringIO()
    names = [f.name for f in dataclasses.fields(api.LayerCost)]
    w = csv.writer(out, lineterminator="\n")
    w.writerow(names)
    for c in costs:
        w.writerow([getattr(c, n) for n in names])
    return out.getvalue()
