"""A small process that starts the measured processes, so that their peak RSS is their own.

Linux charges a child, at exec, with the peak RSS of the address space it was forked from
(fs/exec.c records the old mm's high-water mark into the child's `maxrss`). A child forked from
the benchmark itself, which has psycopg2 loaded and holds every log line read so far, would
report at least the benchmark's own peak. This process is started with `python -I -S`, imports
only a few stdlib modules (about 10 MB, less than any Python process it starts), forks nothing
else, and so sets a floor that never hides what a runner really uses.

Protocol, over the SOCK_SEQPACKET socket passed as argv[1], one JSON message per packet:
  request  {"id", "argv", "env"} with two file descriptors attached: the child's stdout and stderr
  reply    {"id", "pid", "t_spawn"}                                  right after the spawn
  reply    {"id", "status", "maxrss_kb", "cpu_s", "t_exit"}          when the child is reaped
Times are time.monotonic() (CLOCK_MONOTONIC, the same clock in every process on the machine).
When the socket closes (the benchmark exited or died), every child still running is killed.
"""

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time

MAX_PACKET = 1 << 20


def main() -> None:
    # Ctrl-C reaches the whole foreground group; the benchmark decides what to stop, via EOF.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = socket.socket(fileno=int(sys.argv[1]))
    send_lock = threading.Lock()
    running: dict[int, str] = {}

    def send(message: dict[str, object]) -> None:
        with send_lock:
            channel.send(json.dumps(message).encode())

    def reap(request_id: str, pid: int) -> None:
        _, status, usage = os.wait4(pid, 0)
        t_exit = time.monotonic()
        running.pop(pid, None)
        cpu = usage.ru_utime + usage.ru_stime
        send(
            {"id": request_id, "status": status, "maxrss_kb": usage.ru_maxrss, "cpu_s": cpu,
             "t_exit": t_exit}
        )  # fmt: skip

    try:
        while True:
            data, fds, _, _ = socket.recv_fds(channel, MAX_PACKET, 2)
            if not data:
                break
            request = json.loads(data)
            for fd in fds:
                os.set_inheritable(fd, False)  # only the dup2 copies below reach the child
            t_spawn = time.monotonic()
            try:
                pid = os.posix_spawn(
                    request["argv"][0],
                    request["argv"],
                    request["env"],
                    file_actions=[
                        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                        (os.POSIX_SPAWN_DUP2, fds[0], 1),
                        (os.POSIX_SPAWN_DUP2, fds[1], 2),
                    ],
                    setsigdef=(signal.SIGINT,),
                    setpgroup=0,
                )
            except OSError as error:
                send({"id": request["id"], "error": f"cannot start {request['argv'][0]}: {error}"})
                continue
            finally:
                for fd in fds:
                    os.close(fd)
            running[pid] = request["id"]
            send({"id": request["id"], "pid": pid, "t_spawn": t_spawn})
            threading.Thread(target=reap, args=(request["id"], pid), daemon=True).start()
    finally:
        for pid in list(running):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
