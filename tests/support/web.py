"""The web server (portal + API) of a test cluster: gunicorn as a subprocess on a free port."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request

from tests.support.cluster import PYTHON, Cluster, free_port, wait_until


def start_web(cluster: Cluster, access_log: bool = False) -> str:
    """Start gunicorn on the cluster's database; returns its base URL once it answers.  With `access_log`,
    every request is a line of its log (`cluster.logs / f"web-{port}.log"`), for tests that count them."""
    port = free_port()
    argv = [PYTHON, "-m", "gunicorn", "dctoolkit.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1", "--threads", "4"]
    proc = cluster._spawn(f"web-{port}", argv + (["--access-logfile", "-"] if access_log else []))
    cluster.others.append(proc)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: answers(url, proc), 60, f"the web server on port {port}", interval=0.2)
    return url


def answers(url: str, proc: subprocess.Popen) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"the web server exited with status {proc.returncode}; see its log")
    try:
        urllib.request.urlopen(url + "/api/schema/", timeout=2).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True
