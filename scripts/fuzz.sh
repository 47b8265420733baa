#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (built by `make fuzz-build` into $1).
#
#   fuzz.sh BUILD check          replay each target's committed corpus once
#                                (fuzz/corpus/<target>): no mutation, a
#                                regression check of every input kept there
#   fuzz.sh BUILD run SECONDS    fuzz each target for SECONDS, from a copy of
#                                its corpus in BUILD/corpus/<target>; inputs
#                                that fail land in BUILD/artifacts/
#
# Prints libFuzzer's progress, then one summary line per target. Exits 1 if
# any target found a failing input.
set -uo pipefail
cd "$(dirname "$0")/.."

build=$1
mode=$2
seconds=${3:-60}
targets=(fuzz_codec fuzz_jwt fuzz_record fuzz_talent fuzz_identity fuzz_projector)
failed=0
summary=()

for t in "${targets[@]}"; do
    bin=$build/$t
    log=$build/$t.log
    mkdir -p "$build/artifacts"
    if [ "$mode" = check ]; then
        echo "fuzz: $t: replaying fuzz/corpus/$t"
        "$bin" -runs=0 -artifact_prefix="$build/artifacts/$t-" "fuzz/corpus/$t" >"$log" 2>&1
    else
        mkdir -p "$build/corpus/$t"
        cp -n "fuzz/corpus/$t"/* "$build/corpus/$t/" 2>/dev/null || true
        echo "fuzz: $t: ${seconds} s"
        "$bin" -max_total_time="$seconds" -print_final_stats=1 -print_pcs=0 \
            -artifact_prefix="$build/artifacts/$t-" "$build/corpus/$t" 2>&1 |
            tee "$log" | grep --line-buffered -E '^#[0-9]+ +(pulse|NEW)|ERROR|SUMMARY' |
            awk '(NR % 20 == 1 || /ERROR|SUMMARY/) { print; fflush() }'
    fi
    rc=${PIPESTATUS[0]}
    if grep -qE '^==[0-9]+==ERROR|runtime error|deadly signal|SUMMARY: ' "$log" || [ "$rc" -ne 0 ]; then
        failed=1
        summary+=("$t: FAILED (see $log and $build/artifacts/)")
    else
        runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
        cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)
        files=$(find "fuzz/corpus/$t" -type f | wc -l)
        [ "$mode" = run ] && files=$(find "$build/corpus/$t" -type f | wc -l)
        summary+=("$t: ok, ${runs:-$files} inputs run, coverage ${cov:-?} edges, corpus $files")
    fi
done

echo
echo "fuzz summary ($mode):"
printf '  %s\n' "${summary[@]}"
exit $failed
