#!/bin/bash
# Source: HarborneD/ARCCA_Python_Tool, test_arcca_scripts/test_array_job.sh (verbatim apart from these two lines)
# https://github.com/HarborneD/ARCCA_Python_Tool/blob/01f58ae41a820f8fbe642341553e758036fbf6e9/test_arcca_scripts/test_array_job.sh

# BASH Environment Variable	           SBATCH Field Code	Description
# $SLURM_JOB_ID	                        %J	                Job identifier
# $SLURM_ARRAY_JOB_ID	                %A	                Array parent job identifier
# $SLURM_ARRAY_TASK_ID	                %a	                Array job iteration index

#SBATCH -J arraytest
#SBATCH --array=0-4
#SBATCH -o output-%A_%a-%J.o
#SBATCH -n 1
#SBATCH --ntasks=1
#SBATCH --ntasks-per-node=1

echo SLURM_JOB_ID $SLURM_JOB_ID
echo SLURM_ARRAY_JOB_ID $SLURM_ARRAY_JOB_ID
echo SLURM_ARRAY_TASK_ID $SLURM_ARRAY_TASK_ID