#!/usr/bin/env bash
# The GPU check, for a lent GPU machine: a bare machine with torch, no internet, this
# repository and gpu_bundle/ (built here by scripts/gpu_bundle.sh, carried along). It
#   1. installs the bundle's wheels this Python lacks, offline (--no-index), into a folder of
#      its own ($GPU_CHECK_SITE, default /tmp/dropout-lab-site),
#   2. checks that everything the cuda tests import is there, and that torch sees a GPU,
#   3. runs the `cuda` tests (tests/end_to_end/test_cuda.py, about 2 minutes),
#   4. times one epoch in fp32 and in bf16 against its matrix products (scripts/bench_train.py).
#
#   scripts/gpu_check.sh                # PYTHON=python3 by default: the one that holds torch
#
# Exit: 0 all passed; 1 a test failed; 2 the setup is incomplete (one line says what);
# 3 no usable GPU (one line says why). With $OUT set (the device tool), the log goes there too.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/dropout-lab-site}
BUNDLE=${GPU_BUNDLE:-gpu_bundle}  # built by scripts/gpu_bundle.sh
if [[ -n ${OUT:-} ]]; then
  exec > >(tee "$OUT/gpu_check.log") 2>&1
fi

say() { echo "gpu_check: $*"; }

[[ -d $BUNDLE/wheels && -d $BUNDLE/data ]] \
  || { say "no $BUNDLE/ here: build it with scripts/gpu_bundle.sh and carry it along"; exit 2; }
"$PYTHON" -c "import torch" 2>/dev/null \
  || { say "$PYTHON has no torch: set PYTHON to the Python that holds it"; exit 2; }
# The bundle's packages this Python lacks (the machine's own stay: a second copy of a package
# it has could break its other packages), by name: pip picks the wheel for this Python.
lacking=$("$PYTHON" - "$BUNDLE/wheels" <<'EOF'
import importlib.metadata
import pathlib
import sys

for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name, version = wheel.name.split("-")[:2]
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        print(f"{name}=={version}")
EOF
)
if [[ -n $lacking ]]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --find-links "$BUNDLE/wheels" --target "$SITE" $(sort -u <<< "$lacking") \
    || { say "installing from $BUNDLE/wheels into $SITE failed (above)"; exit 2; }
fi
say "installed from the bundle: $(sort -u <<< "$lacking" | tr '\n' ' ')"
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export DROPOUT_LAB_DATA="$PWD/$BUNDLE/data"
export PYTHONUNBUFFERED=1

# What the bundle leaves to the machine (compiled packages), and our own modules importing.
"$PYTHON" - <<'EOF' || exit 2
import importlib, importlib.util, sys

needed = ["numpy", "yaml", "matplotlib", "pytest", "google.protobuf", "tensorboard", "hydra",
          "submitit", "typer", "joblib"]
missing = [name for name in needed if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"gpu_check: this Python lacks {', '.join(missing)}: add their wheels to "
             f"gpu_bundle/wheels (built for this Python), or install them")
for module in ("dropout_lab.cli", "dropout_lab.train", "dropout_lab.sweep.local",
               "hydra_plugins.dropout_lab_launcher"):
    importlib.import_module(module)
EOF

"$PYTHON" - <<'EOF' || exit 3
import sys

import torch

from dropout_lab.device import unusable_gpu_reason

if not torch.cuda.is_available():
    why = unusable_gpu_reason() or "no NVIDIA GPU on this host"
    sys.exit(f"gpu_check: no usable CUDA GPU here ({why}; torch {torch.__version__}, CUDA "
             f"{torch.version.cuda}): the cuda tests and the GPU benchmark need one")
capability = ".".join(map(str, torch.cuda.get_device_capability()))
print(f"gpu_check: {torch.cuda.get_device_name()} (compute capability {capability}), "
      f"{torch.cuda.device_count()} GPU(s); torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}; Python {sys.version.split()[0]}")
EOF

say "the cuda tests"
"$PYTHON" -m pytest -p no:cacheprovider -m cuda tests/end_to_end/test_cuda.py -q
tests=$?
say "one epoch in fp32 and bf16 against its matrix products (the default config, all data)"
"$PYTHON" scripts/bench_train.py --device cuda --skip-textbook --precision bf16 --rounds 5 \
  trainer.progress=false
bench=$?
if (( tests != 0 || bench != 0 )); then
  say "FAILED (tests exit $tests, benchmark exit $bench)"
  exit 1
fi
say "all passed"
