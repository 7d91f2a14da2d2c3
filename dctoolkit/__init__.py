"""dctoolkit: a lab's machines as one computer for batch jobs.

Where things live:
  jobs/intake/      a submission file becomes queued jobs (parse, condor = HTCondor's language, keys, advice, queue;
                    dag = DAGMan's language, dagqueue = a DAG becomes rows)
  jobs/scheduling/  which job runs where and when (policy, snapshot, queues, dispatch, housekeeping, wake, reasons;
                    dagman = the DAG engine, dagsteps = its decisions)
  jobs/web/         the portal and the HTTP API (views, forms, api, serializers: one per JSON shape, history, outputs)
  jobs/             the job model, its state changes (transitions), the mail at a job's end (notify), the names
                    of a job's streams (streams) and HTCondor's event log (eventlog)
  nodes/worker/     everything a compute machine runs: the Celery task, heartbeats, the sandbox, limits
  accounts/         users, shares and fair-share accounting
  operations/       running it as a lab's service: /metrics, the scheduler's pass statistics, retention, quota,
                    the audit trail (who did what, when: audit.record)
  client/           the remote command line's HTTP client, Client and Executor (no ORM, no Celery), and the
                    workflow tools' integrations (workflow, dask, submitit; the Snakemake plugin is in
                    integrations/ at the top, a package of its own)
  lib/              plain helpers with no domain (words, units, ids, ranges, fastsql, broker)
  dev/              development tools: `./dct up`'s private stack

Nothing is imported here, so that `import dctoolkit.client` costs no Django or Celery;
`celery -A dctoolkit` finds the app in `dctoolkit.celery`.
"""
