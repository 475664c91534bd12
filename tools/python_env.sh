# Sourced by the launch scripts (dist_test.sh, slurm_test.sh, pcdet/dist_test.sh): sets PY to the
# python that runs the tools. $PYTHON when set, else the project's venv (<repo>/.venv/bin/python)
# when it exists, else python3. When that python is missing or cannot import torch: one line
# `error: ...` and exit status 2.
#   rdoq_python REPO_ROOT
rdoq_python() {
    local repo=$1 problem
    if [ -n "${PYTHON:-}" ]; then
        PY=$PYTHON
    elif [ -x "$repo/.venv/bin/python" ]; then
        PY=$repo/.venv/bin/python
    else
        PY=python3
    fi
    if ! command -v "$PY" >/dev/null 2>&1; then
        problem="is not found"
    elif ! "$PY" -c "import torch" >/dev/null 2>&1; then
        problem="cannot import torch"
    else
        return 0
    fi
    echo "error: python $PY $problem; run 'make install' in $repo (it creates $repo/.venv, used when" \
         "PYTHON is unset), or set PYTHON to a python with the project installed" >&2
    exit 2
}
