#!/usr/bin/env bash
# Multi-node training under Slurm: one task per node, each running `accelerate launch` over its GPUs.
#   sbatch examples/slurm.sh CONFIG.yaml [OUT]
# Submit the same script again after a time limit, a preemption or a crash: --resume auto continues from the
# newest complete checkpoint in OUT (damaged ones are skipped). OUT and the shards must be on a file system that
# every node sees. Slurm's SIGTERM (here 5 minutes before the time limit) reaches the training processes through
# torchrun: they finish the step, write a checkpoint and exit.
#SBATCH --job-name=fmboost-train
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=24:00:00
#SBATCH --signal=TERM@300
#SBATCH --output=%x-%j.out
set -euo pipefail
CONFIG=${1:?usage: sbatch examples/slurm.sh CONFIG.yaml [OUT]}
OUT=${2:-runs/$SLURM_JOB_NAME}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
export MAIN_IP=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export CONFIG OUT GPUS_PER_NODE
# Single quotes: SLURM_NODEID is each task's own node, read on that node.
srun --kill-on-bad-exit=1 bash -c 'accelerate launch --multi_gpu \
    --num_machines "$SLURM_NNODES" --num_processes $((SLURM_NNODES * GPUS_PER_NODE)) \
    --machine_rank "$SLURM_NODEID" --main_process_ip "$MAIN_IP" --main_process_port 29500 \
    --mixed_precision no --dynamo_backend no \
    -m fmboost.cli.main train --config "$CONFIG" --out "$OUT" --resume auto'
