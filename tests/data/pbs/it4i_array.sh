#!/bin/bash
# After the job-array jobscript of https://docs.it4i.cz/general/job-arrays/ (run with qsub -J 1-900)
#PBS -q qprod
#PBS -l select=1,walltime=02:00:00
#PBS -J 1-900
TASK=$(sed -n "${PBS_ARRAY_INDEX}p" $PBS_O_WORKDIR/tasklist)
echo "$TASK"
