#!/usr/bin/env bash
# The GPU session's one prepared check, under 5 minutes, on a bare machine that cannot
# reach any package registry and whose Python brings its own torch and scikit-learn:
#
#   1. print the Python, torch, CUDA, scikit-learn ... versions;
#   2. install what is missing or too old (scikit-learn < 1.9, tqdm, pyyaml, pytest,
#      ...) from the wheels in .whl/ (scripts/fetch_device_wheels.sh; carried by the
#      device tool: carry [".whl"]) into .devdeps/, offline, never from the network;
#   3. CUDA-marked tests, and the scoring tests;
#   4. the seed grid's timing breakdown (train / score / refit / other) with batched
#      device scoring; the 1,000-candidate x 5-fold random search (5,000 models)
#      with its breakdown; the seed grid with scikit-learn's per-model scoring;
#   5. the benchmark (seed grid, seed random search) against scikit-learn.
#
# The package runs from the working tree (PYTHONPATH=.); nothing is installed into the
# machine's Python. Each step has a time limit inside an overall 290 s budget; a
# failed or timed-out step is reported and the next one runs (exit 1 at the end).
#
# Usage (repository root):
#   bash scripts/device_check.sh               # on the GPU machine
#   bash scripts/device_check.sh --device cpu --quick   # CPU rehearsal, short
set -uo pipefail

device=cuda
quick=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        *) echo "unknown argument: $1 (expected --device DEV, --quick)"; exit 2 ;;
    esac
done

export PYTHONUNBUFFERED=1
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-$(command -v python || command -v python3)}"
budget=290
t0=$(date +%s)
failures=()

# step NAME LIMIT_S COMMAND...: run with a time limit, within the overall budget.
step() {
    local name="$1" limit="$2"
    shift 2
    local left=$((budget - ($(date +%s) - t0)))
    if ((left < 10)); then
        echo "== $name: SKIPPED (overall ${budget}s budget spent)"
        failures+=("$name (skipped: budget)")
        return
    fi
    ((limit > left)) && limit=$left
    echo
    echo "== $name (limit ${limit}s)"
    local start rc
    start=$(date +%s)
    timeout --kill-after=5 "$limit" "$@"
    rc=$?
    echo "== $name: rc=$rc, $(($(date +%s) - start)) s"
    if ((rc != 0)); then
        ((rc == 124 || rc == 137)) && echo "== $name: TIMED OUT after ${limit}s"
        failures+=("$name (rc=$rc)")
    fi
}

versions() {
    "$PY" - <<'EOF'
import importlib
import platform
import sys

print(f"python {sys.version.split()[0]} ({sys.executable}) on {platform.platform()}")
for module in ("torch", "sklearn", "numpy", "scipy", "joblib", "threadpoolctl",
               "narwhals", "tqdm", "yaml", "pytest"):
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - report anything that stops the import
        print(f"{module:<14} MISSING ({type(exc).__name__}: {exc})")
    else:
        where = getattr(mod, "__file__", "") or ""
        print(f"{module:<14} {getattr(mod, '__version__', '?'):<12} {where}")
try:
    import torch

    cuda = torch.cuda.is_available()
    print(f"torch CUDA build {torch.version.cuda}; cuda available: {cuda}")
    if cuda:
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            print(f"  cuda:{i} {torch.cuda.get_device_name(i)}, "
                  f"{total / 2**30:.0f} GiB ({free / 2**30:.0f} free)")
except Exception as exc:  # noqa: BLE001
    print(f"torch/CUDA query failed: {exc}")
EOF
}

