"""What every measurement of a run needs: tools, temp dir, processes."""

import os
import shutil
import tempfile

from .procs import Ports, Processes


class Context:
    """Tools, ports, processes and the temp dir of one bench run.

    close() stops every process the run started and removes the temp
    dir (unless keep_tmp), also after an error or Ctrl-C.
    """

    def __init__(self, nginx, valgrind, wrk, tmp_parent, keep_tmp=False):
        self.nginx = nginx
        self.valgrind = valgrind
        self.wrk = wrk
        self.keep_tmp = keep_tmp
        self.procs = Processes()
        self.ports = Ports()
        os.makedirs(tmp_parent, exist_ok=True)
        self._tmp_parent = tmp_parent
        self.tmp = tempfile.mkdtemp(prefix="run-", dir=tmp_parent)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def nginx_argv(self, conf, name):
        """nginx with every path of its own inside the temp dir."""
        return [self.nginx, "-p", self.tmp + "/",
                "-e", self.path(name + "-error.log"), "-c", conf]

    def close(self):
        self.procs.close()
        if self.keep_tmp:
            return
        shutil.rmtree(self.tmp, ignore_errors=True)
        try:
            os.rmdir(self._tmp_parent)
        except OSError:
            pass
