"""Shared reporting for the bench/ scripts: one row format, one table, one chart.

Each bench/<tool> script measures with hyperfine (JSON export) and then, in Python:

    from report import Report
    r = Report("zwrite", work_dir)
    r.time("512 MiB stdin", "big.json", "zwrite", "sponge", target=0.55)
    r.rss("512 MiB peak RSS", kib=2300, anchor="sponge", anchor_kib=525000, limit_mib=16)
    r.write()      # prints the markdown table, writes bench/results/<tool>.{md,json}

A time row with `target=None` is a reference shown for scale, and an RSS row without
`limit_mib` is reported only; neither is judged met or not, nor drawn in the chart.

`python3 bench/report.py summary` gathers every bench/results/*.json into
bench/results/summary.md and bench/results/ratios.svg (ratio against target, per row).
"""

import html
import json
import os
import platform
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine():
    """The machine the rows were taken on."""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs, {mem:.0f} GiB, Linux {platform.release()}"


def load():
    """How busy the machine was when the rows were taken (other work skews medians)."""
    return " ".join(open("/proc/loadavg").read().split()[:3])


class Report:
    def __init__(self, tool, work):
        self.tool, self.work, self.rows, self.notes = tool, Path(work), [], []

    def _runs(self, export):
        data = json.load(open(self.work / export))["results"]
        return {r["command"]: r["times"] for r in data}

    def time(self, workload, export, zkit, anchor, target, anchor_export=None):
        """A ratio row: median time of `zkit` over median time of `anchor` (hyperfine names)."""
        runs = self._runs(export)
        other = self._runs(anchor_export) if anchor_export else runs
        z, a = runs[zkit], other[anchor]
        self.rows.append({
            "tool": self.tool, "workload": workload, "kind": "time",
            "zkit": statistics.median(z), "zkit_sd": statistics.pstdev(z),
            "anchor": anchor, "anchor_value": statistics.median(a), "anchor_sd": statistics.pstdev(a),
            "ratio": statistics.median(z) / statistics.median(a), "target": target,
        })

    def rss(self, workload, kib, anchor, anchor_kib, limit_mib=None):
        """A memory row: peak RSS against an absolute limit (the anchor is shown for scale)."""
        self.rows.append({
            "tool": self.tool, "workload": workload, "kind": "rss",
            "zkit": kib / 1024, "anchor": anchor, "anchor_value": anchor_kib / 1024,
            "limit_mib": limit_mib,
        })

    def note(self, text):
        """A paragraph under the table: how the rows were taken. Kept in the json with them,
        so `summary` renders it again."""
        self.notes.append(text.strip())

    def write(self):
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{self.tool}.json").write_text(json.dumps(
            {"machine": machine(), "load": load(), "rows": self.rows, "notes": self.notes},
            indent=1))
        print(render(self.tool, machine(), load(), self.rows, self.notes))


def render(tool, machine_line, load_line, rows, notes=()):
    """bench/results/<tool>.md from the rows and notes; returns its text."""
    text = (f"# {tool}\n\n{machine_line}, load average {load_line} at the end; "
            "medians of repeated runs, same run for every column\n\n")
    text += table(rows)
    text += "".join(f"\n{n}\n" for n in notes)
    (RESULTS / f"{tool}.md").write_text(text)
    return text


def judged(row):
    return row.get("limit_mib" if row["kind"] == "rss" else "target") is not None


def met(row):
    if row["kind"] == "rss":
        return row["zkit"] < row["limit_mib"]
    return row["ratio"] <= row["target"]


def verdict(row):
    if not judged(row):
        return ""
    return "yes" if met(row) else "**no**"


def fmt_time(s, sd=None):
    v = f"{s*1000:.1f} ms" if s < 10 else f"{s:.2f} s"
    return v if sd is None else f"{v} ± {sd*1000:.0f}"


def cell(text):
    """Markdown table cell: a `|` in a workload (a shell pipe) would end the cell."""
    return str(text).replace("|", "\\|")


def table(rows):
    out = "| tool | workload | zkit | anchor | anchor median | ratio | target | met |\n"
    out += "|---|---|---|---|---|---|---|---|\n"
    for r in rows:
        if r["kind"] == "rss":
            target = f"< {r['limit_mib']} MiB" if judged(r) else "(reported)"
            out += (f"| {r['tool']} | {cell(r['workload'])} | {r['zkit']:.1f} MiB | {cell(r['anchor'])} | "
                    f"{r['anchor_value']:.1f} MiB | {r['zkit'] / r['anchor_value']:.2f}x | {target} | "
                    f"{verdict(r)} |\n")
        else:
            target = f"<= {r['target']}x" if judged(r) else "(for scale)"
            out += (f"| {r['tool']} | {cell(r['workload'])} | {fmt_time(r['zkit'], r['zkit_sd'])} | "
                    f"{cell(r['anchor'])} | {fmt_time(r['anchor_value'], r['anchor_sd'])} | "
                    f"{r['ratio']:.2f}x | {target} | {verdict(r)} |\n")
    return out


def chart(rows, path):
    """Horizontal bars: each time row's ratio divided by its target (1.0 = exactly on target)."""
    rows = [r for r in rows if r["kind"] == "time" and judged(r)]
    h, w, left, bar = 28, 760, 330, 360
    scale = bar / max(2.0, max((r["ratio"] / r["target"] for r in rows), default=1))
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h*len(rows)+60}" '
           'font-family="sans-serif" font-size="12">',
           '<text x="10" y="18" font-weight="bold">ratio / target (left of the line: target met)</text>']
    x1 = left + scale
    for i, r in enumerate(rows):
        y, q = 34 + i * h, r["ratio"] / r["target"]
        colour = "#3a7d44" if q <= 1 else "#c0392b"
        label = html.escape(f'{r["tool"]}: {r["workload"]} vs {r["anchor"]}')
        svg.append(f'<text x="10" y="{y+14}">{label}</text>')
        svg.append(f'<rect x="{left}" y="{y}" width="{q*scale:.1f}" height="{h-8}" fill="{colour}"/>')
        svg.append(f'<text x="{left + q*scale + 4:.1f}" y="{y+14}">{r["ratio"]:.2f}x (target {r["target"]}x)</text>')
    svg.append(f'<line x1="{x1}" x2="{x1}" y1="28" y2="{h*len(rows)+40}" stroke="black" stroke-dasharray="4"/>')
    svg.append("</svg>")
    Path(path).write_text("\n".join(svg) + "\n")


def summary():
    rows, machines, loads = [], set(), []
    for f in sorted(RESULTS.glob("*.json")):
        data = json.load(open(f))
        render(f.stem, data["machine"], data["load"], data["rows"], data.get("notes", []))
        rows += data["rows"]
        machines.add(data["machine"])
        loads.append(f"{f.stem} {data['load']}")
    text = (f"# zkit benchmarks\n\n{'; '.join(sorted(machines))}; load average (1, 5, 15 min) "
            f"at the end of each script: {', '.join(loads)}\n\n" + table(rows))
    text += "\n![ratios against targets](ratios.svg)\n"
    (RESULTS / "summary.md").write_text(text)
    chart(rows, RESULTS / "ratios.svg")
    print(text)


if __name__ == "__main__" and sys.argv[1:] == ["summary"]:
    summary()