# Distributions to bring from .whl/: missing, or older than torchhpo needs.
missing() {
    "$PY" - <<'EOF'
import importlib.metadata as md

def version(dist):
    try:
        return tuple(int(p) for p in md.version(dist).split(".")[:3] if p.isdigit())
    except md.PackageNotFoundError:
        return None

need = []
def want(dist, minimum, deps=()):
    v = version(dist)
    if v is None or v < minimum:
        need.append(dist)
        for dep, dep_min in deps:
            dv = version(dep)
            if dv is None or dv < dep_min:
                need.append(dep)

want("numpy", (1, 24, 1))  # only in .whl/ with fetch_device_wheels.sh --with-numpy-scipy
want("scipy", (1, 10))
want("scikit-learn", (1, 9), [("joblib", (1, 4)), ("cloudpickle", (3,)),
                              ("threadpoolctl", (3, 5)), ("narwhals", (2, 0, 1))])
want("tqdm", (4, 60))
want("pyyaml", (6,))
want("pytest", (7,), [("iniconfig", (2,)), ("packaging", (24,)),
                      ("pluggy", (1, 6)), ("pygments", (2, 15))])
want("pytest-timeout", (2,))  # pyproject's per-test limit (a warning without it)
print(" ".join(dict.fromkeys(need)))
EOF
}

install_missing() {
    local need
    need=$(missing)
    if [[ -z "$need" ]]; then
        echo "all dependencies present and recent enough"
        return 0
    fi
    echo "to install from wheels: $need"
    if [[ ! -d .whl ]]; then
        echo "NO .whl/ FOLDER: cannot install $need offline. Run"
        echo "  bash scripts/fetch_device_wheels.sh"
        echo "where PyPI is reachable and carry .whl to this machine. Continuing."
        return 1
    fi
    # --no-deps: only what is listed (the machine's own numpy/scipy/torch stay);
    # one at a time, so that a wheel missing from .whl/ stops only itself.
    local dist out failed=()
    for dist in $need; do
        if ! out=$("$PY" -m pip install --quiet --no-index --find-links .whl \
            --no-deps --disable-pip-version-check --target .devdeps "$dist" 2>&1); then
            echo "$out" | grep -v "as the 'root' user" | tail -n 2
            failed+=("$dist")
        fi
    done
    export PYTHONPATH=".:.devdeps"
    if ((${#failed[@]})); then
        echo "NOT INSTALLED (no wheel in .whl/?): ${failed[*]}"
        return 1
    fi
    echo "installed into .devdeps: $need"
}

echo "== device_check: device=$device quick=$quick $(date -u +%FT%TZ)"
command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
versions
echo
echo "== dependencies"
install_missing || failures+=("dependencies")
# .devdeps comes first on PYTHONPATH when used; print what will run.
versions

if [[ "$device" == cuda* ]] &&
    ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    echo "NO CUDA DEVICE visible to torch: the CUDA steps will fail or skip."
    failures+=("no CUDA device")
fi

tests=(tests/engine/test_cuda.py tests/search/test_cuda.py
       tests/metrics tests/search/test_device_scoring.py)
step "tests (CUDA-marked and scoring)" 100 \
    "$PY" -m pytest -q -p no:cacheprovider -x "${tests[@]}"
short=()
((quick)) && short=(--max-iter 20)
step "seed grid breakdown, device scoring" 40 \
    "$PY" scripts/breakdown.py --device "$device" ${short[@]+"${short[@]}"}
# The SPEC's 5,000-model figure before the comparisons, so that it gets its time.
((quick)) || step "1,000-candidate random search, breakdown" 120 \
    "$PY" scripts/breakdown.py --device "$device" --n-iter 1000
step "seed grid breakdown, scikit-learn scoring" 40 \
    "$PY" scripts/breakdown.py --device "$device" --host-scoring \
    ${short[@]+"${short[@]}"}
if ((quick)); then
    step "benchmark (single fit)" 90 \
        "$PY" scripts/benchmark.py --device "$device" --repeats 1 --tasks single
else
    step "benchmark (seed grid, seed random)" 90 \
        "$PY" scripts/benchmark.py --device "$device" --repeats 1 \
        --tasks seed-grid,seed-random
fi

echo
echo "== device_check done in $(($(date +%s) - t0)) s"
if ((${#failures[@]})); then
    printf '== FAILED: %s\n' "${failures[@]}"
    exit 1
fi
echo "== all steps passed"
