#!/bin/bash
# The array forms of https://documentation.sigma2.no/jobs/job_scripts/array_jobs.html
#SBATCH --job-name=steps
#SBATCH --array=0-10:2,32,56
#SBATCH --mem-per-cpu=500M
#SBATCH --cpus-per-task=4
#SBATCH --time=0-00:15
echo $SLURM_ARRAY_TASK_ID
