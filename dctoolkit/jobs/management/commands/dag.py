"""./dct dag ID [--json] [--rerun]"""

from __future__ import annotations

from django.core.management.base import CommandError
from django.http import Http404
from django.utils import timezone

from dctoolkit.cli import DctCommand
from dctoolkit.jobs.scheduling.dagman import rerun_dag
from dctoolkit.jobs.scheduling.wake import wake_scheduler
from dctoolkit.jobs.web.dags import dag_for, dag_payload, rerun_refusal
from dctoolkit.lib.ids import bounded_int

MAX_ID = 2**62


class Command(DctCommand):
    help = "A DAG's nodes and their states; --rerun runs again what did not succeed (DAGMan's rescue DAG)."
    remote_capable = True

    def add_arguments(self, parser):
        parser.add_argument("id", help="DAG id (as './dct submit pipeline.dag' printed it)")
        parser.add_argument(
            "--rerun", action="store_true", help="queue again every node that did not succeed, and the FINAL node"
        )

    def handle(self, *args, **options):
        dag_id = bounded_int(str(options["id"]), 0, MAX_ID)
        if dag_id is None:
            raise CommandError(f"'{options['id'][:40]}' is not a DAG id; DAG ids are numbers")
        data = self.remote.dag(dag_id, options["rerun"]) if self.remote else self.local(dag_id, options)
        if options["json"]:
            self.emit_json(data)
            return
        if options["rerun"]:
            again = sum(1 for n in data["nodes"] if n["state"] != "succeeded")
            self.stdout.write(f"dag {data['dag']}: {again} node{'' if again == 1 else 's'} to run again")
        self.stdout.write(f"dag {data['dag']} ({data['name']}): {data['state']}" + (
            f", return {data['exit_code']}" if data["exit_code"] is not None else ""))  # fmt: skip
        if data["aborted"]:
            self.stdout.write(data["aborted"])
        width = max((len(n["name"]) for n in data["nodes"]), default=4)
        for node in data["nodes"]:
            jobs = ",".join(map(str, node["jobs"])) or "-"
            parents = ",".join(node["parents"]) or "-"
            line = f"{node['name'].ljust(width)}  {node['state']:<10} jobs {jobs:<12} parents {parents}"
            self.stdout.write(line + (f"  ({node['reason']})" if node["reason"] else ""))

    def local(self, dag_id: int, options: dict) -> dict:
        try:
            dag = dag_for(self.acting_user(), dag_id)
        except Http404:
            raise CommandError(f"no DAG {dag_id} of yours") from None
        if options["rerun"]:
            if rerun_dag(dag, timezone.now()) < 0:
                raise CommandError(rerun_refusal(dag))
            wake_scheduler()
            dag.refresh_from_db()
        return dag_payload(dag)
