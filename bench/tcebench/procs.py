"""Processes and ports of a bench run: start, wait for, stop, clean up.

Every process the bench starts is registered here and stopped by its
own pid at the end of the run, whatever happened (error, Ctrl-C).
"""

import random
import signal
import socket
import subprocess
import time


class BenchError(Exception):
    """The bench itself broke (not a slow figure): exit non-zero."""


class Processes:
    """The processes started by this run, stopped by pid on close()."""

    RESEND = 2

    def __init__(self):
        self._running = []

    def start(self, argv, log_path):
        """Starts argv in its own session, stdout+stderr to log_path."""
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        proc.log_path = log_path
        self._running.append(proc)
        return proc

    def stop(self, proc, timeout, sig=signal.SIGQUIT):
        """Graceful stop (nginx: SIGQUIT); SIGKILL after timeout.

        The signal is sent again every RESEND seconds: nginx can take
        it between its check of the quit flag and epoll_wait(), and
        then sleeps until its next timer (minutes here); under valgrind
        that window is wide enough to be hit now and then.
        Returns the exit status; raises BenchError if it had to kill.
        """
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    raise BenchError("pid %d did not stop within %ds of "
                                     "signal %d (killed)"
                                     % (proc.pid, timeout, sig))
                proc.send_signal(sig)
                try:
                    proc.wait(timeout=self.RESEND)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if proc in self._running:
                self._running.remove(proc)
        return proc.returncode

    def close(self):
        """Stops everything still running: SIGQUIT, then SIGKILL."""
        for proc in list(self._running):
            try:
                self.stop(proc, timeout=10)
            except BenchError:
                pass


def wait_for_port(port, proc, timeout):
    """Polls until 127.0.0.1:port accepts; fails fast if proc exited."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise BenchError("%s exited with status %s before listening "
                             "on port %d%s"
                             % (proc.args[0], proc.returncode, port,
                                output_tail(proc)))
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError("nothing listening on port %d after %ds"
                                 % (port, timeout))
            time.sleep(0.05)


class Ports:
    """Hands out free loopback ports, all of five digits, below the
    ephemeral range so that no outgoing connection can take them."""

    LOW, HIGH = 20000, 32000

    def __init__(self):
        self._next = random.randrange(self.LOW, self.HIGH - 4000)
        self._given = set()

    def take(self, count):
        ports = []
        while len(ports) < count:
            port = self._next
            self._next += 1
            if self._next >= self.HIGH:
                self._next = self.LOW
            if port in self._given:
                if len(self._given) >= self.HIGH - self.LOW:
                    raise BenchError("no free loopback ports left")
                continue
            self._given.add(port)
            if port_is_free(port):
                ports.append(port)
        return ports


def port_is_free(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def output_tail(proc, lines=10):
    """The end of what a process printed, for an error message (the
    temp dir is gone by the time anyone reads it)."""
    text = tail(proc.log_path, lines).strip()
    return ":\n" + text if text else ""


def tail(path, lines=15):
    """The last lines of a log file, for error messages."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no %s)" % path
    return "\n".join(text.splitlines()[-lines:])


def install_signal_handlers():
    """SIGINT and SIGTERM end the run with KeyboardInterrupt, so that
    cleanup runs; also when started in the background (SIGINT is
    ignored then)."""
    def on_signal(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


def version_of(argv):
    try:
        out = subprocess.run(argv, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout + out.stderr).decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else "unknown"

