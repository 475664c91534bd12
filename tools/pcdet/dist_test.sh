#!/usr/bin/env bash
# Distributed test + quantization of an OpenPCDet detector, as OpenPCDet's
# tools/scripts/dist_test.sh, with torchrun. Run it from OpenPCDet's tools/ folder:
#   $RDOQ_PLUGINS/tools/pcdet/dist_test.sh NGPUS --cfg_file CFG --ckpt CKPT [tools/pcdet/test.py options...]
# Every process evaluates its share of the test split; rank 0 alone calibrates and reconstructs.
NGPUS=$1
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
# The python: $PYTHON, else the project's .venv, else python3 (tools/python_env.sh).
source "$(dirname "$0")/../python_env.sh"
rdoq_python "$(cd "$(dirname "$0")/../.." && pwd)"

PYTHONPATH="$(dirname "$0")/../..":$PYTHONPATH \
exec "$PY" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NGPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/test.py" \
    --launcher pytorch \
    "${@:2}"
