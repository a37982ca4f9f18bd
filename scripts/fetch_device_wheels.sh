#!/usr/bin/env bash
# Download into .whl/ the Python 3.12 manylinux x86-64 wheels that
# scripts/device_check.sh installs, offline, on a GPU machine whose Python lacks them
# or has them too old (scikit-learn < 1.9, no tqdm / pyyaml / pytest, ...).
# Run it here, where PyPI is reachable. .whl/ is git-ignored: hand it to the device
# tool as a carried path (carry: [".whl"]); the working tree plus carried paths must
# stay under 64 MiB, so NumPy and SciPy (50 MB; any Python 3.12 with scikit-learn
# already has versions new enough) are only fetched with --with-numpy-scipy.
# Usage (repository root): bash scripts/fetch_device_wheels.sh [--with-numpy-scipy]
set -euo pipefail
dest="${WHEEL_DEST:-.whl}"
python_version="${WHEEL_PYTHON_VERSION:-3.12}"
packages=(
    # scikit-learn 1.9.1 and its pure-Python dependencies
    "scikit-learn==1.9.1" "joblib>=1.4" "cloudpickle>=3.0" "threadpoolctl>=3.5"
    "narwhals>=2.0.1"
    # torchhpo's other runtime dependencies
    "tqdm>=4.60" "pyyaml>=6"
    # the test runner and its dependencies
    "pytest>=7" "iniconfig>=2" "packaging>=24" "pluggy>=1.6,<2" "pygments>=2.15"
    "pytest-timeout>=2"
)
if [[ "${1:-}" == "--with-numpy-scipy" ]]; then
    packages+=("numpy>=1.26" "scipy>=1.11")
fi
platforms=()
for p in manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_24_x86_64 \
    manylinux_2_27_x86_64 manylinux_2_28_x86_64; do
    platforms+=(--platform "$p")
done
mkdir -p "$dest"
# --no-deps: exactly the list above (device_check.sh installs each one only where
# the machine lacks it or has it too old, also without dependency resolution).
python -m pip download --dest "$dest" --only-binary=:all: --no-deps \
    --python-version "$python_version" --implementation cp "${platforms[@]}" \
    "${packages[@]}"
echo "wheels in $dest:"
ls -1 "$dest"
du -sh "$dest"
