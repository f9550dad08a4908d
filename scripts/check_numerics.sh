#!/usr/bin/env bash
# Runs the tests whose results depend on CPU kernels (`-m numerics`) as other x86 machines would compute them:
# torch's ATen capability default | avx2 | avx512 (where the CPU has AVX-512), the matching oneDNN ISA cap, and
# 1 and 2 threads. Prints one line per setting (passed / failed / seconds) and writes them to
# ${NUMERICS_REPORT:-numerics-report.jsonl}. Extra arguments go to pytest (e.g. -k first_stage).
#
#   scripts/check_numerics.sh                 # all settings
#   SETTINGS="avx2:1 default:2" scripts/check_numerics.sh
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
PY=.venv/bin/python
REPORT=${NUMERICS_REPORT:-numerics-report.jsonl}
if [ -z "${SETTINGS:-}" ]; then
  SETTINGS="default:1 default:2 avx2:1 avx2:2"
  grep -qw avx512f /proc/cpuinfo && SETTINGS="$SETTINGS avx512:1 avx512:2"
fi
declare -A ONEDNN=([default]=SSE41 [avx2]=AVX2 [avx512]=AVX512_CORE)
: > "$REPORT"
status=0
for s in $SETTINGS; do
  cap=${s%%:*}; threads=${s##*:}
  log=$(mktemp)
  start=$(date +%s)
  # one thread per test: as many xdist workers as cores; more threads per test: one test at a time
  parallel=()
  cores=$(nproc)
  [ "$threads" -eq 1 ] && [ "$cores" -gt 1 ] && parallel=(-n "$cores" --dist loadfile)
  ATEN_CPU_CAPABILITY=$cap ONEDNN_MAX_CPU_ISA=${ONEDNN[$cap]} OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads \
    OPENBLAS_NUM_THREADS=$threads "$PY" -m pytest -q -p no:cacheprovider -m numerics "${parallel[@]}" "$@" \
    >"$log" 2>&1
  rc=$?
  seconds=$(( $(date +%s) - start ))
  summary=$(grep -E '(passed|failed|error)' "$log" | tail -1 | tr -d '=' | xargs)
  line="{\"capability\": \"$cap\", \"threads\": $threads, \"exit\": $rc, \"seconds\": $seconds, \"summary\": \"$summary\"}"
  echo "$line" | tee -a "$REPORT"
  if [ $rc -ne 0 ]; then
    status=1
    grep -E '^(FAILED|ERROR)' "$log" | head -20
  fi
  rm -f "$log"
done
exit $status
