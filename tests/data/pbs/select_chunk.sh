#!/bin/sh
# A PBS Pro one-chunk job, the select form of the PBS Professional user guide
# (https://docs.it4i.cz/general/job-arrays/ shows the -l select=... syntax).
#PBS -N fit
#PBS -l select=1:ncpus=4:mem=8gb
#PBS -l walltime=00:30:00
#PBS -j oe
#PBS -o fit.log
#PBS -M me@lab.org
#PBS -m ae
cd $PBS_O_WORKDIR
./fit --threads $NCPUS
