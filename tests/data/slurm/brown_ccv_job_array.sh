#!/bin/bash
# Source: brown-ccv/slurm, job_arrays/job-array.sh (verbatim apart from these two lines)
# https://github.com/brown-ccv/slurm/blob/4787405c272cc83a5d8016a2d87f90a29ee20f76/job_arrays/job-array.sh

# Resource request
#SBATCH --time=00:05:00
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=1
#SBATCH --mem-per-cpu=4G

# Define array (TASK IDs)
#SBATCH --array=1-4

# Job handling
#SBATCH -J arrayjob
#SBATCH -o %x-%A_%a.out

# Use the $SLURM_ARRAY_TASK_ID variable to provide different inputs for each job
 
echo "Running job array number: "$SLURM_ARRAY_TASK_ID
