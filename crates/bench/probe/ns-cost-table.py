"""ns-cost-table.py OUT: per condition, the median over runs of ns-cost's figures and the ratio
to the native runs of the same file (ns-cost.sh alternates them)."""
import collections
import statistics as st
import sys

d = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 12:
        continue
    kv = dict(zip(f[1::2], f[2::2]))
    for k in ("getppid", "gmed", "ctx", "cmed"):
        d[f[0]][k].append(float(kv[k]))
    d[f[0]]["cpu"].append(kv["cpu"])
    d[f[0]]["status"].append(" ".join(f[11:]).strip("|"))
nat = {k: st.median(v) for k, v in d["native"].items() if k not in ("cpu", "status")}
print("| condition | runs | getppid p10 ns | × | getppid median ns | × | ctx p10 ns | × | ctx median ns | × | CPU | NoNewPrivs, SSB, indirect branch |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for name in sorted(d, key=lambda x: (x != "native", x)):
    m = {k: st.median(v) for k, v in d[name].items() if k not in ("cpu", "status")}
    cells = " | ".join(f"{m[k]:.1f} | {m[k] / nat[k]:.3f}" for k in ("getppid", "gmed", "ctx", "cmed"))
    print(f"| {name} | {len(d[name]['getppid'])} | {cells} | {','.join(sorted(set(d[name]['cpu'])))} | {' / '.join(sorted(set(d[name]['status'])))} |")
