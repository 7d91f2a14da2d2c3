#!/bin/sh
# Source: nigelawj/MMALNet-RandAug, MMAL-Net-master/job.sh (verbatim apart from these two lines)
# https://github.com/nigelawj/MMALNet-RandAug/blob/fc1e4c27c3c175b1b8030f64f4dd3f62c3b6843d/MMAL-Net-master/job.sh
#SBATCH --job-name=TestJob
#SBATCH --output=test.out
#SBATCH --error=testError.err
#SBATCH --gres=gpu:1
#SBATCH --nodes=1
#SBATCH --mem=8000M

module load anaconda
python train.py