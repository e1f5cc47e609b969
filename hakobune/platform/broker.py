"""Celery's Redis transport (kombu's), with one repair: a worker must live
through a restart of Redis.

When Redis goes away while the worker holds messages it has not acknowledged
yet (late acknowledgement: every task it is running), the worker closes its
channel, and kombu 5.7 then tries to put those messages back into Redis
through a connection it has already dropped: an AttributeError, which
Celery takes for an unrecoverable error, and the worker process exits (its
running tasks finish, then nothing is consumed again). The same happens
when a task that was running then ends, and its message is acknowledged
through the old channel. Here the restore and the acknowledgement are given
up instead, as they would be for any connection error: Redis lost the
messages anyway when it restarted (it keeps nothing on disk), or, after a
mere disconnection, still holds them and gives them out again after its
visibility timeout; the pipeline's steps are queued again from the database
by the sweeper (builds/sweeper.py)."""

from __future__ import annotations

import logging

from kombu.transport import redis

logger = logging.getLogger(__name__)


class QoS(redis.QoS):
    def restore_unacked(self, client=None):
        try:
            return super().restore_unacked(client)
        except AttributeError as exc:  # the channel's connection is already gone
            logger.warning("could not give %s unacknowledged message(s) back to Redis, which went away: %s",
                           len(self._delivered), exc)
            self._delivered.clear()

    def ack(self, delivery_tag):
        try:
            super().ack(delivery_tag)
        except AttributeError:  # received before Redis went away: nothing to acknowledge there now
            logger.info("the message %s came through a connection to Redis that is gone; not acknowledged",
                        delivery_tag)
            super(redis.QoS, self).ack(delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        try:
            super().reject(delivery_tag, requeue=requeue)
        except AttributeError:
            logger.info("the message %s came through a connection to Redis that is gone; not rejected",
                        delivery_tag)
            super(redis.QoS, self).ack(delivery_tag)


class Channel(redis.Channel):
    QoS = QoS


class Transport(redis.Transport):
    Channel = Channel
