#!/usr/bin/env bash
# Regenerates BENCHMARKS.md's figures from `cargo bench`: each bench's
# output (markdown on its stdout) replaces the section of BENCHMARKS.md
# between `<!-- bench NAME -->` and `<!-- /bench NAME -->`, stamped with the
# date, the machine and the toolchain. A bench with no section yet gets one
# at the end of "Figures". Nothing outside the sections changes.
#
#   benches/regenerate.sh              every bench in Cargo.toml
#   benches/regenerate.sh trackref …   only these
#
# A bench that fails leaves its section as it was, and the script fails.
set -euo pipefail
cd "$(dirname "$0")/.."

doc=BENCHMARKS.md
mapfile -t all < <(awk '/^\[\[bench\]\]/ { b = 1; next }
    b && /^name *=/ { gsub(/^name *= *"|"$/, ""); print; b = 0 }' Cargo.toml)
if [ $# -gt 0 ]; then benches=("$@"); else benches=("${all[@]}"); fi
for b in "${benches[@]}"; do
    if ! printf '%s\n' "${all[@]}" | grep -qx -- "$b"; then
        echo "regenerate.sh: no bench named '$b' (Cargo.toml has: ${all[*]})" >&2
        exit 2
    fi
done

cpus=$(nproc)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
rustc=$(rustc --version | cut -d' ' -f2)
failed=()
for b in "${benches[@]}"; do
    out=$(mktemp)
    echo "regenerate.sh: cargo bench --bench $b" >&2
    if ! cargo bench -j2 --bench "$b" >"$out"; then
        echo "regenerate.sh: $b failed; its section is unchanged" >&2
        failed+=("$b")
        rm -f "$out"
        continue
    fi
    section=$(mktemp)
    {
        echo "<!-- bench $b -->"
        echo
        echo "\`cargo bench --bench $b\`, $(date -u +%F), $cpus CPUs ($cpu), rustc $rustc:"
        echo
        # The bench's own headings sit under this file's "Figures".
        sed -e 's/^# /### /' -e 's/^## /#### /' "$out"
        echo
        echo "<!-- /bench $b -->"
    } >"$section"
    rm -f "$out"
    next=$(mktemp)
    if grep -qx "<!-- bench $b -->" "$doc"; then
        awk -v begin="<!-- bench $b -->" -v end="<!-- /bench $b -->" -v file="$section" '
            $0 == begin { while ((getline line < file) > 0) print line; skip = 1; next }
            $0 == end { skip = 0; next }
            !skip { print }' "$doc" >"$next"
    else
        # Before the heading that follows "## Figures", or at the end.
        awk -v file="$section" '
            /^## / && in_figures && !done {
                while ((getline line < file) > 0) print line
                print ""; done = 1
            }
            /^## Figures$/ { in_figures = 1 }
            { print }
            END { if (!done) { print ""; while ((getline line < file) > 0) print line } }' \
            "$doc" >"$next"
    fi
    mv "$next" "$doc"
    rm -f "$section"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "regenerate.sh: failed: ${failed[*]}" >&2
    exit 1
fi
