#!/bin/bash
# Source: samkos/breakit, job.sh (verbatim apart from these two lines)
# https://github.com/samkos/breakit/blob/08fb8a891c850706869369f25d56374a7b1f2dcb/job.sh
###SBATCH -A k1016
#SBATCH --nodes=1
#SBATCH --time=0:02:00
#SBATCH --exclusive
#SBATCH --job-name=test

hostname
sleep 60

