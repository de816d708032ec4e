# Sourced by .ci/run. Builds the sdist and, from it, the wheel; installs the wheel into a fresh venv outside
# the checkout with every runtime dependency at its declared lower bound (.ci/min_requirements.py), and runs
# the product from that install: `zebra --help`, `zebra analyze` on a real image, a signed-in page load.

wheel_check() {
  local root work port pid rc=0
  root=$(pwd)
  work=$(mktemp -d /tmp/zebra-wheel.XXXXXX)
  echo "ci: wheel check in $work"
  .venv/bin/python -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 || { tail -40 "$work/build.log"; return 1; }
  ls -l "$work"/dist
  .venv/bin/python .ci/wheel_contents.py "$work"/dist/*.whl
  .venv/bin/python .ci/min_requirements.py pyproject.toml cpu >"$work/min.txt"
  python3.11 -m venv "$work/venv"
  "$work/venv/bin/pip" install --quiet --upgrade pip
  "$work/venv/bin/pip" install --quiet -c "$work/min.txt" "$(ls "$work"/dist/*.whl)[cpu]" >"$work/pip.log" 2>&1 \
    || { grep -v "^WARNING: Location" "$work/pip.log" | tail -30; echo "ci: the wheel does not install with its declared minimum versions"; return 1; }
  "$work/venv/bin/pip" freeze | grep -i -E "^(transformers|langgraph|fastapi|numpy|pydicom|highdicom|sentence-transformers)==" || true
  # The tests that exercise the version-sensitive APIs (LangGraph runtime, transformers loading, ONNX export,
  # bm25s files, Typer/Click, FastAPI, pydicom de-identification, highdicom SR/maps), run against the installed
  # wheel at those lowest versions; the whole suite runs at the newest versions in `make test`.
  "$work/venv/bin/pip" install --quiet -c "$work/min.txt" pytest pytest-timeout hypothesis "pydicom-data>=1.0" >>"$work/pip.log" 2>&1
  mkdir -p "$work/suite" && cp -r tests pyproject.toml "$work/suite/"
  (cd "$work/suite" && ZEBRA_DATA_DIR="$work/test-data" "$work/venv/bin/python" -m pytest -q -p no:cacheprovider -m "not slow" \
    tests/test_core.py tests/agent/test_graph.py tests/agent/test_nodes.py tests/vlm/test_hf_backend.py \
    tests/index_builder/test_faiss_dist.py tests/index_builder/test_onnx_backend.py tests/retrieval \
    tests/web/test_auth.py tests/intake/test_deid.py tests/triage/test_dicomweb.py \
    tests/index_builder/test_scale.py --deselect tests/index_builder/test_scale.py::test_ray_engine_matches_local) \
    || { echo "ci: tests fail at the declared minimum versions"; return 1; }
  (
    set -e
    cd "$work"  # outside the checkout: nothing can be imported from it
    export ZEBRA_DATA_DIR="$work/data" ZEBRA_ADMIN_PASSWORD="wheel-check-$RANDOM-pass"
    "$work/venv/bin/zebra" --help >/dev/null
    # A real head image: a MedPix dev image when the shared data is there, else pydicom's own MR slice.
    image="$root/../shared/data/medpix-2.0/images/MPX1770_synpic23443.png"
    [ -f "$image" ] || image=$("$work/venv/bin/python" -c "from pydicom.data import get_testdata_file; print(get_testdata_file('MR_small.dcm'))")
    "$work/venv/bin/zebra" analyze "$image" --out "$work/analysis" >/dev/null
    "$work/venv/bin/python" -c "import json,sys; d=json.load(open(sys.argv[1])); print('ci: zebra analyze:', json.dumps(d)[:300])" "$work/analysis/analysis.json"
    "$work/venv/bin/zebra" user add ci-admin --admin
    port=$("$work/venv/bin/python" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
    "$work/venv/bin/zebra" serve --host 127.0.0.1 --port "$port" --no-build-kb >"$work/serve.log" 2>&1 &
    pid=$!
    trap 'kill $pid 2>/dev/null || true' EXIT
    for _ in $(seq 1 180); do
      curl -sf "http://127.0.0.1:$port/" >/dev/null && break
      kill -0 "$pid" 2>/dev/null || { echo "ci: zebra serve exited"; tail -30 "$work/serve.log"; exit 1; }
      sleep 1
    done
    "$root/.venv/bin/python" "$root/.ci/page_check.py" "http://127.0.0.1:$port" ci-admin "$ZEBRA_ADMIN_PASSWORD" "$work/page.png"
  ) || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "ci: the installed wheel failed (rc $rc)"; tail -30 "$work/serve.log" 2>/dev/null || true
    return "$rc"
  fi
  rm -rf "$work"
  echo "ci: wheel check passed"
}
