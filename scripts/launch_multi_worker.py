"""Starts N local training workers under ``MultiWorkerMirroredStrategy``.

Each worker is ``python -m keras_pyramids.cli train --strategy multi_worker
<your train flags>`` with its own ``TF_CONFIG`` naming every worker on
127.0.0.1 at a free port; worker 0 is the chief and writes the run's files into
``--model-dir``, the others into ``<model-dir>/workers/worker_<i>``
(see :func:`keras_pyramids.training.trainer.train`). ``--batch-size`` is the
global batch, split over the workers.

Example (two workers, the built-in shapes data)::

    python scripts/launch_multi_worker.py --num-workers 2 -- \\
        --model ppn_mobilenet --dataset shapes --image-size 96 --epochs 1 --model-dir runs/mw

On real machines run the same train command on each host with a TF_CONFIG
listing all hosts instead (README, "Multi-worker and TPU training").
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time


def free_ports(count):
    """``count`` distinct TCP ports that were free on 127.0.0.1 a moment ago."""
    sockets, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))  # the OS picks a free port; held open so they differ
            sockets.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in sockets:
            s.close()
    return ports


def tf_configs(num_workers):
    """One ``TF_CONFIG`` JSON string per worker of a local cluster of ``num_workers``."""
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}.")
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(num_workers)]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            for i in range(num_workers)]


def launch(num_workers, train_args, timeout=None, log_dir=None):
    """Runs ``num_workers`` train processes to the end; returns their exit codes.

    Args:
        num_workers: number of worker processes.
        train_args: flags of ``keras-pyramids train`` (``--strategy`` is set here).
        timeout: seconds before every worker still running is killed (then the
            codes are ``None`` for those).
        log_dir: write ``worker_<i>.log`` (stdout and stderr) here; default:
            inherit this process's output.

    Returns:
        list of exit codes, worker 0 first. If one worker fails the others
        would wait for it forever in their collectives, so they are stopped.
    """
    if "--strategy" in train_args:
        raise ValueError("Do not pass --strategy: the launcher sets --strategy multi_worker.")
    command = [sys.executable, "-m", "keras_pyramids.cli", "train", "--strategy", "multi_worker",
               *train_args]
    processes, logs = [], []
    for index, config in enumerate(tf_configs(num_workers)):
        env = dict(os.environ, TF_CONFIG=config)
        out = None
        if log_dir:
            os.makedirs(log_dir, exist_ok=True)
            out = open(os.path.join(log_dir, f"worker_{index}.log"), "w")
            logs.append(out)
        processes.append(subprocess.Popen(command, env=env, stdout=out,
                                          stderr=subprocess.STDOUT if out else None))
    deadline = None if timeout is None else time.time() + timeout
    try:
        while any(p.poll() is None for p in processes):
            failed = [p for p in processes if p.returncode not in (None, 0)]
            if failed or (deadline is not None and time.time() > deadline):
                for p in processes:
                    if p.poll() is None:
                        p.kill()
                break
            time.sleep(0.5)
        for p in processes:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
    finally:
        for out in logs:
            out.close()
    return [p.returncode for p in processes]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, help="kill the workers after this many seconds")
    parser.add_argument("--log-dir", help="per-worker logs (default: this terminal)")
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="after --: flags of keras-pyramids train")
    args = parser.parse_args(argv)
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    try:
        codes = launch(args.num_workers, train_args, timeout=args.timeout, log_dir=args.log_dir)
    except ValueError as error:
        print(f"launch_multi_worker: error: {error}", file=sys.stderr)
        return 2
    print("worker exit codes:", codes)
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
