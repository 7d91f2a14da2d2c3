"""What an Executor job runs: unpickle the call, run it, pickle what came of it.

This file is staged with every Executor job (as `dct_call.py`, beside `call.pkl`
and `cloudpickle.zip`); the job cannot see the project, so it imports only the
standard library and cloudpickle: the node's own (the worker's Python, whose
requirements pin it) when it has one, else the staged copy.  It writes
`result.pkl`: ("value", value) or ("error", exception, traceback text); an
exception also makes the job exit 1, so that the job ends `failed`.

Usage inside the job: python3 dct_call.py MAJOR.MINOR (the client's Python, whose bytecode the pickle holds).
"""

import os
import pickle
import sys
import traceback

CALL_FILE = "call.pkl"
RESULT_FILE = "result.pkl"
CLOUDPICKLE_ZIP = "cloudpickle.zip"


def load_cloudpickle():  # cloudpickle has no types
    try:
        import cloudpickle  # type: ignore[import-untyped,unused-ignore]
    except ImportError:  # the staged copy, last on the path so that the node's own wins
        sys.path.append(os.path.abspath(CLOUDPICKLE_ZIP))
        import cloudpickle  # type: ignore[import-untyped,unused-ignore]
    return cloudpickle


def describe(exc: BaseException) -> BaseException:
    """The exception itself when it can be pickled and read back, else a RuntimeError telling it."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 (our own bytes, just made)
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")


def call(cloudpickle):  # cloudpickle has no types
    """Run the staged call: ("call", fn, args, kwargs) is fn(*args, **kwargs); ("chunk", fn, [args, ...])
    is [fn(*args) for each] (one job of a `map` in chunks)."""
    try:
        with open(CALL_FILE, "rb") as f:
            payload = cloudpickle.load(f)
    except ImportError as exc:
        exc.add_note(
            "the function (or a value it uses) was pickled by reference to a module this job cannot import; "
            "call cloudpickle.register_pickle_by_value(module) before submitting, or define it in __main__"
        )
        raise
    if payload[0] == "chunk":
        _, fn, chunk = payload
        return [fn(*args) for args in chunk]
    _, fn, args, kwargs = payload
    return fn(*args, **kwargs)


def main() -> int:
    wanted = sys.argv[1] if len(sys.argv) > 1 else ""
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if wanted and wanted != here:
        print(
            f"dct_call.py: the function was pickled by Python {wanted} but this node runs Python {here}; "
            f"run the client with Python {here}, or have the node's Python match yours",
            file=sys.stderr,
        )
        return 2
    cloudpickle = load_cloudpickle()
    try:
        outcome: tuple = ("value", call(cloudpickle))
        status = 0
    except BaseException as exc:  # every failure goes back to the caller, SystemExit too
        text = traceback.format_exc()
        sys.stderr.write(text)
        outcome = ("error", describe(exc), text)
        status = 1
    try:
        data = cloudpickle.dumps(outcome)
    except Exception as exc:  # the value cannot be pickled: say so, as an error
        text = traceback.format_exc()
        sys.stderr.write(text)
        data = cloudpickle.dumps(("error", RuntimeError(f"the function's value cannot be pickled: {exc}"), text))
        status = 1
    with open(RESULT_FILE + ".part", "wb") as f:
        f.write(data)
    os.replace(RESULT_FILE + ".part", RESULT_FILE)
    return status


if __name__ == "__main__":
    sys.exit(main())
