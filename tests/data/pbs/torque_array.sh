# A Torque array without a '#!' line (qsub runs it with /bin/sh); after
# http://docs.adaptivecomputing.com/torque/4-1-3/Content/topics/2-jobs/multiJobSubmission.htm
#PBS -N sweep
#PBS -t 0-50,60,70,80
#PBS -l nodes=1:ppn=2,mem=2gb,walltime=1:00:00
#PBS -V
echo "index $PBS_ARRAYID"
