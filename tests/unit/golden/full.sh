#!/bin/bash
#SBATCH --job-name=jupyter-alice-gpu
#SBATCH --comment=hpcspawner:alice:gpu
#SBATCH --chdir=/scratch/alice
#SBATCH --output=/scratch/alice/jupyter-%j.log
#SBATCH --partition=gpu
#SBATCH --account=proj-a
#SBATCH --qos=high
#SBATCH --reservation=course
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=1-12:00:00
#SBATCH --gres=gpu:2
#SBATCH --signal=B:USR1@300
#SBATCH --export=ALL
#SBATCH --constraint=ib
#SBATCH --exclusive

# -e only: module systems' init scripts often trip over -u
set -e
# What the job creates is private to the user (c.SlurmSpawner.job_umask)
umask 0077
# Set here, not only in sbatch's environment: sudo's secure_path would replace it there.
export PATH=/opt/jupyterhub/bin:/usr/local/bin:/usr/bin:/bin

# --- site prologue (c.SlurmSpawner.batch_script_prologue)
module purge
source /etc/profile.d/site.sh


# --- environment py312
module load gcc/13.2
module load cuda/12.4
export PATH='/opt/envs/py 3.12/bin':"$PATH"
export OMP_NUM_THREADS=1


exec hpcspawner-singleuser jupyterhub-singleuser --SingleUserNotebookApp.default_url=/lab '--notebook-dir=~/my notebooks'
