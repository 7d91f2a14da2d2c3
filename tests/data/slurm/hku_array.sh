#!/bin/bash
# After the array example of https://hpc.hku.hk/guide/slurm-guide/slurm-job-array/
#SBATCH --job-name=array_job
#SBATCH --output=array_job_%A_%a.out
#SBATCH --error=array_job_%A_%a.err
#SBATCH --array=1-22
#SBATCH --time=01:00:00
#SBATCH --ntasks=1
#SBATCH --mem=6G
echo "chromosome $SLURM_ARRAY_TASK_ID"
