#!/bin/bash
# Time every step of `make demo` alone (from `make -n demo`, after `make clean-demo`), then the whole
# `make clean-demo && make demo`; prints the load average before and after (docs/performance.md, "make demo").
cd "$(dirname "$0")/.."
cmds=$(mktemp); err=$(mktemp); trap 'rm -f "$cmds" "$err"' EXIT
make clean-demo >/dev/null
make -n demo | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' | grep "bmbench " > "$cmds"
echo "load at start: $(uptime)"
total=0
while read -r line; do
  s=$(date +%s.%N); eval "$line" >/dev/null 2>&1; rc=$?; e=$(date +%s.%N)
  d=$(awk "BEGIN {print $e - $s}"); total=$(awk "BEGIN {print $total + $d}")
  printf "%6.1f s rc=%d %s\n" $d $rc "$(echo $line | sed 's/  */ /g' | cut -c1-120)"
done < "$cmds"
echo "steps total: $total s; load at end: $(uptime)"
make clean-demo >/dev/null
/usr/bin/time -f "time make demo: %e s wall, %U s user, %S s sys" make demo >/dev/null 2>"$err"; tail -1 "$err"
echo "load at end: $(uptime)"
