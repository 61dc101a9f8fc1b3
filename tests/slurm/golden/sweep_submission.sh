#!/bin/bash

# Parameters
#SBATCH --array=0-1%2
#SBATCH --job-name=pretrain
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=<SWEEP_DIR>/.submitit/%A_%a/%A_%a_0_log.out
#SBATCH --signal=USR2@30
#SBATCH --time=5
#SBATCH --wckey=submitit

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output <SWEEP_DIR>/.submitit/%A_%a/%A_%a_%t_log.out <PYTHON> -u -m submitit.core._submit <SWEEP_DIR>/.submitit/%j
