#!/bin/bash
# After the array example of https://userdocs.hpc.sav.sk/shared/job_submission/array_jobs/
#SBATCH --job-name=array_test
#SBATCH --nodes=1
#SBATCH --ntasks=4
#SBATCH --cpus-per-task=2
#SBATCH --output=out_array_%A_%a.out
#SBATCH --error=err_array_%A_%a.err
#SBATCH --array=1-7:2,20
echo "My SLURM_ARRAY_TASK_ID:" $SLURM_ARRAY_TASK_ID
