"""Turn a stream of dmapickle messages into work on a ``dask.distributed`` cluster.

``pip install ./host[dask]`` brings ``distributed``. With a ``--zmq-push`` bridge::

    from distributed import Client
    from dmapickle import zmq as dmz
    from dmapickle.dask import map_stream

    def sums(msg):                           # runs on a worker
        return msg["seq"], msg["adc"].sum(axis=0)

    with Client("tcp://scheduler:8786") as client:
        for seq, s in map_stream(client, sums, dmz.receive(dmz.pull("tcp://acq:5557"))):
            ...

At most ``max_in_flight`` messages are submitted and not yet handed back: the next one is taken
from the iterable only when one is done, so the socket under it is not read meanwhile, its queue
fills and a PUSH bridge stops reading its device (backpressure, not a growing list of futures).

What travels: distributed pickles the message with protocol 5 and sends each numpy array's
memory as a separate frame straight from the array (no copy on the sending side); the worker
reads each frame into a buffer of its own and the array is a view of it. A message whose arrays
hold at least ``scatter_min_bytes`` goes to a worker directly (``client.scatter(direct=True)``,
one network hop); smaller ones travel inside the task, through the scheduler. Read-only arrays
(every array that came over ZeroMQ, or with a read-only descriptor) arrive read-only; ``fn``
must copy one to write to it.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Iterable, Iterator

__all__ = ["map_stream"]


def _value(item: Any) -> Any:
    """A message's value: ``dmapickle.Message`` and ``dmapickle.zmq.Message`` are loaded."""
    load = getattr(item, "load", None)
    return load() if callable(load) else item


def map_stream(
    client: Any,
    fn: Callable[[Any], Any],
    messages: Iterable[Any],
    *,
    max_in_flight: int = 8,
    ordered: bool = True,
    scatter_min_bytes: int = 1 << 16,
    **submit_kw: Any,
) -> Iterator[Any]:
    """Yield ``fn(value)`` computed on the cluster for each message of ``messages``.

    ``messages``: ``dmapickle.zmq.Message``, ``dmapickle.Message`` (both are loaded) or plain
    values. ``ordered=True`` yields results in message order; ``False`` as they complete. At
    most ``max_in_flight`` messages are on the cluster or waiting to be yielded at any time.
    ``submit_kw`` goes to ``client.submit`` (``workers=``, ``resources=``, ``retries=``...).
    A task that raised re-raises here, in order.
    """
    from dask.sizeof import sizeof
    from distributed import as_completed

    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
    items = iter(messages)

    def submit(item: Any) -> Any:
        value = _value(item)
        if sizeof(value) >= scatter_min_bytes:
            [value] = client.scatter([value], direct=True, hash=False)
        return client.submit(fn, value, pure=False, **submit_kw)

    if ordered:
        queue: collections.deque = collections.deque()
        for item in items:
            queue.append(submit(item))
            if len(queue) >= max_in_flight:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
        return
    done = as_completed()
    for item in items:
        done.add(submit(item))
        if done.count() >= max_in_flight:
            break
    for future in done:
        result = future.result()
        del future
        nxt = next(items, done)  # `done` stands for "no more"
        if nxt is not done:
            done.add(submit(nxt))
        yield result
