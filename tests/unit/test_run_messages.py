"""Run messages copied from Celery's own (`scheduling.runmessages`): the same envelope, each job's fields in it."""

import base64
import json
import uuid

from dctoolkit.jobs.scheduling.runmessages import TEMPLATE_ARGS, Template, fresh_ids

# What kombu's Redis transport pushed for app.send_task("dctoolkit.run_job", args=TEMPLATE_ARGS, queue=...) with
# Celery 5 (the shape the scheduler sees at run time; the scheduler makes its template the same way).
TASK_ID = "7fdcc359-9daa-44d8-bc3f-92b343fc6152"
BODY = [TEMPLATE_ARGS, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
CELERY_MESSAGE = {
    "body": base64.b64encode(json.dumps(BODY).encode()).decode(),
    "content-encoding": "utf-8",
    "content-type": "application/json",
    "headers": {
        "lang": "py", "task": "dctoolkit.run_job", "id": TASK_ID, "shadow": None, "eta": None, "expires": None,
        "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": TASK_ID,
        "parent_id": None, "argsrepr": repr(TEMPLATE_ARGS), "kwargsrepr": "{}", "origin": "gen28559@vm",
        "ignore_result": True, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
    },
    "properties": {
        "correlation_id": TASK_ID, "reply_to": "b6324f45-8938-3984-a567-3c687dcd9363", "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": "dct-run-template-1"}, "priority": 0,
        "body_encoding": "base64", "delivery_tag": "54b620be-2e89-46fb-a89f-18eda9599473",
    },
}  # fmt: skip


def test_a_copied_message_is_celerys_with_the_jobs_arguments_queue_and_fresh_ids():
    template = Template.of(json.dumps(CELERY_MESSAGE))
    assert template is not None
    first, second = (json.loads(template.message([41, 3, 2], 'node "a"')) for _ in range(2))
    assert json.loads(base64.b64decode(first["body"])) == [[41, 3, 2], *BODY[1:]]
    task_id = first["headers"]["id"]
    assert task_id != TASK_ID and task_id != second["headers"]["id"]
    assert first["properties"]["delivery_tag"] not in (CELERY_MESSAGE["properties"]["delivery_tag"], task_id)
    expected = json.loads(json.dumps(CELERY_MESSAGE))
    expected["body"] = first["body"]
    expected["headers"].update(id=task_id, root_id=task_id, argsrepr="[41, 3, 2]")
    expected["properties"].update(correlation_id=task_id, delivery_tag=first["properties"]["delivery_tag"])
    expected["properties"]["delivery_info"]["routing_key"] = 'node "a"'
    assert first == expected


def test_a_message_of_another_shape_is_refused_so_that_celery_sends_it():
    for change in (
        lambda m: m["headers"].update(origin=TASK_ID),  # the id somewhere this module does not replace
        lambda m: m["properties"].update(priority=5),  # kombu would push it onto another list
        lambda m: m.update({"content-type": "application/x-msgpack"}),
        lambda m: m["headers"].pop("root_id"),
    ):
        message = json.loads(json.dumps(CELERY_MESSAGE))
        change(message)
        assert Template.of(json.dumps(message)) is None


def test_fresh_ids_are_distinct_random_uuids_written_as_uuid4_writes_them():
    ids = fresh_ids(500)
    assert len(set(ids)) == 500
    for text in ids:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)


def test_messages_for_many_jobs_are_each_jobs_own_message_in_the_order_given():
    template = Template.of(json.dumps(CELERY_MESSAGE))
    assert template is not None
    sends = [(41, 3, "node-b", 2), (42, 1, "node-a", 1), (43, 2, "node-b", 4)]
    made = template.messages(sends)
    assert [queue for queue, _ in made] == ["node-b", "node-a", "node-b"]
    for (job_id, attempt, queue, cpus), (_, text) in zip(sends, made, strict=True):
        message = json.loads(text)
        assert json.loads(base64.b64decode(message["body"]))[0] == [job_id, attempt, cpus]
        assert message["headers"]["argsrepr"] == repr([job_id, attempt, cpus])
        assert message["properties"]["delivery_info"]["routing_key"] == queue
    assert len({json.loads(text)["headers"]["id"] for _, text in made}) == 3
