#!/bin/sh
# Source: jbrodovsky/Temple-Malaria-Simulation-Analysis, MyJob.sh (verbatim apart from these two lines)
# https://github.com/jbrodovsky/Temple-Malaria-Simulation-Analysis/blob/03cb335bcd7ec682b1eb4504acda399ede4637b8/MyJob.sh
#PBS -l walltime=48:00:00
#PBS -N MyJob
#PBS -q normal
#PBS -l nodes=4:ppn=15
cd $PBS_O_WORKDIR
torque-launch batch_commands.txt
