"""``wccsim cost``: per-layer and total cost of a shape-only workload on a hardware config (no trace)."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io

from wccsim import api
from wccsim.commands._args import bits, fraction, rate
from wccsim.errors import InputError

__all__ = ["register", "cost_table", "saving_table"]

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
    p.add_argument("--rate", type=rate, help="WCC kept fraction in (0, 1] (required unless --saving)")
    p.add_argument("--saving", type=_rates, metavar="R1,R2,...",
                   help="instead of the per-layer table: WCC's DRAM reads and writes against int8 at these "
                        "rates, for both placements and both top-k designs (exact, tiled)")
    p.add_argument("--scheme", default="wcc", choices=[s.value for s in api.Scheme])
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
    if args.rate is None:
        raise InputError("wccsim cost", "--rate", "a rate in (0, 1] (or --saving RATES)", "nothing")
    if args.scheme == "zvc" and args.nonzero_fraction is None:
        raise InputError("wccsim cost", "--nonzero-fraction", "a measured fraction for --scheme zvc", "nothing")
    costs = api.workload_cost(wl, hw, args.scheme, args.rate, act_bits, weight_bits, args.nonzero_fraction)
    print(f"# {wl.network} {wl.input_hw[0]}x{wl.input_hw[1]} on {hw.name}: scheme {args.scheme}, rate "
          f"{args.rate:g}, W{costs[0].weight_bits}/A{costs[0].act_bits}, {hw.datapath.mac.rows}x"
          f"{hw.datapath.mac.cols} {hw.datapath.mac.dataflow.value}, {hw.clock_mhz:g} MHz")
    print(cost_table(costs))
    if args.csv:
        api.write_text(args.csv, _csv(costs))
        print(f"wrote {args.csv}")
    return 0


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
