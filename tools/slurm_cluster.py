"""Dask workers on a Slurm cluster for ``mnist-lab batch --scheduler`` (dask-jobqueue's SLURMCluster).

Run it on the cluster's login node, in the environment where mnist-lab is installed:

    python tools/slurm_cluster.py --workers 10 --partition gpu --gpus 1 --walltime 02:00:00

Each worker is one Slurm job (`--cores` CPUs, `--memory`, `--gpus` GPUs) that runs
``dask worker`` with a ``GPU`` resource, so ``mnist-lab batch`` gives every run one GPU. The
script prints the scheduler's address and waits; from another shell on the login node:

    mnist-lab batch notebooks/03_mlp.ipynb --grid seed=0..9 --out results/sweep --scheduler tcp://...

Ctrl-C here cancels the jobs. The workers send every result back to batch, so they need no
shared folder with it; they need MNIST (``--data DIR`` sets ``MNIST_LAB_DATA`` in each job).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any


def slurm_cluster(
    partition: str,
    gpus: int = 1,
    cores: int = 4,
    memory: str = "16GB",
    walltime: str = "02:00:00",
    data: str | None = None,
    interface: str | None = None,
) -> Any:
    """A dask-jobqueue ``SLURMCluster`` whose workers (one per job) run one notebook at a time.

    `interface`: the network interface the scheduler and the workers listen on (e.g. ``ib0``;
    None: dask-jobqueue's default). Nothing is submitted until ``.scale(n)``.
    """
    from dask_jobqueue import SLURMCluster

    prologue = [f"export MNIST_LAB_DATA={data}"] if data else []
    return SLURMCluster(
        queue=partition,
        cores=1,  # the worker's threads: one, as it runs one notebook at a time ...
        job_cpu=cores,  # ... whose kernel (torch) uses the job's CPUs
        processes=1,
        memory=memory,
        walltime=walltime,
        job_extra_directives=[f"--gres=gpu:{gpus}"] if gpus else [],
        worker_extra_args=["--no-dashboard"] + (["--resources", f"GPU={gpus}"] if gpus else []),
        job_script_prologue=prologue,
        interface=interface,
    )


def main(argv: list[str] | None = None) -> int:
    """Start the cluster, print its address, keep it until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python tools/slurm_cluster.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4, help="Slurm jobs, one dask worker each (default 4)")
    parser.add_argument("--partition", required=True, help="Slurm partition (sbatch -p)")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs per job, 0 for CPU only (default 1)")
    parser.add_argument("--cores", type=int, default=4, help="CPUs per job (default 4)")
    parser.add_argument("--memory", default="16GB", help="memory per job (default 16GB)")
    parser.add_argument("--walltime", default="02:00:00", help="time limit per job (default 02:00:00)")
    parser.add_argument("--data", help="folder holding MNIST on the compute nodes (sets MNIST_LAB_DATA)")
    parser.add_argument("--interface", help="network interface of scheduler and workers, e.g. ib0")
    args = parser.parse_args(argv)
    cluster = slurm_cluster(
        args.partition, args.gpus, args.cores, args.memory, args.walltime, args.data, args.interface
    )
    cluster.scale(args.workers)
    print(cluster.job_script())
    print(f"Scheduler: {cluster.scheduler_address}  (dashboard: {cluster.dashboard_link})")
    print(f"Run: mnist-lab batch ... --scheduler {cluster.scheduler_address}    Ctrl-C here cancels the jobs.")
    try:
        while True:
            time.sleep(60)
    except KeyboardInterrupt:
        cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
