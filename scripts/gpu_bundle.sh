#!/usr/bin/env bash
# Build gpu_bundle/ (git-ignored), what scripts/gpu_check.sh needs on a GPU machine that has
# torch but no internet: wheels of the project's dependencies that such a machine may lack,
# and the four Fashion-MNIST .gz files. About 40 MB.
#
#   scripts/gpu_bundle.sh [PYTHON]     # PYTHON: the one with pip and this project's packages
#                                      # (default .venv/bin/python); needs PyPI once
#
# The wheels: the dependency closure of ROOTS below at the versions installed here (the ones
# the test suite passes with), pure Python where the package is (any Python 3); a compiled
# one (pydantic-core, typer's) for each of $GPU_PYTHONS (default: 3.12, the lent machines'
# Python, and this Python's version). Left to the machine: torch and torchvision (its own),
# and HOST_PACKAGES, the compiled packages a torch machine has; gpu_check.sh names any that
# is missing. antlr4-python3-runtime ships only as source: its wheel is built here.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-.venv/bin/python}
BUNDLE=gpu_bundle
DATA_SOURCE=${DROPOUT_LAB_DATA:-/usr/share/datasets/fashion-mnist}
GPU_PYTHONS=${GPU_PYTHONS:-"3.12 $("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"}
# Hydra and its launchers, the CLI, the sweep's process pools, the progress bar, TensorBoard's
# writer (without its server's compiled parts: grpcio, werkzeug, the data server).
ROOTS="hydra-core submitit hydra-joblib-launcher hydra-submitit-launcher typer tqdm joblib
       cloudpickle tensorboard"
HOST_PACKAGES="torch torchvision numpy pyyaml matplotlib grpcio tensorboard-data-server werkzeug
               setuptools pillow markupsafe"

rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/wheels" "$BUNDLE/data"
# "name==version pure|compiled", one per line, for the closure of ROOTS without HOST_PACKAGES
closure=$("$PYTHON" - "$ROOTS" "$HOST_PACKAGES" <<'EOF'
import importlib.metadata
import sys

from packaging.requirements import Requirement


def canonical(name):
    return name.lower().replace("_", "-")


roots, host = sys.argv[1].split(), {canonical(name) for name in sys.argv[2].split()}
found, todo = {}, [canonical(name) for name in roots]
while todo:
    name = todo.pop()
    if name in found or name in host:
        continue
    dist = importlib.metadata.distribution(name)
    pure = "Root-Is-Purelib: true" in (dist.read_text("WHEEL") or "Root-Is-Purelib: true")
    found[name] = f"{name}=={dist.version} {'pure' if pure else 'compiled'}"
    for line in dist.requires or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            todo.append(canonical(requirement.name))
print("\n".join(sorted(found.values())))
EOF
)
download=("$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$BUNDLE/wheels")
while read -r requirement kind; do
  if [[ $requirement == antlr4-python3-runtime==* ]]; then
    "$PYTHON" -m pip wheel -q --no-deps -w "$BUNDLE/wheels" "$requirement"
  elif [[ $kind == pure ]]; then  # its py3-none-any wheel, also where a compiled one exists
    "${download[@]}" --platform any --python-version 3.12 --implementation py --abi none \
      "$requirement"
  else
    for version in $GPU_PYTHONS; do
      "${download[@]}" --python-version "$version" --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 "$requirement"
    done
  fi
done <<< "$closure"
for file in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz \
            t10k-labels-idx1-ubyte.gz; do
  cp "$DATA_SOURCE/$file" "$BUNDLE/data/"
done
echo "$BUNDLE: $(ls "$BUNDLE/wheels" | wc -l) wheels (for Python $GPU_PYTHONS), 4 data files, $(du -sh "$BUNDLE" | cut -f1)"
