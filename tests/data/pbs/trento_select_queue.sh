#!/bin/bash
# Source: ivandona/hpc-exercises, test1.sh (verbatim apart from these two lines)
# https://github.com/ivandona/hpc-exercises/blob/f1af80b823efbf9a9cf9e546feddc8c66ad17395/test1.sh
#PBS -l select=1:ncpus=1:mem=2gb
# set max execution time
#PBS -l walltime=0:05:00
# set the queue
#PBS -q short_cpuQ
ls –lrt
echo "hostname: " && hostname