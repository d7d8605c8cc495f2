#!/usr/bin/env bash
# Build the wheel, install it into a fresh venv (no checkout on its path) and use it from another folder.
# The fresh venv borrows torch & co. from .venv's site-packages (read-only, no .pth files processed there),
# so it installs in seconds; metaanchor itself comes only from the wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

.venv/bin/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$WORK/dist" .
python3 -m venv "$WORK/env"
SITE=$("$WORK/env/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
"$ROOT/.venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > "$SITE/borrowed.pth"
"$WORK/env/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "$WORK"/dist/metaanchor-*.whl

mkdir "$WORK/elsewhere" && cd "$WORK/elsewhere"
export PATH="$WORK/env/bin:$PATH" MPLBACKEND=Agg
where=$(python -c "import metaanchor, torch; print(metaanchor.__file__)")
case "$where" in "$WORK/env/"*) ;; *) echo "metaanchor imported from $where, not the wheel" >&2; exit 1 ;; esac
metaanchor --version
metaanchor train --show-config --config bccd > /dev/null
metaanchor data synth --out data --images 6 > /dev/null
metaanchor train --config demo --out run data=data solver.max_iter=2 input.size=64 solver.batch_size=2 \
    solver.warmup_iters=1 eval.period=0 > train.log
test -f run/last.pt
metaanchor predict --checkpoint run/last.pt --out pred data/images > /dev/null
test -f pred/detections.json
echo "wheel smoke test passed: $(basename "$WORK"/dist/metaanchor-*.whl) installed and ran from $PWD"
