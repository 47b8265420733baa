#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (built by `make fuzz-build` into $1): one
# per fuzz/fuzz_*.c.
#
#   fuzz.sh BUILD check          replay each target's committed corpus once
#                                (fuzz/corpus/<target>): no mutation, a
#                                regression check of every input kept there
#   fuzz.sh BUILD run SECONDS    fuzz each target for SECONDS, from a copy of
#                                its corpus in BUILD/corpus/<target>; inputs
#                                that fail land in BUILD/artifacts/
#
# Prints libFuzzer's progress, then one summary line per target; for a
# target that failed, the end of its log. Exits 1 if any target failed.
set -uo pipefail
cd "$(dirname "$0")/.."

build=$1
mode=$2
seconds=${3:-60}
targets=()
for src in fuzz/fuzz_*.c; do
    targets+=("$(basename "$src" .c)")
done
failed=0
summary=()
mkdir -p "$build/artifacts"

for t in "${targets[@]}"; do
    bin=$build/$t
    log=$build/$t.log
    if [ "$mode" = check ]; then
        echo "fuzz: $t: replaying fuzz/corpus/$t"
        "$bin" -runs=0 -artifact_prefix="$build/artifacts/$t-" "fuzz/corpus/$t" >"$log" 2>&1
        rc=$?
        inputs="$(find "fuzz/corpus/$t" -type f | wc -l) inputs replayed"
    else
        mkdir -p "$build/corpus/$t"
        cp -n "fuzz/corpus/$t"/* "$build/corpus/$t/" 2>/dev/null || true
        echo "fuzz: $t: ${seconds} s"
        # libFuzzer's status lines: "#<runs><TAB>pulse|NEW ..."; every 20th shown.
        "$bin" -max_total_time="$seconds" -print_final_stats=1 \
            -artifact_prefix="$build/artifacts/$t-" "$build/corpus/$t" 2>&1 |
            tee "$log" | grep -a --line-buffered -E '^#[0-9]+[[:space:]]+(pulse|NEW)' |
            awk '(NR % 20 == 1) { print; fflush() }'
        rc=${PIPESTATUS[0]}
        runs=$(grep -aoE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')
        inputs="${runs:-?} inputs run, corpus $(find "$build/corpus/$t" -type f | wc -l)"
    fi
    # A target keeping state in /dev/shm leaves it there when it dies.
    rm -rf /dev/shm/guild-fuzz-"${t#fuzz_}"-* 2>/dev/null
    if [ "$rc" -ne 0 ]; then
        failed=1
        summary+=("$t: FAILED (log $log, input in $build/artifacts/)")
        echo "---- the end of $log:"
        grep -av '"level":"warn"' "$log" | tail -n 40
        echo "----"
    else
        cov=$(grep -aoE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
        summary+=("$t: ok, $inputs, coverage ${cov:-?} edges")
    fi
done

echo
echo "fuzz summary ($mode):"
printf '  %s\n' "${summary[@]}"
exit $failed
