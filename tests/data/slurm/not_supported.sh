#!/bin/bash
# Options that have no meaning here, one per line, each refused on its line (sbatch manual:
# https://slurm.schedmd.com/sbatch.html).
#SBATCH --nodes=2
#SBATCH --chdir=run1
#SBATCH --dependency=afterok:1234
#SBATCH --begin=now+1hour
#SBATCH --output=slurm-%N.out
#SBATCH --frobnicate=3
#SBATCH --time=soon
srun ./mpi_app
