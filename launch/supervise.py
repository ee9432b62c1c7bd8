"""Run a command and start it again when it fails: the restart policy of a cluster
manager (Kubernetes `restartPolicy: OnFailure`, Slurm `--requeue`), for a single machine.

    python -m launch.supervise --max_restarts=10 -- \\
        python -m launch.train --flagfile=launch/configs/mnist_paper.flags \\
                               --strategy=multi_worker --model_dir=/shared/runs/mnist

Why: under --strategy=multi_worker, when one worker dies the others cannot continue (their
collective operations are aborted) and exit with status 75. Each restarted worker resumes
from the chief's last complete checkpoint, and the job goes on once all have rejoined.

The command is restarted when it exits with a non-zero status or is killed by a signal
(kill -9 included), after --restart_delay seconds, at most --max_restarts times. Status 2
(a usage error from launch.*) is never retried: the same command would fail the same way.
SIGTERM / SIGINT sent to the supervisor are passed on to the command, which is not
restarted afterwards.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("max_restarts", 10, "Restarts before giving up.", lower_bound=0)
flags.DEFINE_float("restart_delay", 2.0, "Seconds to wait before a restart.", lower_bound=0.0)

USAGE_ERROR = 2  # launch.*: a bad flag; restarting cannot help


class CommandError(ValueError):
    """The command cannot be started at all (no such program, not executable)."""


def supervise(command, max_restarts: int, restart_delay: float, log=print) -> int:
    """Runs `command` (a list) until it succeeds; returns its last exit status."""
    stopping = []
    child = None

    def forward(signum, _frame):
        stopping.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward)
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        for attempt in range(max_restarts + 1):
            try:
                child = subprocess.Popen(command)
            except OSError as error:  # FileNotFoundError, PermissionError: retrying cannot help
                raise CommandError(
                    f"cannot run the command {command[0]!r}: "
                    f"{error.strerror or type(error).__name__}; expected an executable "
                    f"program after the flags, e.g. launch.supervise -- python3 -m "
                    f"launch.train ...") from None
            status = child.wait()
            if status == 0 or stopping or status == USAGE_ERROR:
                return status
            reason = (f"was killed by signal {-status}" if status < 0
                      else f"exited with status {status}")
            if attempt == max_restarts:
                log(f"launch.supervise: the command {reason}; giving up after "
                    f"{max_restarts} restarts")
                return status
            log(f"launch.supervise: the command {reason}; restart {attempt + 1} of "
                f"{max_restarts} in {restart_delay:g} s")
            time.sleep(restart_delay)
        return status
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv):
    command = argv[1:]
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise app.UsageError("expected a command after the flags, e.g. "
                             "python -m launch.supervise -- python -m launch.train ...")
    try:
        status = supervise(command, FLAGS.max_restarts, FLAGS.restart_delay,
                           log=lambda message: print(message, file=sys.stderr, flush=True))
    except CommandError as error:  # one line and status 2, as the launch.* commands
        print(f"launch.supervise: error: {error}", file=sys.stderr)
        sys.exit(USAGE_ERROR)
    sys.exit(status if status >= 0 else 128 - status)


if __name__ == "__main__":
    app.run(main)
