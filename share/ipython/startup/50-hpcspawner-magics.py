# Installed by hpcspawner into {sys.prefix}/etc/ipython/startup/, where every IPython kernel of
# this environment runs it: it loads the Slurm magics (%squeue, %sbatch, %%sbatch, %scancel,
# %sinfo, %slurm_job). See hpcspawner/job/magics.py.
get_ipython().extension_manager.load_extension("hpcspawner.job.magics")  # noqa: F821
