#!/usr/bin/env bash
# Screenshots for docs/operate.md of a plan that is up under `carve up -d` with an [observe]
# listener: `carve top` in tmux (its pane captured with colours, rendered as HTML, screenshotted
# in headless Chromium) and the web dashboard.
#
#   scripts/operate-shots.sh PLAN [OUT_DIR]     (default OUT_DIR: docs/)
#   CARVE=target/release/carve                  the carve binary to run
set -euo pipefail
cd "$(dirname "$0")/.."
plan=${1:?usage: scripts/operate-shots.sh PLAN [OUT_DIR]}
out=${2:-docs}
carve=${CARVE:-target/release/carve}
addr=$(cat /run/carve/$plan/metrics.addr)
tmp=$(mktemp -d /tmp/carve-shots.XXXXXX)
session=carve-shots-$$
trap 'tmux kill-session -t $session 2>/dev/null || true; rm -rf $tmp' EXIT
chromium_shot() { # URL PNG WIDTH HEIGHT
  /usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
    --user-data-dir=$tmp/profile --window-size=$3,$4 --virtual-time-budget=${SHOT_WAIT_MS:-6000} \
    --screenshot="$2" "$1" 2>/dev/null
}

tmux new-session -d -s $session -x 150 -y 42 "$carve top --plan $plan"
sleep ${TOP_WAIT:-8}                      # a few samples, so the sparkline has a history
tmux capture-pane -e -p -t $session > $tmp/top.ansi
tmux send-keys -t $session q
python3 - $tmp/top.ansi $tmp/top.html <<'EOF'
import html, re, sys
# The 16 ANSI colours (xterm defaults) and 256-colour cube, for SGR 30-37/90-97/38;5;N.
base = ["#000000", "#cd0000", "#00cd00", "#cdcd00", "#0000ee", "#cd00cd", "#00cdcd", "#e5e5e5",
        "#7f7f7f", "#ff0000", "#00ff00", "#ffff00", "#5c5cff", "#ff00ff", "#00ffff", "#ffffff"]
def c256(n):
    if n < 16: return base[n]
    if n < 232:
        n -= 16; v = [0, 95, 135, 175, 215, 255]
        return "#%02x%02x%02x" % (v[n // 36], v[n // 6 % 6], v[n % 6])
    g = 8 + (n - 232) * 10; return "#%02x%02x%02x" % (g, g, g)
out, fg, bg, bold, rev = [], None, None, False, False
for part in re.split(r"(\x1b\[[0-9;]*m)", open(sys.argv[1], encoding="utf-8", errors="replace").read()):
    m = re.fullmatch(r"\x1b\[([0-9;]*)m", part)
    if not m:
        if part:
            f, b = (bg or "#1d1f21", fg or "#d0d0d0") if rev else (fg, bg)
            style = (f"color:{f};" if f else "") + (f"background:{b};" if b else "") + ("font-weight:bold;" if bold else "")
            out.append(f'<span style="{style}">{html.escape(part)}</span>' if style else html.escape(part))
        continue
    codes = [int(x) if x else 0 for x in m.group(1).split(";")]
    i = 0
    while i < len(codes):
        c = codes[i]
        if c == 0: fg, bg, bold, rev = None, None, False, False
        elif c == 1: bold = True
        elif c == 7: rev = True
        elif c == 22: bold = False
        elif c == 27: rev = False
        elif 30 <= c <= 37: fg = base[c - 30]
        elif 90 <= c <= 97: fg = base[c - 82]
        elif 40 <= c <= 47: bg = base[c - 40]
        elif c == 39: fg = None
        elif c == 49: bg = None
        elif c in (38, 48) and i + 2 < len(codes) and codes[i + 1] == 5:
            if c == 38: fg = c256(codes[i + 2])
            else: bg = c256(codes[i + 2])
            i += 2
        i += 1
open(sys.argv[2], "w").write(
    '<!doctype html><meta charset="utf-8"><body style="margin:0;background:#1d1f21">'
    '<pre style="margin:8px;font:14px/1.2 \'DejaVu Sans Mono\',monospace;color:#d0d0d0">'
    + "".join(out) + "</pre>")
EOF
chromium_shot file://$tmp/top.html $out/operate-top.png 1120 700
chromium_shot http://$addr/ $out/operate-dashboard.png 1300 1050
ls -l $out/operate-top.png $out/operate-dashboard.png
