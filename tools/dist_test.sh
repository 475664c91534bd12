#!/usr/bin/env bash
# Distributed test + quantization, as mmdet's tools/dist_test.sh, with torchrun.
#   tools/dist_test.sh CONFIG CHECKPOINT NPROC [tools/test.py options...]
# Without a GPU the processes use the gloo backend on CPU.
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
# The python: $PYTHON, else the project's .venv, else python3 (tools/python_env.sh).
source "$(dirname "$0")/python_env.sh"
rdoq_python "$(cd "$(dirname "$0")/.." && pwd)"

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
exec "$PY" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch \
    "${@:4}"
