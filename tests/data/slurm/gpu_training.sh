#!/bin/bash
# A one-GPU training job in the style of the sbatch manual (https://slurm.schedmd.com/sbatch.html):
# short options, --gres, mail on the end and on failure, D-H:M:S time.
#SBATCH -J train -c 8 --mem=32G
#SBATCH --gres=gpu:2
#SBATCH -t 1-12:00:00
#SBATCH -o train-%j.log
#SBATCH --mail-user=me@lab.org
#SBATCH --mail-type=END,FAIL
#SBATCH --export=NONE
#SBATCH --requeue
python train.py --epochs 10
