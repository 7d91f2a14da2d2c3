#!/bin/bash
# qsub options we cannot honour, each on its line (qsub(1B): https://manpages.ubuntu.com/manpages/xenial/man1/qsub.1B.html)
#PBS -l nodes=4:ppn=16
#PBS -W depend=afterok:1234
#PBS -a 2200
#PBS -u someone
mpirun ./app
