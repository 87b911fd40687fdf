#!/bin/bash
#SBATCH --job-name=jupyter-alice
#SBATCH --comment=hpcspawner:alice:-
#SBATCH --chdir=/home/alice
#SBATCH --output=/home/alice/.jupyterhub-slurm-%j.log
#SBATCH --partition=debug
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=2
#SBATCH --mem=4G
#SBATCH --time=1:00:00
#SBATCH --signal=B:USR1@120
#SBATCH --no-requeue
#SBATCH --export=ALL

# -e only: module systems' init scripts often trip over -u
set -e
# What the job creates is private to the user (c.SlurmSpawner.job_umask)
umask 0077
# Set here, not only in sbatch's environment: sudo's secure_path would replace it there.
export PATH=/opt/jupyterhub/bin:/usr/local/bin:/usr/bin:/bin


exec hpcspawner-singleuser jupyterhub-singleuser
